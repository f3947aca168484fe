"""`harness selfbench`: how fast and how steady the harness is on this machine.

Prints side by side: the no-op rebuild (tuxmake over an already-built tree) and a cached request;
boot-to-first-guest-command over several boots in each timing mode; and the coefficient of
variation of one fork-latency task (512 MiB, 10 timed forks) in each timing mode. With --cold also
a cold kernel build (fresh build folder, ccache off) and a guest image built from nothing.
Figures only: nothing is asserted.
"""
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from harness.guest import accel
from harness.kernel import kconfig, sources
from harness import ui
from harness.kernel.build import Build
from harness.experiment import DEFAULT_FRAGMENTS, Experiment, KernelSpec, WorkloadSpec
from harness.guest.image import GuestImage
from harness.guest.factory import Guests
from harness.pipeline import Run
from harness.results import NullStore, RunStore


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


def boots(kernel, image, mode, count, logdir):
    """Seconds to the first guest command of `count` boots in this mode, default guest settings."""
    guests = Guests(Experiment(kernels=[]), NullStore(), image=image, accel=mode)
    seconds = []
    for i in range(count):
        with guests.machine(kernel, Path(logdir) / f"{mode}-{i}") as m:
            seconds.append(m.wait_ready(120))
    return seconds


def fork_task_cv(spec, accel_name, timing, tmp):
    """CV of fork() at 512 MiB over 10 timed forks (2 warm-ups) in one guest of this mode."""
    exp = Experiment(kernels=[spec], accel=accel_name, timing=timing, memory_mib=2048,
                     workloads=[WorkloadSpec("fork-latency", {"sizes_mib": "512", "reps": 10, "warmup": 2})])
    run = Run(exp, store=RunStore(f"selfbench-{timing}", root=tmp)).execute()
    x = [r["fork_ns"] for r in run.store.records(spec.label, "fork-latency") if not r.get("warmup")]
    if len(x) < 2:
        return None, None
    return statistics.median(x), statistics.stdev(x) / statistics.mean(x)


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
    modes = [chosen] + (["icount"] if chosen == "tcg" else [])
    spec = KernelSpec("selfbench", args.kernel_src, list(DEFAULT_FRAGMENTS))
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        for mode in modes:
            with ui.step(f"{args.boots} boots, {mode}"):
                b = boots(kernel, image, mode, args.boots, tmp)
            rows.append((f"boot to first guest command, {mode}", f"median {statistics.median(b):.2f} s",
                         f"min {min(b):.2f} s, max {max(b):.2f} s, {args.boots} boots"))
        for mode in modes:
            timing = "icount" if mode == "icount" else "real"
            with ui.step(f"fork-latency 512 MiB x 10, {timing} timing"):
                median, cv = fork_task_cv(spec, "tcg" if mode == "icount" else chosen, timing, tmp)
            unit = "ms (icount: instructions)" if timing == "icount" else "ms"
            rows.append((f"fork 512 MiB, 10 forks, {timing} timing",
                         "-" if cv is None else f"CV {100 * cv:.2f}%",
                         "" if median is None else f"median {median / 1e6:.3f} {unit}"))
    if chosen != "kvm":
        ui.warn(f"guests ran under {chosen.upper()}: {reason}")
    load = os.getloadavg()[0]
    ui.out(f"selfbench {time.strftime('%Y-%m-%d')} on {os.uname().nodename}: {os.cpu_count()} cores, "
           f"load {load:.1f}, kernel {kernel.info['release']}, accelerator {chosen}")
    ui.rows(rows, 16)
    return 0
