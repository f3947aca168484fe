"""Machine: one QEMU guest booted from a built kernel and a guest image.

The console and QEMU's own output go to log files that a watcher follows; readiness is the first
successful SSH handshake, never a sleep. Every wait checks for a panic on the console, for QEMU
having exited, and for its deadline, so a guest that panics or hangs ends in a typed error with the
console's tail, and QEMU is always killed (it also dies with the harness: PR_SET_PDEATHSIG).
"""
import os
import re
import socket
import time
from pathlib import Path

from harness.guest import arch, console
from harness import tools
from harness.errors import GuestError, GuestPanic, GuestTimeout, InfraError
from harness.guest.ssh import SSHChannel, authkey_arg, new_client_key
from harness.guest.target import Target

READY_GRACE = 30        # seconds from QEMU's start, without the image's ready line, before the
READY_AFTER_INIT = 5    # port is probed anyway; or seconds from init (a kernel message printed in
                        # the middle of the ready line hides it from the console's reader)


# QEMU binds the forwarded port itself (port 0: the kernel picks a free one) and the harness asks
# its monitor which one: no window between choosing a port and binding it for another local user
# to take it and answer as the guest. The monitor's socket sits in a folder of this user's only.
FORWARD = re.compile(r"TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+22\b")


def option_value(value):
    """A value inside a QEMU option list (key=value,...): a comma is written twice."""
    return str(value).replace(",", ",,")


def monitor_command(path, command, timeout=2.0):
    """The text a QEMU human monitor on the unix socket `path` prints for one command."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        text = b""
        while not text.rstrip().endswith(b"(qemu)"):
            chunk = s.recv(4096)
            if not chunk:
                break
            text += chunk
        s.sendall(command.encode() + b"\n")
        text = b""
        while text.count(b"(qemu)") < 1:
            chunk = s.recv(4096)
            if not chunk:
                break
            text += chunk
    return text.decode(errors="replace")


def learn_port(monitor, check, where, timeout=120):
    """The port a QEMU bound for its SSH forward, asked of its monitor (a unix socket) once it
    listens; check() raises when the QEMU is gone meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check()
        try:
            port = forwarded_port(monitor_command(monitor, "info usernet"))
            if port:
                return port
        except OSError:
            pass                # the monitor is not up yet (QEMU faults the RAM in first)
        time.sleep(0.05)
    raise InfraError(f"QEMU's monitor did not name its forwarded port within {timeout:.0f} s {where}")


def forwarded_port(text):
    """The host port of the SSH forward in `info usernet`'s output, or None."""
    m = FORWARD.search(text.replace("\r", ""))
    return int(m.group(1)) if m else None


def qemu_version(binary):
    return tools.first_line([binary, "--version"])


def qemu_argv(a, accel, kernel_image, cmdline, logdir, memory_mib, cpus, disk=None, port=None,
              prealloc=True, monitor=None):
    """The QEMU command line; pure, so tests can read it.

    prealloc: the guest's RAM is allocated and faulted in on the host before the guest starts.
    Otherwise the host faults it in while the guest runs, and QEMU asks for transparent huge
    pages there: with the host's THP defrag on madvise, a fault may wait for compaction, in the
    middle of a timed fork (this made boots of one kernel differ by 7-11% at 512 MiB under TCG;
    1-2% with prealloc)."""
    acc = a["accel"][accel]
    cpus = min(cpus, acc.get("max_cpus", cpus))
    argv = [a["qemu"], "-M", a["machine"], "-accel", acc["accel"], "-cpu", acc["cpu"],
            *acc.get("qemu_args", []),
            "-m", str(memory_mib), "-smp", str(cpus), "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot",
            "-kernel", str(kernel_image), "-append", cmdline,
            "-chardev", f"file,id=con,path={option_value(logdir / 'console.log')}", "-serial", "chardev:con"]
    if prealloc:
        argv += ["-object", f"memory-backend-ram,id=ram0,size={memory_mib}M,prealloc=on",
                 "-machine", "memory-backend=ram0"]
    if disk:
        argv += ["-drive", f"id=root,file={option_value(disk)},format=raw,if=none,snapshot=on",
                 "-device", f"{a['block_device']},drive=root"]
    if port is not None:
        # restrict=on: the guest reaches nothing on the host or beyond; only this forward comes in.
        # port 0: QEMU binds a free port itself (the monitor says which).
        argv += ["-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
                 "-device", f"{a['net_device']},netdev=net0"]
    if monitor is not None:
        argv += ["-monitor", f"unix:{option_value(monitor)},server=on,wait=off"]
    return argv


def clock_args(tsc_khz, hz):
    """Kernel arguments that give the guest its TSC rate instead of having it measured:
    tsc_early_khz=, and lpj= (loops per jiffy; with a TSC the delay loop counts TSC cycles). Each
    vCPU would otherwise calibrate its delay loop against the tick, about 80 ms a vCPU under TCG."""
    if not tsc_khz:
        return ""
    return f"tsc_early_khz={tsc_khz}" + (f" lpj={tsc_khz * 1000 // hz}" if hz else "")


