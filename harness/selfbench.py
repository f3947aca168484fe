"""`harness selfbench`: how fast the harness itself is on this machine.

Prints the no-op rebuild (tuxmake over an already-built tree), boot-to-first-guest-command over
several boots, with the accelerator used; with --cold also a cold kernel build (fresh build folder,
ccache off) and a guest image built from nothing. Figures only: nothing is asserted.
"""
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from harness import accel, kconfig, sources, ui
from harness.build import Build
from harness.image import GuestImage
from harness.machine import Machine
from harness.experiment import DEFAULT_FRAGMENTS


@contextlib.contextmanager
def environ(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def timed(fn):
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result


def main(args):
    rows = []
    frags = [kconfig.fragment(f) for f in DEFAULT_FRAGMENTS]
    source = sources.resolve(args.kernel_src)
    with ui.step("kernel (cached build)"):
        kernel = Build(source, frags).run()
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="harness-cold-") as tmp, ui.step("cold build (ccache off)"):
            with environ(CCACHE_DISABLE="1"):
                seconds, _ = timed(lambda: Build(source, frags, force=True, objdir=Path(tmp)).run())
            rows.append(("cold kernel build, ccache off", f"{seconds:.1f} s", f"-j{os.cpu_count()}"))
        with tempfile.TemporaryDirectory(prefix="harness-img-") as tmp, ui.step("guest image from nothing"):
            with environ(HARNESS_CACHE=tmp):
                seconds, _ = timed(lambda: GuestImage().run())
            rows.append(("guest image build (debootstrap + mkfs)", f"{seconds:.1f} s", "debian-minimal"))
    with ui.step("no-op rebuild"):
        seconds, _ = timed(lambda: Build(source, frags, force=True).run())
    rows.append(("no-op rebuild (tuxmake config + make)", f"{seconds:.1f} s", ""))
    seconds, _ = timed(lambda: Build(source, frags).run())
    rows.append(("same build request again (cache hit)", f"{seconds:.2f} s", ""))
    image = GuestImage().run()
    chosen, reason = accel.choose(args.accel, kernel.image)
    boots = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as logdir:
        for i in range(args.boots):
            with Machine(kernel, image, Path(logdir) / str(i), accel=chosen) as m:
                boots.append(m.wait_ready(60))
    rows.append((f"boot to first guest command ({args.boots} boots)",
                 f"median {statistics.median(boots):.2f} s",
                 f"min {min(boots):.2f} s, max {max(boots):.2f} s, accel {chosen}"))
    if chosen != "kvm":
        ui.warn(f"guests ran under {chosen.upper()}: {reason}")
    ui.out(f"selfbench {time.strftime('%Y-%m-%d')} on {os.uname().nodename}, {os.cpu_count()} cores, "
           f"kernel {kernel.info['release']}, accel {chosen}")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        ui.out(f"  {name:<{width}}  {value:>14}  {note}")
    return 0
