"""RemoteMachine: a real x86-64 machine reached over SSH, booted into a built kernel with kexec.

`--machine ssh://USER@HOST[:PORT]` (with --identity KEY and --known-hosts FILE; the machine's host
key must be known: it is pinned, never accepted blindly) makes every boot of an experiment a kexec
on that machine instead of a QEMU guest:

- before the first kexec the machine's own kernel is recorded: `uname -r`, /proc/cmdline,
  /boot/vmlinuz-<release> and its initrd, whether systemd runs it, its fingerprint;
- the built bzImage goes into a per-run folder (RUN_ROOT/<token>), never into /boot: `kexec -l` with
  the machine's own command line plus `harness.boot=<token>` (and --cmdline), then `systemctl kexec`
  (`kexec -e` without systemd). No boot loader entry is written: a power cycle brings the machine
  back on its own kernel;
- the harness waits for SSH for at most --boot-timeout seconds, then proves that the kernel that
  answers is the built one: `uname -r` is the build's release, /proc/cmdline carries this boot's
  token (a silent fall-back to the old kernel is caught), and the GNU build id in
  /sys/kernel/notes is the built vmlinux's;
- afterwards it kexecs the recorded kernel, initrd and command line, falls back to `reboot` when
  that does not come back, and checks the release again.

A machine that does not come back in time is one GuestTimeout with the last SSH error (and the
tail of --console CMD's output, e.g. `ipmitool sol activate` wrapped in `timeout`), never a wait
without end. The workloads, the kernel log check and the feature's proof run through the Target
interface as they do in a QEMU guest.
"""
import base64
import re
import secrets
import shlex
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from harness import tools, ui
from harness.errors import GuestError, GuestTimeout, HarnessError, UserError
from harness.guest import console, fingerprint
from harness.guest.ssh import SSHChannel
from harness.guest.target import Target

RUN_ROOT = "/var/tmp/harness-kexec"   # the per-run folders on the machine (never /boot)
TOKEN = "harness.boot"
DROPPED = ("BOOT_IMAGE", "initrd", TOKEN)   # the boot loader's own arguments, and an old token
URL = re.compile(r"ssh://(?:(?P<user>[A-Za-z_][A-Za-z0-9._-]*)@)?"
                 r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?/?")
DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
POLL_S = 2.0


@dataclass(frozen=True)
class Address:
    user: str
    host: str
    port: int

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user}@{host}:{self.port}"

    @property
    def known_hosts_name(self):
        """How known_hosts names this host (OpenSSH's form)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_url(url):
    """`ssh://[USER@]HOST[:PORT]` -> Address (user root, port 22 by default); one UserError else."""
    m = URL.fullmatch(url or "")
    port = int(m["port"]) if m and m["port"] else 22
    if not m or not 0 < port < 65536:
        raise UserError(f"--machine {url!r}: write ssh://USER@HOST[:PORT], e.g. ssh://root@testbox "
                        f"or ssh://root@192.0.2.7:2222 (port 1-65535)")
    return Address(m["user"] or "root", m["host"].strip("[]"), port)


def load_identity(identity=None):
    """The private key to log in with: --identity, else the user's usual key files."""
    import paramiko
    candidates = [Path(identity).expanduser()] if identity else [Path(p).expanduser() for p in DEFAULT_KEYS]
    for path in candidates:
        if path.exists():
            try:
                return paramiko.PKey.from_path(path)
            except (paramiko.SSHException, OSError, ValueError) as exc:
                raise UserError(f"cannot use the key {path}: {exc} (a key without a passphrase, "
                                f"or one the harness can read)") from None
    if identity:
        raise UserError(f"--identity {identity}: no such file")
    raise UserError(f"no SSH key to log in to the machine: pass --identity KEY (looked for "
                    f"{', '.join(DEFAULT_KEYS)})")


