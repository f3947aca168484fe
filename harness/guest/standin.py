"""The stand-in machine: a QEMU guest that plays a real test box for `--machine`.

It runs the `debian-machine` image (vm-images/debian-machine: Debian bookworm with systemd,
OpenSSH, kexec-tools and Debian's own kernel), booted as a PC (virtio disk and network on PCI,
no -no-reboot: a reboot or a panic's reboot brings it back on its own kernel, as a power cycle
would a real machine) straight from the image's own vmlinuz and initrd. The harness reaches it
only as it reaches a real machine: `ssh://root@127.0.0.1:PORT` with the image's client key
(--identity) and a known_hosts file that pins the image's host key (--known-hosts), and reads its
console through a command (--console). The disk is a snapshot: every start is the same machine.
"""
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from harness import tools
from harness.errors import GuestError
from harness.guest import arch, console, image as image_mod
from harness.guest.machine import learn_port, option_value
from harness.guest.remote import RemoteMachine

RECIPE = "debian-machine"


def standin_argv(a, accel, img, cmdline, logdir, memory_mib, cpus, monitor):
    """QEMU's command line for the stand-in (pure, so tests can read it)."""
    acc = a["accel"][accel]
    return [a["qemu"], "-M", "pc", "-accel", acc["accel"], "-cpu", acc["cpu"], *acc.get("qemu_args", []),
            "-m", str(memory_mib), "-smp", str(min(cpus, acc.get("max_cpus", cpus))),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-kernel", str(img.beside("vmlinuz")), "-initrd", str(img.beside("initrd.img")),
            "-append", cmdline,
            "-chardev", f"file,id=con,path={option_value(logdir / 'console.log')}", "-serial", "chardev:con",
            "-drive", f"id=root,file={option_value(img.path)},format=raw,if=none,snapshot=on",
            "-device", "virtio-blk-pci,drive=root",
            # restrict=on: the machine reaches nothing on the host or beyond; port 0: QEMU binds one
            "-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:22",
            "-device", "virtio-net-pci,netdev=net0",
            "-monitor", f"unix:{option_value(monitor)},server=on,wait=off"]


class StandIn:
    """start() boots it; url, identity, known_hosts and console are what --machine needs."""

    def __init__(self, logdir, accel="tcg", memory_mib=1024, cpus=2, image=None):
        self.logdir = Path(logdir)
        self.accel, self.memory_mib, self.cpus = accel, memory_mib, cpus
        self.image = image
        self.proc = self.port = self.private = None

    @property
    def console_log(self):
        return self.logdir / "console.log"

    @property
    def url(self):
        return f"ssh://root@127.0.0.1:{self.port}"

    @property
    def identity(self):
        return str(self.image.beside(self.image.info["client_key"]))

    @property
    def known_hosts(self):
        return str(self.logdir / "known_hosts")

    @property
    def console(self):
        return f"tail -c 262144 {shlex.quote(str(self.console_log))}"

    def flags(self):
        return ["--machine", self.url, "--identity", self.identity, "--known-hosts", self.known_hosts,
                "--console", self.console]

    def start(self):
        self.image = self.image or image_mod.GuestImage(RECIPE).run()
        a = arch.load()
        tools.require(a["qemu"])
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.console_log.write_bytes(b"")
        self.private = tempfile.mkdtemp(prefix="harness-standin-")     # 0700: this user's only
        monitor = Path(self.private) / "monitor.sock"
        self.argv = standin_argv(a, self.accel, self.image, self.image.info["recipe"]["cmdline"],
                                 self.logdir, self.memory_mib, self.cpus, monitor)
        self.started = time.monotonic()
        self.proc = tools.start(self.argv, self.logdir / "qemu.log")
        self.port = self.learn_port(monitor)
        Path(self.known_hosts).write_text(f"[127.0.0.1]:{self.port} {self.image.host_key}\n")
        return self

    def learn_port(self, monitor, timeout=120):
        return learn_port(monitor, self.check, "(the stand-in machine)", timeout)

    def check(self):
        if self.proc and self.proc.poll() is not None:
            raise GuestError(f"the stand-in's QEMU exited with code {self.proc.returncode}",
                             log_tail=console.tail(self.logdir / "qemu.log", 10))

    def target(self, **kw):
        """A RemoteMachine for it, as --machine would make one."""
        kw.setdefault("logdir", self.logdir / "target")     # not console.log, which QEMU writes
        return RemoteMachine.open(self.url, self.identity, self.known_hosts, console=self.console, **kw)

    def wait_ready(self, timeout=600):
        """Seconds from QEMU's start until the machine's SSH server lets the client key in."""
        m = self.target()
        try:
            m.connect(timeout, alive=self.check)
        finally:
            m.close()
        return time.monotonic() - self.started

    def stop(self):
        if self.proc:
            tools.stop(self.proc)
        if self.private:
            shutil.rmtree(self.private, ignore_errors=True)

    def __enter__(self):
        return self if self.proc else self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
