"""Plots of a run's records (matplotlib, Agg, PNG): one function per workload.

Each takes the DataFrame from harness.analysis.stats.load_run(s) and an output path, and returns the path,
or None when the records hold nothing for that plot. Warm-up records are left out.
"""
import functools
import textwrap
from pathlib import Path

import matplotlib.ticker
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.analysis import inference, stats


class plt:
    """pyplot's subplots without pyplot (its import and figure manager cost a report a third of a
    second): an Agg figure of its own, nothing global to close."""

    @staticmethod
    def subplots(*args, figsize=None, **kwargs):
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        return fig, fig.subplots(*args, **kwargs)


def records(df, workload, *needed):
    if df is None or df.empty or "workload" not in df:
        return None
    sub = stats.measured(df[df["workload"] == workload])
    if sub.empty or any(c not in sub or sub[c].isna().all() for c in needed):
        return None
    return sub.dropna(subset=list(needed))


def time_scale(values_ns):
    """(divisor, unit) that makes nanosecond values readable."""
    top = np.nanmedian(values_ns) if len(values_ns) else 0
    for div, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if top >= div:
            return div, unit
    return 1.0, "ns"


def series(sub, workload, axis):
    """[(label, records)]: one per condition, and per value of any other varying parameter."""
    extra = [c for c in stats.param_columns(sub, workload) if c != axis and sub[c].nunique() > 1]
    out = []
    for key, part in sub.groupby(["condition", *extra], sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        label = key[0] + "".join(f", {c}={stats.plain(v)}" for c, v in zip(extra, key[1:]))
        out.append((label, part))
    return out


STYLES = ("-", "--", "-.", ":")


def margins(fig, left=0.8, bottom=0.6, top=0.4, right=0.2, wspace=None, hspace=None):
    """Fixed margins in inches (each plot knows its labels), instead of tight_layout: that measures
    every tick label before the drawing measures them again, a fifth of the plots' time."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace, hspace=hspace)


def save(fig, path):
    """The figure as a PNG at 110 dpi, drawn once: savefig would draw it again, and compress
    harder (together most of a report's time). The plot has set its margins()."""
    from PIL import Image              # matplotlib's own dependency
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.set_dpi(110)
    fig.canvas.draw()
    Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).save(path, compress_level=1)
    return path


def fork_latency(df, path):
    """fork() time against the parent's size: median line, IQR band, log-log."""
    sub = records(df, "fork-latency", "size_mib", "fork_ns")
    if sub is None:
        return None
    div, unit = time_scale(sub["fork_ns"].to_numpy(float))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (label, part) in enumerate(series(sub, "fork-latency", "size_mib")):
        g = part.groupby("size_mib")["fork_ns"]
        q = g.quantile([0.25, 0.5, 0.75]).unstack() / div
        ax.plot(q.index, q[0.5], marker="os^D"[i % 4], linestyle=STYLES[i % len(STYLES)],
                label=f"{label} (median)")
        ax.fill_between(q.index, q[0.25], q[0.75], alpha=0.2)
    sizes = sorted(sub["size_mib"].unique())
    if sizes[0] > 0:
        ax.set_xscale("log", base=2)
    else:                                   # size 0 (an empty parent) on a linear stretch below 1
        ax.set_xscale("symlog", base=2, linthresh=1, linscale=0.5)
    ax.set_xticks(sizes, [str(stats.plain(s)) for s in sizes])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_yscale("log")
    # labels at 1, 2 and 5 of each decade; the other minor ticks unlabelled (labelling them all
    # wrote 0.04 ... 0.09 over each other)
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("parent's touched anonymous memory (MiB, log scale)")
    ax.set_ylabel(f"fork() time ({unit}, log scale)")
    ax.set_title("fork latency vs size (median; band: interquartile range)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    margins(fig, left=0.75, bottom=0.55, top=0.35)
    return save(fig, path)


def fault_latency(df, path):
    """CDF of the per-round mean fault time, a panel per access pattern and side."""
    sub = records(df, "fault-latency", "mean_ns")
    if sub is None:
        return None
    panels = [c for c in ("pattern", "side", "mib") if c in sub and sub[c].notna().any()]
    keys = list(sub.groupby(panels, sort=True).groups) if panels else [()]
    div, unit = time_scale(sub["mean_ns"].to_numpy(float))
    cols = min(len(keys), 2)
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.8 * rows), squeeze=False)
    for ax, key in zip(axes.ravel(), keys):
        key = key if isinstance(key, tuple) else (key,)
        part = sub
        for c, v in zip(panels, key):
            part = part[part[c] == v]
        for i, (label, s) in enumerate(series(part, "fault-latency", None)):
            x = np.sort(s["mean_ns"].to_numpy(float)) / div
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=f"{label} (n={len(x)})",
                    linestyle=STYLES[i % len(STYLES)])
        ax.set_title(", ".join(f"{c}={stats.plain(v)}" for c, v in zip(panels, key)) or "all")
        ax.set_xlabel(f"mean fault time per round ({unit})")
        ax.set_ylabel("fraction of rounds")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("page-fault latency after fork: CDF per condition")
    margins(fig, left=0.7, bottom=0.55, top=0.65, wspace=0.25, hspace=0.45)
    return save(fig, path)


