"""`harness selfbench --speed`: where users wait (#22), measured side by side in one session.

- `harness --help` and `harness run --help`: the median wall time of several runs, each a new
  Python process as a user starts it.
- `harness report` on a 3-kernel x 6-boot run of the shape `harness reproduce` writes (generated:
  fork-latency at 12 sizes, fork-memory, fault-latency and fork-server, plain forks and the
  default feature profile's), with its plots and with --no-plots (the text, report.md and
  report.html; matplotlib not loaded).
- with --builds: a kernel (guest-base + selftests) built in a scratch cache's workbench (the
  sources and images of the usual cache shared), then a series on top of it (default: the test
  series, a few lines in init/main.c and kernel/sysctl.c), once per config of --feature's profile
  (for the series' feature: on and off): seconds and objects compiled each, and all of them against the one cold
  build. ccache is off (CCACHE_DISABLE), so the figures after the first are the workbench's alone.
Figures only: nothing is asserted.
"""
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import cache, feature, paths, tools, ui

KERNELS = ("stock", "feature-on", "feature-off")
SIZES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def sample_run(folder, boots=6):
    """A run folder of recorded shape: 3 kernels x `boots` boots, four workloads."""
    import numpy as np
    rng = np.random.default_rng(3)
    run = Path(folder) / "sample-3x6"
    meta = {"run_id": run.name, "accel": "tcg", "timing": "real", "feature": feature.default().name,
            "kernels": {k: {"status": "ok", "patches": [] if k == "stock" else ["p"] * 14,
                            feature.CONFIG: "y" if k == "feature-on" else "n"} for k in KERNELS}}
    for kernel in KERNELS:
        out = {"fork-latency": [], "fork-memory": [], "fault-latency": [], "fork-server": []}
        for boot in range(1, boots + 1):
            for on in (0, 1):
                common = {"boot": boot, feature.REQUESTED: bool(on), "thp": "nohuge",
                          feature.STATE: feature.ACTIVE if on and kernel == "feature-on" else feature.OFF}
                out["fork-latency"] += [{**common, "size_mib": s, "rep": r, "warmup": r < 0,
                                         "fork_ns": float((s + 1) * 5e4 * rng.lognormal(0, .05))}
                                        for s in SIZES for r in range(-2, 10)]
                out["fork-memory"] += [{**common, "mib": 1024, "rep": r, "fork_ns": float(3e7 * rng.lognormal(0, .05)),
                                        "parent_vmrss_kb": 1049000, "child_vmrss_kb": 1049000,
                                        "parent_vmpte_kb": 2096, "child_vmpte_kb": 2096,
                                        "pagetables_delta_kb": 2100} for r in range(3)]
                out["fault-latency"] += [{**common, "mib": 512, "pattern": "seq", "side": "child", "round": r,
                                          "mean_ns": float(900 * rng.lognormal(0, .05)),
                                          "median_ns": float(850 * rng.lognormal(0, .05))} for r in range(5)]
                out["fork-server"] += [{**common, "heap_mib": 256, "round": r,
                                        "forks_per_s": float(300 * rng.lognormal(0, .05))} for r in range(5)]
        (run / kernel).mkdir(parents=True, exist_ok=True)
        for name, recs in out.items():
            (run / kernel / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "metadata.json").write_text(json.dumps(meta))
    return run


def wall(argv, times):
    """Median seconds of `times` runs of argv (a new process each)."""
    seconds = []
    for _ in range(times):
        started = time.monotonic()
        tools.run(argv, check=False)
        seconds.append(time.monotonic() - started)
    return statistics.median(seconds), min(seconds), max(seconds)


def cli_rows(times):
    harness = [sys.executable, "-m", "harness"]
    rows = []
    for args in (["--help"], ["run", "--help"]):
        med, lo, hi = wall(harness + args, times)
        rows.append((f"harness {' '.join(args)}", f"median {med:.2f} s", f"min {lo:.2f}, max {hi:.2f}, {times} runs"))
    with tempfile.TemporaryDirectory(prefix="harness-speed-") as tmp:
        run = sample_run(tmp)
        for extra, what in (([], "with plots"), (["--no-plots"], "--no-plots")):
            med, lo, hi = wall(harness + ["report", str(run), "--out", tmp + "/out"] + extra, 3)
            rows.append((f"harness report, 3 kernels x 6 boots, {what}", f"median {med:.2f} s",
                         f"min {lo:.2f}, max {hi:.2f}, 3 runs"))
    return rows


def build_rows(kernel_src, series_spec, profile=None):
    """The kernel from cold, then the series on it (once per config of the profile: its option
    on and off, the pair and variants a comparison needs), in a scratch cache's workbench with
    ccache off; the last row is the whole set against the one cold build."""
    from harness.kernel import kconfig, series as series_mod, sources
    from harness.kernel.build import Build
    from harness.selfbench import environ
    profile = profile or feature.load(feature.NONE)
    shared = cache.root()
    rows, seconds = [], []
    with tempfile.TemporaryDirectory(prefix="harness-speed-cache-") as tmp:
        for name in ("sources", "images", "downloads"):
            if (shared / name).exists():
                (Path(tmp) / name).symlink_to(shared / name)
        with environ(HARNESS_CACHE=tmp, CCACHE_DISABLE="1"):
            source = sources.resolve(kernel_src)
            base = ["guest-base", "selftests"]
            series = series_mod.load(series_spec)
            patched, _ = series_mod.apply(series, source)
            ids = series_mod.patch_ids(series)
            sets = profile.config_sets(base) or {"": base}
            builds = [("kernel from cold", source, [], base)]
            builds += [(f"+ series ({len(series.patches)} patches){' ' + name if name else ''}", patched, ids,
                        frags) for name, frags in sets.items()]
            for label, tree, patch_ids, names in builds:
                frags = [kconfig.fragment(profile.fragment_path(f) or f) for f in names]
                with ui.step(f"build: {label}"):
                    kernel = Build(tree, frags, patches=patch_ids).run()
                seconds.append(kernel.info["build_seconds"])
                rows.append((f"build {label}", f"{seconds[-1]:.0f} s",
                             f"{kernel.info['objects_compiled']} objects compiled"))
    rows.append((f"all {len(seconds)} kernels from cold", f"{sum(seconds):.0f} s",
                 f"{sum(seconds) / seconds[0]:.2f} x the one cold build"))
    return rows


def main(args):
    profile = feature.load(args.feature) if args.feature else None     # an unknown one refused first
    rows = cli_rows(args.times)
    if args.builds:
        rows += build_rows(args.kernel_src, args.series or str(paths.ROOT / "tests" / "data" / "test-series"),
                           profile)
    ui.out(f"selfbench --speed {time.strftime('%Y-%m-%d %H:%M')} on {os.uname().nodename}: "
           f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    ui.rows(rows, 14)
    return 0
