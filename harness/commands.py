"""The small commands behind `harness build`, `harness image` and `harness boot`."""
import sys
import tempfile

from harness.guest import image as image_mod
from harness import ui, validate
from harness.guest.machine import Machine
from harness.kernel import layout
from harness.pipeline import Run
from harness.results import NullStore, RunStore


def build(exp):
    run = Run(exp, store=NullStore())
    for index, kernel in run.kernel(exp.kernels[0]):
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


def boot(exp, command):
    """Boot the experiment's kernel; run one command (exit with its code) or open a shell."""
    spec = exp.kernels[0]
    validate.request(exp)           # before the log folder is made
    logs = tempfile.mkdtemp(prefix="harness-boot-")
    run = Run(exp, store=RunStore("boot", root=logs))
    [(_, kernel), *_] = run.kernel(spec)
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
        return m.shell()
