"""The small commands behind `harness build`, `harness image` and `harness boot`."""
import os
import select
import sys
import tempfile
import termios
import tty

from harness.guest import image as image_mod
from harness import ui
from harness.guest.machine import Machine
from harness.pipeline import Run
from harness.results import NullStore, RunStore


def build(exp):
    run = Run(exp, store=NullStore())
    kernel = run.kernel(exp.kernels[0])
    ui.out(f"kernel {kernel.info['release']}  key {kernel.key}")
    for name in ("bzImage", "vmlinux", "config", "System.map", "build.log", "kernel.json"):
        if (kernel.path / name).exists():
            ui.out(f"  {kernel.path / name}")
    return 0


def image(name, mirror):
    with ui.step(f"guest image {name}") as say:
        img = image_mod.GuestImage(name, mirror).run(say)
    ui.out(str(img.path))
    return 0


def boot(exp, command):
    """Boot the experiment's kernel; run one command (exit with its code) or open a shell."""
    spec = exp.kernels[0]
    logs = tempfile.mkdtemp(prefix="harness-boot-")
    run = Run(exp, store=RunStore("boot", root=logs))
    kernel = run.kernel(spec)
    img = run.guest_image()
    chosen = run.choose_accel(kernel)
    with Machine(kernel, img, run.store.kernel_dir(spec.label), accel=chosen,
                 memory_mib=exp.memory_mib, cpus=exp.cpus, extra_cmdline=exp.extra_cmdline,
                 stall=exp.stall_s) as m:
        with ui.step(f"boot {kernel.info['release']} under {chosen}") as say:
            seconds = m.wait_ready(exp.boot_timeout)
            say(f"first guest command after {seconds:.2f} s; serial log {m.console_log}")
        if command:
            code, out, err = m.run(command, timeout=3600)
            sys.stdout.write(out + ("\n" if out else ""))
            sys.stderr.write(err)
            return code
        return shell(m)


def shell(machine):
    """An interactive shell in the guest over the SSH channel, in raw terminal mode."""
    chan = machine.guest.client.get_transport().open_session()
    size = os.get_terminal_size() if sys.stdin.isatty() else os.terminal_size((80, 24))
    chan.get_pty(term=os.environ.get("TERM", "vt100"), width=size.columns, height=size.lines)
    chan.invoke_shell()
    old = termios.tcgetattr(sys.stdin) if sys.stdin.isatty() else None
    try:
        if old:
            tty.setraw(sys.stdin.fileno())
        while True:
            ready, _, _ = select.select([chan, sys.stdin], [], [], 0.5)
            machine.check()
            if chan in ready:
                data = chan.recv(4096)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if sys.stdin in ready:
                data = os.read(sys.stdin.fileno(), 1024)
                if not data:
                    break
                chan.send(data)
            if chan.exit_status_ready() and not chan.recv_ready():
                break
    finally:
        if old:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, old)
    return chan.recv_exit_status() if chan.exit_status_ready() else 0