class Machine(Target):
    """A QEMU guest booted from a built kernel and a guest image, reached over SSH: a Target."""

    def __init__(self, kernel, image, logdir, accel="tcg", memory_mib=3072, cpus=2,
                 extra_cmdline="", arch_name="x86_64", stall=30, pin=None, prealloc=True):
        super().__init__(stall=stall)
        self.arch = arch.load(arch_name)
        self.pin = pin              # host CPUs for QEMU (taskset list, e.g. "2-3"), or None
        self.kernel = kernel
        self.image = image
        self.logdir = Path(logdir)
        self.accel = accel
        self.memory_mib = memory_mib
        self.prealloc = prealloc    # guest RAM faulted in on the host before the guest starts
        self.cpus = cpus
        self.extra_cmdline = extra_cmdline
        self.proc = None
        self.watcher = None
        self.boot_seconds = None
        self.boot_phases = {}

    @property
    def console_log(self):
        return self.logdir / "console.log"

    @property
    def qemu_log(self):
        return self.logdir / "qemu.log"

    def start(self):
        tools.require(self.arch["qemu"])
        self.logdir.mkdir(parents=True, exist_ok=True)
        for log in (self.console_log, self.qemu_log):
            log.write_bytes(b"")
        self.key = new_client_key()
        self.watcher = None
        self.launch()
        return self

    def launch(self):
        """Start QEMU; it binds the forwarded port itself and its monitor says which."""
        import tempfile
        self.private = tempfile.mkdtemp(prefix="harness-qemu-")      # 0700: this user's only
        monitor = Path(self.private) / "monitor.sock"
        key = self.key
        acc = self.arch["accel"][self.accel]
        khz = arch.host_tsc_khz() if acc.get("host_tsc_khz") else acc.get("tsc_khz")
        cmdline = " ".join(filter(None, [self.arch["cmdline"], acc.get("cmdline"),
                                          clock_args(khz, self.kernel.hz),
                                          f"init={self.image.init}",
                                          self.extra_cmdline, authkey_arg(key)]))
        self.argv = qemu_argv(self.arch, self.accel, self.kernel.image, cmdline, self.logdir,
                              self.memory_mib, self.cpus, disk=self.image.path, port=0,
                              prealloc=self.prealloc, monitor=monitor)
        if self.pin:
            self.argv = [tools.require("taskset"), "-c", self.pin, *self.argv]
        if self.watcher is None:
            marks = dict(console.BOOT_MARKS)
            if self.image.ready_line:
                marks["listening"] = re.compile(re.escape(self.image.ready_line))
            self.watcher = console.Watcher(self.console_log, self.qemu_log, marks=marks).start()
        self.started = time.monotonic()
        self.proc = tools.start(self.argv, self.qemu_log)
        self.port = self.learn_port(monitor)
        self.channel = SSHChannel(self.port, key, self.image.host_key)

    def learn_port(self, monitor, timeout=None):
        """The port QEMU bound for the SSH forward, asked of its monitor once it listens: QEMU
        answers after it has faulted in the preallocated RAM, so the wait grows with it (3 GiB on
        a starved host took over 120 s): 120 s and 60 s per GiB preallocated."""
        if timeout is None:
            timeout = 120 + (60 * self.memory_mib / 1024 if self.prealloc else 0)
        return learn_port(monitor, self.check, f"({self.qemu_log})", timeout)

    def check(self):
        """Raise if the guest has panicked or QEMU is gone; called inside every wait."""
        if self.watcher.fatal:
            kind, line = self.watcher.fatal
            self.watcher.poll()
            # the console's last lines, kernel addresses named (a small kernel has no kallsyms)
            raise GuestPanic(f"{kind}: {line}", log_tail=console.symbolise(
                self.tail(), Path(self.kernel.path) / "System.map" if self.kernel else None))
        code = self.proc.poll()
        if code is not None:
            self.watcher.poll()
            if self.watcher.fatal:
                self.check()
            raise GuestError(f"QEMU exited with code {code} ({self.qemu_log})", log_tail=self.tail())

    def clock_trouble(self):
        """Console lines that say this boot's clock is coarse (see console.CLOCK_TROUBLE)."""
        text = self.console_log.read_text(errors="replace") if self.console_log.exists() else ""
        return [m.group(0) for line in text.splitlines() for pattern, _ in console.CLOCK_TROUBLE
                for m in [pattern.search(line)] if m]

    def tail(self, lines=30):
        text = console.tail(self.console_log, lines)
        qemu = console.tail(self.qemu_log, 10)
        return text + (f"\n--- QEMU ---\n{qemu}" if qemu.strip() else "")

    def console_mark(self):
        return self.console_log.stat().st_size if self.console_log.exists() else 0

    def death_evidence(self, since=0):
        """The first lines of the oops or panic on the console after `since` (its tail for a
        hang), kernel addresses named from the build's System.map (no kallsyms in a small kernel)."""
        self.watcher.poll()
        text = console.excerpt(console.read_since(self.console_log, since))
        return console.symbolise(text, Path(self.kernel.path) / "System.map")

    def listening(self):
        """True once the guest's SSH server can take a connection, as far as the console tells.

        QEMU's port forward accepts a connection even before the guest's network is up and then
        holds it, so a probe sent too early only blocks. With a ready line in the image recipe the
        port is left alone until the console shows it, or for READY_AFTER_INIT seconds after init
        started, or READY_GRACE seconds after QEMU did (in case the server's log goes elsewhere);
        without one, it is probed from the start.
        """
        if "listening" not in self.watcher.marks:
            return True
        self.watcher.poll()
        seen, now = self.watcher.seen_at, time.monotonic()
        return ("listening" in seen or now - seen.get("init", now) > READY_AFTER_INIT
                or now - self.started > READY_GRACE)

    def wait_ready(self, timeout=60):
        """Wait for the guest's SSH server; returns the seconds from QEMU start to the first command.
        The boot's milestones (seconds from QEMU start) are kept in boot_phases."""
        deadline = self.started + timeout
        while True:
            self.check()
            listening = self.listening()
            # once the console said the server listens, no separate banner probe: each connection
            # costs the guest a fork and a re-exec of the server
            left = max(1.0, deadline - time.monotonic())
            if listening and self.channel.try_connect(timeout=min(5.0, left),
                                                    probe="listening" not in self.watcher.seen_at):
                connected = time.monotonic() - self.started
                code, out, _ = self.channel.run(["true"], timeout=30, alive=self.check)
                if code == 0:
                    self.boot_seconds = time.monotonic() - self.started
                    phases = {name: at - self.started for name, at in self.watcher.seen_at.items()}
                    phases.update(ssh_connected=connected, first_command=self.boot_seconds)
                    self.boot_phases = {k: round(v, 3) for k, v in sorted(phases.items(), key=lambda kv: kv[1])}
                    return self.boot_seconds
            if time.monotonic() > deadline:
                raise GuestTimeout(f"the guest did not become ready within {timeout} s "
                                   f"(serial log: {self.console_log})", log_tail=self.tail())
            time.sleep(0.02 if listening else 0.01)

    def settle(self, seconds=3):
        """Watch for a few seconds: raises if the guest has died (a panic shows a moment after
        the connection or the command that caused it broke)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.watcher.poll()
            self.check()
            time.sleep(0.05)

    def stop(self):
        self.close()
        if self.proc:
            tools.stop(self.proc)
        if getattr(self, "private", None):
            import shutil
            shutil.rmtree(self.private, ignore_errors=True)
        if self.watcher:
            self.watcher.stop()

    def __enter__(self):
        return self if self.proc else self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def boot_probe(a, accel, kernel_image, workdir, timeout):
    """Boot kernel_image with no root file system under accel: True if the kernel runs its whole
    init (it ends in the 'VFS: Unable to mount root fs' panic) within timeout seconds."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    argv = qemu_argv(a, accel, kernel_image, "console=ttyS0 panic=-1", workdir, 256, 1)
    qlog = workdir / "qemu.log"
    (workdir / "console.log").write_bytes(b"")     # never judge by an earlier probe's log
    qlog.write_bytes(b"")
    proc = tools.start(argv, qlog)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            text = console.tail(workdir / "console.log", 400)
            if "Unable to mount root fs" in text or "Kernel panic" in text:
                return True, f"booted to the root mount in {timeout - (deadline - time.monotonic()):.1f} s"
            if console.scan(console.tail(qlog, 50), console.QEMU_FATAL):
                return False, console.tail(qlog, 3).strip()
            if proc.poll() is not None:
                return False, f"QEMU exited with code {proc.returncode}: {console.tail(qlog, 3).strip()}"
            time.sleep(0.05)
        return False, f"no boot within {timeout} s"
    finally:
        tools.stop(proc, grace=0)


def _kvm_opens():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as exc:
        return False, f"/dev/kvm: {exc.strerror}"
    os.close(fd)
    return True, ""


def choose_accel(requested, kernel_image, workdir, probe_timeout=20):
    """('kvm'|'tcg', reason). 'auto' boots the kernel under KVM and keeps it only if that works."""
    if requested == "tcg":
        return "tcg", "asked for TCG"
    opens, why = _kvm_opens()
    if requested == "kvm":
        if not opens:
            raise InfraError(f"KVM was asked for but {why}")
        return "kvm", "asked for KVM"
    if not opens:
        return "tcg", f"KVM unavailable ({why})"
    ok, detail = boot_probe(arch.load(), "kvm", kernel_image, workdir, probe_timeout)
    if ok:
        return "kvm", f"KVM probe {detail}"
    return "tcg", f"KVM present but the probe boot failed: {detail}"
