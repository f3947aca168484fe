"""The small commands behind `harness build`, `harness image` and `harness boot`: each validates
its request once, then uses the shared services (harness.kernel.prepare, harness.guest.factory)."""
import shlex
import sys
import tempfile
from pathlib import Path

from harness.guest import image as image_mod
from harness import ui, validate
from harness.errors import UserError
from harness.guest.factory import Guests
from harness.kernel import layout, prepare
from harness.results import NullStore


def build(exp):
    validate.request(exp)
    for index, kernel in prepare.Kernels(exp).kernel(exp.kernels[0], NullStore()):
        ui.out(f"kernel {kernel.info['release']}  key {kernel.key}"
               + (f"  layout variant {index} (+{layout.pad(index)} bytes)" if exp.variants else ""))
        if not kernel.info.get("cached") and "objects_compiled" in kernel.info:
            base = kernel.info.get("built_from") or {}
            ui.out(f"  compiled {kernel.info['objects_compiled']} objects in {kernel.info['build_seconds']} s; "
                   f"base: {base.get('reason', 'its own folder')}")
        for name in ("bzImage", "vmlinux", "config", "System.map", "build.log", "kernel.json"):
            if (kernel.path / name).exists():
                ui.out(f"  {kernel.path / name}")
    return 0


def image(name, mirror):
    with ui.step(f"guest image {name}") as say:
        img = image_mod.GuestImage(name, mirror).run(say)
    ui.out(str(img.path))
    return 0


def boot(exp, command, put=()):
    """Boot the experiment's kernel with every guest setting the flags gave (the guest factory
    makes the Machine); copy `put` (files or folders) into the guest's home folder; run one
    command (exit with its code) or open a shell."""
    validate.request(exp)           # before anything is built or the log folder is made
    put = [Path(p).expanduser() for p in put]
    missing = [str(p) for p in put if not p.exists()]
    if missing:
        raise UserError(f"--put: no such file or folder: {', '.join(missing)}")
    store = NullStore()
    [(_, kernel), *_] = prepare.Kernels(exp).kernel(exp.kernels[0], store)
    logs = Path(tempfile.mkdtemp(prefix="harness-boot-"))
    machine, _ = Guests(exp, store).boot(kernel, logs, "boot", attempts=1)
    with machine:
        ui.console.print(f"serial log {machine.console_log}", markup=False)
        home = (machine.run(["sh", "-c", 'echo "$HOME"'])[1].strip() or "/root") if put else None
        for path in put:
            machine.put(path, home if path.is_file() else f"{home}/{path.name}")
        if command:
            code, out, err = machine.run(command, timeout=3600)
            sys.stdout.write(out + ("\n" if out else ""))
            sys.stderr.write(err)
            return code
        return machine.shell()


def standin(logdir, memory_mib, accel, seconds=None):
    """Boot the stand-in machine (harness.guest.standin) and print the flags that make it the
    target of a run; it runs until Ctrl-C (or `seconds`)."""
    import time
    from harness.guest.standin import StandIn
    with ui.step("stand-in machine (vm-images/debian-machine)") as say:
        s = StandIn(logdir, accel=accel, memory_mib=memory_mib).start()
        try:
            say(f"its SSH server answered {s.wait_ready():.0f} s after QEMU started")
        except BaseException:
            s.stop()
            raise
    with s:
        ui.out(f"console {s.console_log}")
        ui.out("target flags: " + " ".join(shlex.quote(f) for f in s.flags()))
        try:
            time.sleep(seconds if seconds is not None else 10 ** 9)
        except KeyboardInterrupt:
            pass
    return 0