def throughput(df, path, workload="fork-server", metric="forks_per_s", what="forks per second"):
    """A throughput metric: median bars with bootstrap 95% CI per condition, grouped by heap size
    when the workload has one."""
    sub = records(df, workload, metric)
    if sub is None:
        return None
    axis = "heap_mib" if "heap_mib" in sub else None
    sizes = sorted(sub[axis].unique()) if axis else [None]
    labelled = series(sub, workload, axis)
    width = 0.8 / len(labelled)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(sizes) * len(labelled)), 4.5))
    for i, (label, part) in enumerate(labelled):
        meds, errs = [], [[], []]
        for size in sizes:
            x = (part[part[axis] == size] if axis else part)[metric].to_numpy(float)
            med = np.median(x) if len(x) else np.nan
            lo, hi = inference.median_ci(x)
            meds.append(med)
            errs[0].append(med - lo if len(x) else 0)
            errs[1].append(hi - med if len(x) else 0)
        ax.bar(np.arange(len(sizes)) + i * width, meds, width, yerr=errs, capsize=3, label=label)
    ax.set_xticks(np.arange(len(sizes)) + width * (len(labelled) - 1) / 2)
    ax.set_xticklabels([f"{stats.plain(s)} MiB" for s in sizes] if axis else ["all"])
    ax.set_xlabel("parent heap (MiB)" if axis else "")
    ax.set_ylabel(f"{what} ({stats.unit_of(workload, metric)})")
    ax.set_title(f"{workload} throughput\n(median; bars: bootstrap 95% CI, none for a single run)",
                 fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    margins(fig, left=0.75, bottom=0.6, top=0.55)
    return save(fig, path)


MEMORY = [("VmRSS", "vmrss_kb", 1024, "MiB"), ("VmPTE", "vmpte_kb", 1, "kB")]


def fork_memory(df, path):
    """Median VmRSS and VmPTE of parent and child, and the PageTables delta, per condition."""
    sub = records(df, "fork-memory", "parent_vmrss_kb")
    if sub is None:
        return None
    labelled = series(sub, "fork-memory", None)
    names = ["\n".join([*label.split(": ", 1)[:1], textwrap.fill(label.split(": ", 1)[-1], 16),
                        f"(n={len(part)})"]) for label, part in labelled]
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(max(10, 2.2 * len(names) * 1.5), 4.5))
    for ax, (title, field, div, unit) in zip(axes, MEMORY):
        for j, side in enumerate(("parent", "child")):
            col = f"{side}_{field}"
            meds = [part[col].median() / div if col in part else np.nan for _, part in labelled]
            bars = ax.bar(x + (j - 0.5) * 0.4, meds, 0.4, label=side)
            ax.bar_label(bars, fmt="%.0f", fontsize="x-small")
        ax.set_title(f"{title} ({unit})")
        ax.set_ylabel(f"{title} ({unit}, median)")
        ax.margins(y=0.25)
        ax.legend(fontsize="small", loc="upper center", ncol=2)
    ax = axes[2]
    meds = [part["pagetables_delta_kb"].median() if "pagetables_delta_kb" in part else np.nan
            for _, part in labelled]
    ax.bar_label(ax.bar(x, meds, 0.5, color="tab:green"), fmt="%.0f", fontsize="x-small")
    ax.margins(y=0.25)
    ax.set_title("PageTables delta at fork (kB)")
    ax.set_ylabel("/proc/meminfo PageTables growth (kB, median)")
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(names, fontsize="x-small")
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("memory of one fork, per condition")
    margins(fig, left=0.75, bottom=0.75, top=0.65, wspace=0.35)
    return save(fig, path)


PLOTS = {"fork-latency": fork_latency, "fault-latency": fault_latency,
         "fork-server": throughput, "fork-memory": fork_memory,
         "afl": functools.partial(throughput, workload="afl", metric="execs_per_sec",
                                  what="executions per second"),
         "stress-fork": functools.partial(throughput, workload="stress-fork", metric="ops_per_s",
                                          what="fork operations per second")}


def write_all(df, out_dir):
    """{workload: png path} for every workload that has data for its plot."""
    done = {}
    for workload, plot in PLOTS.items():
        path = plot(df, Path(out_dir) / f"{workload}.png")
        if path:
            done[workload] = path
    return done