def pinned_host_key(address, known_hosts=None):
    """The machine's host key ('type base64') from ~/.ssh/known_hosts and --known-hosts; an
    unknown host is refused with the command that shows its key for checking."""
    import paramiko
    files = [Path("~/.ssh/known_hosts").expanduser()]
    if known_hosts:
        if not Path(known_hosts).exists():
            raise UserError(f"--known-hosts {known_hosts}: no such file")
        files.append(Path(known_hosts))
    for path in files:
        if not path.exists():
            continue
        keys = paramiko.HostKeys(str(path)).lookup(address.known_hosts_name)
        if keys:
            kind = "ssh-ed25519" if "ssh-ed25519" in keys else next(iter(keys))
            return f"{kind} {keys[kind].get_base64()}"
    raise UserError(f"the host key of {address} is not in {' or '.join(map(str, files))}: check it "
                    f"with the machine's owner and add it (ssh-keyscan -p {address.port} "
                    f"{address.host} >> ~/.ssh/known_hosts), or pass --known-hosts FILE")


def kexec_cmdline(own, extra, token):
    """The built kernel's command line: the machine's own (without its boot loader's BOOT_IMAGE=
    and initrd= and an old token), then the experiment's extra arguments, then this boot's token."""
    words = [w for w in shlex.split(own or "") if w.split("=", 1)[0] not in DROPPED]
    return " ".join(words + shlex.split(extra or "") + ([f"{TOKEN}={token}"] if token else []))


def token_of(cmdline):
    """The harness.boot= value on a kernel command line, or None."""
    found = [w.split("=", 1)[1] for w in (cmdline or "").split() if w.startswith(f"{TOKEN}=")]
    return found[-1] if found else None


def notes_build_id(blob):
    """The GNU build id (hex) in a block of ELF notes (/sys/kernel/notes, a PT_NOTE segment)."""
    at = 0
    while at + 12 <= len(blob):
        namesz, descsz, kind = struct.unpack_from("<III", blob, at)
        name_at = at + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if blob[name_at:name_at + namesz].rstrip(b"\0") == b"GNU" and kind == 3:   # NT_GNU_BUILD_ID
            return blob[desc_at:desc_at + descsz].hex()
        at = desc_at + (descsz + 3) // 4 * 4
    return None


