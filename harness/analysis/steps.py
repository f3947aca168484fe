"""What each step of a series changes: per-patch tables, verdicts and a step plot.

Input: a run made by `harness attribute` (harness/attribute.py). Its metadata.json holds the
attribution: the steps in order (0 = stock, k = patches 1..k applied, or the k-th commit of a
range), and for each step and config ("y": the feature profile's option =y, "n": =n) the label of
the kernel measured there (two configs that resolve to the same .config share one kernel and one
label).

A line is one config and one kind of fork: the plain fork ("fork") and, where the kernel proves it
active (harness.measure.activity), the feature's fork. Each point of a line is compared with the point before
it (the step) and with stock's plain fork, by harness.analysis.stats.compare_samples: over boots when a
kernel has several (the replication design), over the forks of its one boot otherwise (icount,
where a fork's instruction count repeats within 0.1% and boots agree). The steps' p values are
adjusted as one family (Benjamini-Hochberg by default), and a step is called slower or faster only
when its interval excludes no change and the change reaches the practical threshold. The first
point of the feature's line is compared with the plain fork one step before: what the patch that
makes the feature available changes for a process that asks for it.
"""
import numpy as np
import pandas as pd

from harness import feature
from harness.analysis import plots, stats, verdict

def kind_name(kind, profile=None):
    """A line's kind of fork in words ("plain fork", or the profile's name of "active")."""
    return "plain fork" if kind == feature.OFF else (profile or feature.default()).label(kind)


def config_name(config, profile=None):
    """"y"/"n" as the profile's option (CONFIG_X=y); other configs as they are."""
    option = (profile or feature.default()).proof.get("config")
    return f"{option}={config}" if option and config in ("y", "n") else config


def same_text(profile=None):
    option = (profile or feature.default()).proof.get("config") or "the option"
    return f"the tree has no {option} there yet: both configs are one kernel, booted once"


def points(part, steps, config, kind, metric):
    """[(step, per-boot arrays)] of one line, in step order; steps without figures left out."""
    out = []
    for step in steps:
        label = step.get("kernels", {}).get(config)
        if not label:
            continue
        recs = part[(part["kernel"] == label) & (part[feature.STATE] == kind)]
        boots = stats.boot_values(recs, metric) if len(recs) else []
        if boots:
            out.append((step, boots))
    return out


def line_rows(part, steps, config, kind, metric, unit, practical):
    """One row per point of a line: the step against the point before it, and against stock."""
    stock = points(part, steps[:1], config, feature.OFF, metric)
    stock_median = np.median(np.concatenate(stock[0][1])) if stock else np.nan
    plain = {s["index"]: boots for s, boots in points(part, steps, config, feature.OFF, metric)}
    rows, before = [], None
    for step, boots in points(part, steps, config, kind, metric):
        median = float(np.median(np.concatenate(boots)))
        row = {"config": config, "kind": kind, "index": step["index"], "title": step["title"],
               "kernel": step["kernels"][config], "median": median, "unit": unit,
               "boots": len(boots), "vs_stock": median / stock_median if stock_median else np.nan,
               "practical": practical, "p_value": np.nan, "previous": None}
        if before is None and kind == feature.ACTIVE:
            earlier = [i for i in plain if i < step["index"]]
            before = (max(earlier), plain[max(earlier)]) if earlier else None
            row["first"] = True
        if before is not None:
            result = stats.compare_samples(before[1], boots, unit, practical=practical)
            row.update({k: result[k] for k in ("ratio", "ci_low", "ci_high", "p_value", "cv_max",
                                               "unit_of_replication", "verdict")})
            row["previous"] = before[0]
        else:
            row["verdict"] = verdict.Verdict(verdict.BASELINE if step["index"] == steps[0]["index"]
                                             else verdict.FIRST_POINT, boots=len(boots))
        rows.append(row)
        before = (step["index"], boots)
    return rows


def table(df, attribution, metric=None, practical=None, method="bh"):
    """{params: DataFrame of every line's rows} for the run's workload, steps adjusted as a family."""
    workload = attribution["workload"]
    units = stats.metrics(df, workload)
    metric = metric or attribution.get("metric") or next(iter(units), None)
    if metric not in units:
        return {}
    steps = attribution["steps"]
    out = {}
    for params, part in stats.groups(df[df["workload"] == workload], workload):
        rows = []
        for config in attribution["configs"]:
            for kind in (feature.OFF, feature.ACTIVE):
                thr = stats.practical_of(workload, metric, practical)
                rows += line_rows(part, steps, config, kind, metric, units[metric], thr)
        frame = pd.DataFrame(rows)
        if frame.empty:
            continue
        frame = stats.adjust_comparable(frame, method)
        frame["metric"] = metric
        out[tuple(sorted(params.items()))] = frame
    return out


def spans(indices):
    """[2, 3, 4, 7] -> "2-4, 7"."""
    out, run = [], []
    for i in sorted(indices):
        if run and i != run[-1] + 1:
            out.append(run)
            run = []
        run.append(i)
    out += [run] if run else []
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in out)


def not_active(df, attribution, profile=None):
    """A line saying at which steps the feature was asked for but not proven on (or None)."""
    title = (profile or feature.default()).title or "the feature"
    sub = df[(df["workload"] == attribution["workload"]) & df[feature.STATE].isin([feature.INACTIVE, feature.UNPROVEN])]
    labels = set(sub["kernel"])
    where = [s["index"] for s in attribution["steps"] if labels & set(s.get("kernels", {}).values())]
    if not where:
        return None
    kinds = "/".join(sorted(set(sub[feature.STATE])))
    return (f"{title} asked for ({feature.PARAM}=1) but {kinds} by the kernel's counters at steps "
            f"{spans(where)}: those forks are no point of the {title} line")


def show_value(value, unit):
    if unit == "ns" and value >= 1e5:
        return f"{value / 1e6:.3f} ms"
    return f"{value:.4g} {unit}"


def percent(ratio):
    return "" if ratio is None or np.isnan(ratio) else f"{(ratio - 1) * 100:+.1f}%"


def render(frame, times=None, same=(), profile=None):
    """The per-patch table of one group as text: one block per line (config and kind of fork);
    times: {kernel label: text}, same: the labels that stand for both configs."""
    title_of = (profile or feature.default()).title or "the feature"
    times = times or {}
    blocks = []
    for (config, kind), rows in frame.groupby(["config", "kind"], sort=False):
        head = f"{config_name(config, profile)}, {kind_name(kind, profile)}: {rows['metric'].iloc[0]}"
        lines = [("#", "patch", "median", "vs prev", "95% interval", "vs stock", "step", "time")]
        for r in rows.to_dict("records"):
            title = r["title"] if len(r["title"]) <= 46 else r["title"][:43] + "..."
            if r.get("first") is True:
                title += f" [{title_of} from here; vs prev: plain fork]"
            if r["kernel"] in same:
                title += " (y = n)"
            interval = "" if np.isnan(r.get("ci_low", np.nan)) else \
                f"[{percent(r['ci_low'])}, {percent(r['ci_high'])}]"
            lines.append((str(r["index"]), title, show_value(r["median"], r["unit"]),
                          percent(r.get("ratio", np.nan)), interval, percent(r["vs_stock"]),
                          verdict.prose(r["verdict"]), times.get(r["kernel"], "")))
        widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
        text = ["  ".join(f"{c:<{w}}" for c, w in zip(row, widths)).rstrip() for row in lines]
        if any(k in same for k in rows["kernel"]):
            text.append(f"(y = n): {same_text(profile)}")
        blocks.append(head + "\n" + "\n".join(text))
    return "\n\n".join(blocks)


def called(frame):
    """[(config, kind, index, title, change)] of the steps called slower or faster."""
    hits = frame[[verdict.called(v) for v in frame["verdict"]]]
    return [(r["config"], r["kind"], int(r["index"]), r["title"], r["ratio"] - 1)
            for r in hits.to_dict("records")]


def summary(frame, profile=None):
    """One line per config and kind: where the metric moves, with each step's size."""
    out = []
    for (config, kind), rows in frame.groupby(["config", "kind"], sort=False):
        hits = called(rows)
        what = ", ".join(f"patch {i} {c * 100:+.1f}%" for _, _, i, _, c in hits) or "no step called"
        last = rows.iloc[-1]
        out.append(f"{config_name(config, profile)}, {kind_name(kind, profile)}: {what}; "
                   f"last step {percent(last['vs_stock'])} against stock")
    return out


def plot(groups, path, profile=None):
    """A step plot of the metric across the steps, one line per config and kind of fork."""
    if not groups:
        return None
    fig, axes = plots.plt.subplots(len(groups), 1, figsize=(9, 3.8 * len(groups)), squeeze=False)
    for ax, (params, frame) in zip(axes[:, 0], groups.items()):
        div, unit = (1e6, "ms") if frame["unit"].iloc[0] == "ns" else (1.0, frame["unit"].iloc[0])
        for i, ((config, kind), rows) in enumerate(frame.groupby(["config", "kind"], sort=False)):
            ax.step(rows["index"], rows["median"] / div, where="post", marker="os^D"[i % 4],
                    linestyle=plots.STYLES[i % len(plots.STYLES)],
                    label=f"{config_name(config, profile)}, {kind_name(kind, profile)}")
        steps = sorted(frame["index"].unique())
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.set_xlabel("patches applied (0 = stock)")
        ax.set_ylabel(f"{frame['metric'].iloc[0]} ({unit}, median)")
        ax.set_title(", ".join(f"{k}={v}" for k, v in params) or frame["metric"].iloc[0])
        ax.set_ylim(bottom=0)              # a step's size in proportion, not noise blown up
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    return plots.save(fig, path)


def moves(df, attribution, config, a, b, practical=None):
    """True when the plain fork of `config` moves between steps a and b: one question of a binary
    search, asked of the pair alone (no family to adjust over)."""
    pair = [s for s in attribution["steps"] if s["index"] in (a, b)]
    for frame in table(df, {**attribution, "steps": pair}, practical=practical, method="none").values():
        rows = frame[(frame["config"] == config) & (frame["kind"] == feature.OFF) & (frame["index"] == b)]
        if len(rows) and verdict.called(rows.iloc[0]["verdict"]):
            return True
    return False


def halve(lo, hi, moves):
    """One step of a binary search for the first step where a metric moves: (lo, hi) with the
    metric unmoved at lo and moved at hi, and moves(lo, mid) -> bool; returns the new (lo, hi)."""
    mid = (lo + hi) // 2
    return (lo, mid) if moves(lo, mid) else (mid, hi)