def elf_build_id(path):
    """The GNU build id of an ELF64 little-endian file (the built vmlinux), or None."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 4:                                                            # PT_NOTE
            found = notes_build_id(data[p_offset:p_offset + p_filesz])
            if found:
                return found
    return None


def identity_problems(want, got):
    """What says the running kernel is not the built one: want = {release, token, build_id} of
    the build and this boot, got = {release, cmdline, build_id} read on the machine."""
    problems = []
    if got.get("release") != want["release"]:
        problems.append(f"uname -r is {got.get('release')!r}, the build's release is {want['release']!r}")
    if token_of(got.get("cmdline")) != want["token"]:
        problems.append(f"/proc/cmdline has {TOKEN}={token_of(got.get('cmdline'))}, this boot's is "
                        f"{want['token']} (the machine runs another boot's kernel)")
    if want.get("build_id") and got.get("build_id") != want["build_id"]:
        problems.append(f"the running kernel's build id (/sys/kernel/notes) is {got.get('build_id')}, "
                        f"the built vmlinux's is {want['build_id']}")
    return problems


class RemoteMachine(Target):
    """A machine reached over SSH whose kernel the harness replaces by kexec: a Target."""

    def __init__(self, address, key, host_key, logdir=None, boot_timeout=300, console=None,
                 extra_cmdline="", stall=30):
        super().__init__(stall=stall)
        self.address = address
        self.channel = SSHChannel(address.port, key, host_key, user=address.user, host=address.host,
                                  probe_timeout=10.0)
        self.logdir = Path(logdir) if logdir else None
        self.boot_timeout, self.console, self.extra_cmdline = boot_timeout, console, extra_cmdline
        self.home = None            # the machine's own kernel (record_home)
        self.kernel = self.token = None
        self.boot_seconds, self.boot_phases, self.argv, self.proof = None, {}, [], {}

    @classmethod
    def open(cls, url, identity=None, known_hosts=None, **kw):
        address = parse_url(url)
        return cls(address, load_identity(identity), pinned_host_key(address, known_hosts), **kw)

    # --- what the Target says about the kernel behind the channel ----------------------------------

    @property
    def console_log(self):
        return (self.logdir or Path(".")) / "console.log"

    def tail(self, lines=30):
        """The tail of --console CMD's output (run on this host, at most 30 s), kept in console.log."""
        if not self.console:
            return ""
        try:
            proc = tools.run(["sh", "-c", self.console], check=False, timeout=30)
            text = (proc.stdout or "") + (proc.stderr or "")
        except HarnessError as exc:
            text = f"(the console command failed: {exc})"
        if self.logdir:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self.console_log.write_text(text)
        last = text.splitlines()[-lines:]
        panic = console.scan(text)          # a panic that scrolled out of the tail is named first
        if panic and not any(panic[1] in line for line in last):
            last.insert(0, f"(earlier on the console: {panic[1]})")
        return "\n".join(last)

    def boot_facts(self):
        return {"machine": str(self.address), "kexec": self.argv, "proof": self.proof,
                "fingerprint": self.proof.get("fingerprint"), "home_release": (self.home or {}).get("release")}

    # --- connections --------------------------------------------------------------------------------

    def sh(self, script, *args, timeout=60):
        return self.run(["sh", "-c", script, "sh", *map(str, args)], timeout=timeout)

    def connect(self, timeout, alive=None):
        """A connection within timeout seconds, or a GuestTimeout with the last SSH error; alive()
        is called while waiting and may raise."""
        deadline = time.monotonic() + timeout
        while not self.channel.try_connect(timeout=min(10.0, max(1.0, deadline - time.monotonic()))):
            if alive:
                alive()
            if time.monotonic() > deadline:
                raise GuestTimeout(f"{self.address} did not answer over SSH within {timeout} s "
                                   f"(last SSH error: {self.channel.last_error})", log_tail=self.tail())
            time.sleep(POLL_S)

    def reconnect(self, timeout=60):
        """A new connection after the old one dropped (each attempt given up to 10 s: a real
        machine's sshd takes longer than a guest's dropbear)."""
        self.channel.close()
        self.connect(timeout)

    def read(self, path):
        """A file's text on the machine, or None (fingerprint.fingerprint's reader)."""
        code, out, _ = self.run(["cat", path], timeout=30)
        return out if code == 0 else None

    def running(self):
        """(release, cmdline, boot id) of the kernel that answers now."""
        code, out, err = self.run(["sh", "-c", "uname -r; cat /proc/cmdline /proc/sys/kernel/random/boot_id"],
                                  timeout=30)
        lines = out.splitlines()
        if code != 0 or len(lines) != 3:
            raise GuestError(f"cannot read the running kernel of {self.address}: {err.strip() or out}")
        return tuple(line.strip() for line in lines)

    # --- the machine's own kernel --------------------------------------------------------------------

    def record_home(self, timeout=60):
        """What the machine runs before the harness touches it; refuses a machine that is not on
        its own kernel (a token on its command line) or that has no kexec."""
        self.connect(timeout)
        release, cmdline, _ = self.running()
        if token_of(cmdline):
            raise GuestError(f"{self.address} runs a kernel the harness kexec'd ({TOKEN}={token_of(cmdline)} "
                             f"in /proc/cmdline): bring it back to its own kernel first (reboot it)")
        code, _, _ = self.sh("command -v kexec")
        if code != 0:
            raise GuestError(f"{self.address} has no kexec (Debian: apt install kexec-tools)")
        systemd = self.sh("test -d /run/systemd/system")[0] == 0
        kernel, initrd = f"/boot/vmlinuz-{release}", f"/boot/initrd.img-{release}"
        has_kernel = self.sh('test -r "$1"', kernel)[0] == 0
        has_initrd = self.sh('test -r "$1"', initrd)[0] == 0
        self.home = {"release": release, "cmdline": cmdline, "systemd": systemd,
                     "kernel": kernel if has_kernel else None, "initrd": initrd if has_initrd else None,
                     "fingerprint": fingerprint.fingerprint(self.read)}
        return self.home

    # --- kexec ------------------------------------------------------------------------------------------

    def kexec(self, image, cmdline, initrd=None):
        """Load image and start it; the connection is closed (the machine is going down)."""
        # --no-checks: no SHA-256 of the loaded images in the purgatory before the jump (under TCG it
        # took minutes for Debian's 36 MB initrd); the kernel that comes up is proven by its build id
        argv = ["kexec", "-l", "--no-checks", image, f"--command-line={cmdline}"] + \
            ([f"--initrd={initrd}"] if initrd else [])
        code, _, err = self.run(argv, timeout=120)
        if code != 0:
            raise GuestError(f"kexec -l failed on {self.address}: {err.strip()}")
        start = "systemctl kexec" if self.home["systemd"] else "kexec -e"
        # detached, so this command returns before the machine goes down
        self.sh(f"(sleep 1; {start}) </dev/null >/dev/null 2>&1 &", timeout=30)
        self.channel.close()
        return argv

    def wait_boot(self, token, timeout, what, left_boot):
        """Seconds until the machine answers on a kernel whose command line carries `token` (None:
        no token, its own kernel). The kernel it left (boot id `left_boot`) may answer while it
        goes down; a new boot without the token is a failure at once (the built kernel did not
        come up and the machine fell back, by a panic's reboot or a watchdog). After `timeout`
        seconds a GuestTimeout with the evidence: the last SSH error and the console's tail."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.channel.try_connect(timeout=min(10.0, max(1.0, deadline - time.monotonic()))):
                try:
                    seen = self.running()
                except GuestError:              # the old kernel's sshd went down under us
                    seen = None
                if seen and token_of(seen[1]) == token:
                    return time.monotonic() - started
                self.channel.close()
                if seen and seen[2] != left_boot:
                    raise GuestError(f"{what} did not come up: {self.address} came back "
                                     f"{time.monotonic() - started:.0f} s after the kexec on kernel "
                                     f"{seen[0]} without {TOKEN}={token} (/proc/cmdline: {seen[1]})",
                                     log_tail=self.tail())
            time.sleep(POLL_S)
        raise GuestTimeout(f"{what}: {self.address} did not come back within {timeout} s (last SSH "
                           f"error: {self.channel.last_error})", log_tail=self.tail())

    def boot(self, kernel):
        """kexec the built kernel and prove it runs; on failure the machine is taken home first
        (bounded) and the first error raised, with what the way home met."""
        if self.home is None:
            self.record_home()
        self.kernel, self.token = kernel, secrets.token_hex(8)
        release = kernel.info["release"]
        try:
            self.put(Path(kernel.path) / "bzImage", self.rundir)
            cmdline = kexec_cmdline(self.home["cmdline"], self.extra_cmdline, self.token)
            left = self.running()[2]
            self.argv = self.kexec(f"{self.rundir}/bzImage", cmdline)
            self.boot_seconds = self.wait_boot(self.token, self.boot_timeout, f"the built kernel {release}", left)
            self.boot_phases = {"first_command": round(self.boot_seconds, 3)}
            self.prove()
        except GuestError as exc:
            self.after_failure(exc)
            raise
        return self

    @property
    def rundir(self):
        return f"{RUN_ROOT}/{self.token}"

    def prove(self):
        """The running kernel is the built one (release, token, build id), or a GuestError."""
        release, cmdline, _ = self.running()
        code, notes, _ = self.run(["base64", "/sys/kernel/notes"], timeout=30)
        got = {"release": release, "cmdline": cmdline,
               "build_id": notes_build_id(base64.b64decode(notes)) if code == 0 else None}
        vmlinux = Path(self.kernel.path) / "vmlinux"
        want = {"release": self.kernel.info["release"], "token": self.token,
                "build_id": elf_build_id(vmlinux) if vmlinux.exists() else None}
        problems = identity_problems(want, got)
        if problems:
            raise GuestError(f"{self.address} does not run the built kernel: " + "; ".join(problems))
        self.proof = {"release": release, "token": self.token, "build_id": got["build_id"],
                      "build_id_checked": bool(want["build_id"]), "cmdline": cmdline,
                      "fingerprint": fingerprint.fingerprint(self.read)}
        return self.proof

    def after_failure(self, exc):
        """After a failed boot: take the machine home (bounded); what that met joins exc's message."""
        try:
            self.go_home()
            note = f"the machine is back on its own kernel {self.home['release']}"
        except GuestError as home_exc:
            note = f"and it did not come back on its own kernel either: {home_exc.args[0]}"
        exc.args = (f"{exc.args[0]} ({note})",) + exc.args[1:]

    def go_home(self):
        """Back to the recorded kernel: kexec it (its initrd and command line), else reboot; the
        release is checked. A GuestTimeout when the machine comes back on neither."""
        home = self.home
        self.connect(self.boot_timeout)         # a machine that panicked may be rebooting by itself
        _, cmdline, boot_id = self.running()
        if not token_of(cmdline):
            return self.clean()                 # it never left, or fell back by itself
        if home["kernel"]:
            try:
                self.kexec(home["kernel"], kexec_cmdline(home["cmdline"], "", None), home["initrd"])
                self.wait_boot(None, self.boot_timeout, f"its own kernel {home['release']}", boot_id)
                return self.clean()
            except GuestError as exc:
                ui.warn(f"{self.address}: kexec back to {home['release']} failed ({exc.args[0]}); rebooting")
            self.connect(self.boot_timeout)
            _, cmdline, boot_id = self.running()
            if not token_of(cmdline):
                return self.clean()
        self.sh("(sleep 1; systemctl reboot || reboot) </dev/null >/dev/null 2>&1 &", timeout=30)
        self.channel.close()
        self.wait_boot(None, self.boot_timeout, f"its own kernel {home['release']} (reboot)", boot_id)
        return self.clean()

    def clean(self):
        """On the machine's own kernel again (checked): the per-run folder removed."""
        release = self.running()[0]
        if release != self.home["release"]:
            raise GuestError(f"{self.address} came back on {release}, not on its own kernel "
                             f"{self.home['release']}")
        if self.token:
            self.run(["rm", "-rf", self.rundir], timeout=60)
        return release

    def __enter__(self):
        return self

    def stop(self):
        """The end of a boot (the run's, or a task's that killed the kernel): the machine back on
        its own kernel, as a QEMU guest's stop() ends its QEMU; a machine that does not come home
        raises (exit 5)."""
        self.__exit__(None, None, None)

    def __exit__(self, kind, value, tb):
        try:
            with ui.step(f"{self.address}: back to its own kernel {self.home['release']}") as say:
                say(f"{self.go_home()} runs again")
        except GuestError as exc:
            if kind is None:
                raise
            ui.error(f"{self.address}: {exc}")      # the error that ended the boot goes on up
        finally:
            self.close()
        return False


class RemoteGuests:
    """The guest factory's counterpart for --machine: every boot is a kexec on one machine whose
    own kernel is recorded once; fingerprints that change between boots are warned about."""

    def __init__(self, exp, store):
        self.exp, self.store = exp, store
        self.home = None

    def machine(self, logdir):
        exp = self.exp
        return RemoteMachine.open(exp.machine, exp.identity, exp.known_hosts, logdir=logdir,
                                  boot_timeout=exp.boot_timeout, console=exp.console,
                                  extra_cmdline=exp.extra_cmdline, stall=exp.stall_s)

    def boot(self, kernel, logdir, title, attempts=1):
        m = self.machine(logdir)
        if self.home is None:
            with ui.step(f"machine {m.address}: its own kernel") as say:
                self.home = m.record_home(timeout=self.exp.boot_timeout)
                say(f"{self.home['release']}, {self.home['fingerprint'].get('cpu')}")
            self.store.update(accel="machine", accel_reason=f"kexec on {m.address}", timing="real",
                              machine={"address": str(m.address), "home": self.home})
        m.home = self.home
        with ui.step(f"{title}: kexec {kernel.info['release']} on {m.address}") as say:
            m.boot(kernel)
            say(f"first command after {m.boot_seconds:.1f} s; release, token and build id checked")
        differ = fingerprint.differences(self.home["fingerprint"], m.proof.get("fingerprint"))
        if differ:
            ui.warn(f"{m.address}: the machine's fingerprint changed since its first boot: {'; '.join(differ)}")
        return m, 1
