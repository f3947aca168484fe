"""report.md and report.html for one or more runs: the run, per workload a summary, comparisons
against the stock kernel's plain fork and plots, and the cover letter's claims checked.

The report is a list of blocks (heading, text, list, table, plot) rendered twice (analysis.render):
Markdown with plots linked, HTML with plots embedded.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from harness import feature, results
from harness.analysis import drawer, inference, render, stats, units, variants, verdict

TOLERANCE = 0.10


# -- formatting --------------------------------------------------------------------------------

def num(v):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    v = float(v)
    if v == 0 or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


# Set by write(): under icount a "time" is a count of instructions (1 ns each), and says so.
TIME_NOTE = {"suffix": ""}
ICOUNT_TEXT = ("timing mode icount: QEMU ran one vCPU whose clock advances with the instructions it "
               "executes (1 ns per instruction). Every time in this report is instructions executed, "
               "shown as virtual time and marked (icount): deterministic and good for telling two "
               "kernels' code paths apart, but not memory latency, cache behaviour or hardware time.")


def display_unit(unit, values):
    """(divisor, unit) to show time metrics in a readable unit; others as they are."""
    if unit in units.TIME_UNITS and len(values):
        top = np.nanmedian(np.abs(values)) * units.TIME_UNITS[unit]
        for name in ("s", "ms", "us", "ns"):
            if top >= units.TIME_UNITS[name] or name == "ns":
                return (units.TIME_UNITS[name] / units.TIME_UNITS[unit],
                        name.replace("us", "µs") + TIME_NOTE["suffix"])
    return 1.0, unit


params_text = results.params_text


def units_by_metric(table, column):
    """{metric: (divisor, unit)}: one display unit per metric, fitting its typical median."""
    return {m: display_unit(part["unit"].iloc[0], part[column].dropna().to_numpy(float))
            for m, part in table.groupby("metric")}


def share_text(value):
    return "–" if pd.isna(value) else f"{value:.0%}"


def describe_table(desc, cols):
    rows = []
    units = units_by_metric(desc, "median")
    for _, r in desc.iterrows():
        div, unit = units[r["metric"]]
        rows.append({"params": params_text(r, cols), "condition": r["condition"],
                     "metric": r["metric"], "unit": unit, "n": int(r["n"]),
                     "boots": int(r.get("boots", 1)),
                     **{k: num(r[k] / div) for k in ("median", "iqr", "mean", "std", "min", "max")},
                     "CV": "–" if pd.isna(r["cv"]) or r["n"] < 2 else f"{r['cv']:.1%}",
                     "between boots": share_text(r.get("boot_share")),
                     "layout": share_text(r.get("layout_share"))})
    return pd.DataFrame(rows)


def compare_table(comp, cols):
    rows = []
    units = units_by_metric(comp, "median_base")
    for _, r in comp.iterrows():
        div, unit = units[r["metric"]]
        ratio = "–" if pd.isna(r["ratio"]) else f"{r['ratio']:.3f}"
        if not pd.isna(r["ci_low"]):
            ratio += f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        rows.append({"params": params_text(r, cols), "candidate": r["candidate"],
                     "metric": r["metric"], "n": f"{r['n_base']}/{r['n_cand']}",
                     "boots": f"{r.get('boots_base', 1)}/{r.get('boots_cand', 1)}"
                              + (f" ({r['rounds']:.0f} rounds)" if r.get("rounds", 0) > 0 else ""),
                     "baseline median": f"{num(r['median_base'] / div)} {unit}",
                     "candidate median": f"{num(r['median_cand'] / div)} {unit}",
                     "ratio [95% CI]": ratio,
                     "q": "–" if pd.isna(r.get("q_value", np.nan)) else f"{r['q_value']:.2g}",
                     "Cliff's δ": "–" if pd.isna(r["effect"]) else f"{r['effect']:+.2f}",
                     "between boots": share_text(r.get("boot_share")),
                     "layout": share_text(r.get("layout_share")),
                     "verdict": verdict.prose(r["verdict"])})
    return pd.DataFrame(rows)


def method_text(family, method, practical):
    return (f"ratio: candidate / baseline, the geometric mean of the rounds' ratios of boot "
            f"medians where the boots pair in rounds (boots: \"(N rounds)\"), else the ratio of "
            f"the geometric means of per-boot medians; its 95% "
            f"interval and p value come from {inference.TEST_TEXT}, boots being "
            f"the units of replication (with one boot per kernel: a bootstrap and Mann-Whitney U "
            f"over repetitions instead, marked [1 boot], since the boot-to-boot variation is then "
            f"not measured). q: p adjusted by {inference.METHOD_TEXT[method]} over the {family} "
            f"comparisons of this report. A verdict (faster, slower, ...) needs q < 0.05 and a "
            f"change of at least the practical threshold ({practical:.0%} unless the workload's "
            f"manifest sets one); \"none > x%\": the largest change the interval still allows. "
            f"between boots: the share of the (log) variance that lies between boots rather than "
            f"within one. {variants.METHOD_TEXT} Cliff's δ > 0: candidate larger.")


# -- claims ------------------------------------------------------------------------------------

def profile_of(metas):
    """The feature profile of the runs reported (the first run's)."""
    return metas[0].profile if metas else feature.default()


def names_of(metas):
    """(off, on) condition names of claims in the runs' profile ("fork" and the feature's)."""
    conditions = profile_of(metas).conditions
    return conditions.get("off", feature.OFF_LABEL), conditions.get("on")


def claim_condition(claim, df, metas):
    off, _ = names_of(metas)
    if claim.get("condition", off) == off:
        return stats.baseline(metas, df)
    active = profile_of(metas).label(feature.ACTIVE)
    found = [c for c in dict.fromkeys(df["condition"]) if c.endswith(": " + active)]
    order = stats.kernel_order(metas, df)
    found.sort(key=lambda c: order.index(c.split(": ")[0]) if c.split(": ")[0] in order else 99)
    return found[0] if found else None


def plain_fork_of(on_condition, df, metas):
    """The plain-fork condition of the kernel a feature's condition belongs to: what a claimed
    feature / fork ratio compares (the same kernel, both kinds of fork); else the baseline."""
    if on_condition:
        same = f"{on_condition.split(': ')[0]}: {stats.PLAIN}"
        if same in set(df["condition"]):
            return same
    return stats.baseline(metas, df)


def claim_median(claim, df, metas, condition=None):
    cond = condition or claim_condition(claim, df, metas)
    sub = stats.measured(df[(df["workload"] == claim["workload"]) & (df["condition"] == cond)])
    for key, value in (claim.get("params") or {}).items():
        if key in sub and key not in stats.NOT_PARAMS:
            sub = sub[sub[key] == value]
    if claim["metric"] not in sub:
        return None
    x = sub[claim["metric"]].dropna()
    return float(x.median()) if len(x) else None


def judge(claimed, measured, tolerance):
    if measured is None:
        return "not measured here"
    close = abs(measured - claimed) <= tolerance * abs(claimed)
    return "reproduced" if close else "not reproduced"


def check_claims(claims, df, metas):
    """One row per claim (and per off/on pair of time claims that TCG makes a ratio)."""
    kvm = all(m.accel == "kvm" for m in metas)
    off, on = names_of(metas)
    rows, pairs = [], {}
    for claim in claims or []:
        tol = claim.get("tolerance", TOLERANCE)
        unit = stats.unit_of(claim["workload"], claim["metric"])
        row = {"workload": claim["workload"], "metric": claim["metric"],
               "params": ", ".join(f"{k}={v}" for k, v in (claim.get("params") or {}).items()),
               "condition": claim.get("condition", off), "kind": claim.get("kind", "absolute"),
               "claimed": f"{claim['value']} {claim.get('unit', '')}".strip(),
               "note": claim.get("note", "")}
        if row["kind"] == "ratio":
            on_condition = claim_condition({**claim, "condition": on}, df, metas)
            top = claim_median(claim, df, metas, on_condition)
            base = claim_median(claim, df, metas, plain_fork_of(on_condition, df, metas))
            got = top / base if top is not None and base else None
            rows.append({**row, "condition": f"{on} / {off}",
                         "measured": num(got) if got is None else f"{got:.3f}",
                         "status": judge(claim["value"], got, tol)})
            continue
        got = claim_median(claim, df, metas)
        got = None if got is None else units.convert(got, unit, claim.get("unit", unit))
        shown = "–" if got is None else f"{num(got)} {claim.get('unit', unit)}"
        if units.is_time(claim.get("unit", unit)) and not kvm:
            key = (claim["workload"], claim["metric"], row["params"])
            pairs.setdefault(key, {})[row["condition"]] = claim
            rows.append({**row, "measured": shown, "status": "not comparable here",
                         "note": "; ".join(filter(None, ["absolute time measured without KVM", row["note"]]))})
        else:
            rows.append({**row, "measured": shown, "status": judge(claim["value"], got, tol)})
    for (workload, metric, params), pair in pairs.items():
        if off not in pair or on not in pair:
            continue
        fork, with_on = pair[off], pair[on]
        claimed = (with_on["value"] * units.TIME_UNITS[with_on.get("unit", "ns")]
                   / (fork["value"] * units.TIME_UNITS[fork.get("unit", "ns")]))
        on_condition = claim_condition(with_on, df, metas)
        a = claim_median(with_on, df, metas, on_condition)
        b = claim_median(fork, df, metas, plain_fork_of(on_condition, df, metas))
        got = a / b if a is not None and b else None
        rows.append({"workload": workload, "metric": metric, "params": params,
                     "condition": f"{on} / {off}", "kind": "ratio (instead of absolute times)",
                     "claimed": f"{claimed:.3f}", "measured": "–" if got is None else f"{got:.3f}",
                     "status": judge(claimed, got, with_on.get("tolerance", TOLERANCE)),
                     "note": "; ".join(dict.fromkeys(filter(None, [fork.get("note"), with_on.get("note")])))})
    columns = ["workload", "metric", "params", "condition", "kind", "claimed", "measured", "status",
               "note"]
    return pd.DataFrame(rows, columns=columns).fillna("")


# -- blocks ------------------------------------------------------------------------------------

def host_cpu(run):
    return f"{run.host.get('cpu', '?')} × {run.host.get('cpus', '?')}"


def design_text(run):
    d = run.design
    if not d:
        return "one boot per kernel (a run made before boots were recorded)"
    text = f"{d.get('boots', 1)} boot(s) per kernel"
    if d.get("boots", 1) > 1:
        text += f", {d.get('order')}" + (f" (seed {d['seed']})" if d.get("order") == "random" else "")
    if d.get("variants", 1) > 1:
        text += f", {d['variants']} layout variants per kernel taking turns"
    if d.get("until"):
        text += (f", then rounds until every headline interval was within ±{d['until']:.1%} "
                 f"(at most {d.get('max_boots')}): stopped {d.get('stopped') or 'before the rule was judged'}")
    return text


def header(metas):
    def facts(get):
        return " | ".join(dict.fromkeys(str(get(m)) for m in metas))
    accels = {m.accel or "unknown" for m in metas}
    reasons = {m.accel_reason for m in metas if m.accel_reason}
    items = [f"accelerator: {facts(lambda m: m.accel or 'unknown')}"
             + (f" ({'; '.join(sorted(reasons))})" if reasons else ""),
             f"timing mode: {facts(lambda m: m.timing)}",
             f"QEMU: {facts(lambda m: m.qemu or '?')}",
             f"host CPU: {facts(host_cpu)}",
             f"design: {facts(design_text)}"]
    runs = pd.DataFrame([{"run": m.run_id, "started": m.started or "?",
                          "finished": m.finished or "not finished",
                          "harness": m.harness_sha or "?",
                          "experiment": (m.experiment or {}).get("name", "(from flags)")}
                         for m in metas])
    blocks = [("h1", "Report: " + ", ".join(runs["run"])), ("ul", items)]
    if any(m.timing == "icount" for m in metas):
        blocks.append(("warn", ICOUNT_TEXT))
    elif accels != {"kvm"}:
        blocks.append(("warn", f"accelerator is {'/'.join(sorted(a.upper() for a in accels))}, not "
                               "KVM: the guest is emulated, so times are slow and distorted. Compare "
                               "times only within this report (ratios), never with hardware or KVM "
                               "figures. Memory figures are unaffected."))
    blocks += [("table", runs), ("p", "reproduce:"),
               ("pre", "\n".join(m.command or "?" for m in metas))]
    return blocks


def kernels(metas):
    rows, failures = [], []
    option = profile_of(metas).proof.get("config") or "feature option"
    for m in metas:
        for label, kernel in m.kernels.items():
            k = kernel.facts
            src = k.get("source") or {}
            patches = k.get("patches") or (k.get("series") or {}).get("patches") or []
            rows.append({"run": m.run_id, "kernel": label, "release": k.get("release", "–"),
                         "source": src.get("spec") or src.get("id") or "–",
                         "patches": len(patches), option: k.get(feature.CONFIG) or "–",
                         "status": kernel.status or "–", "boot s": k.get("boot_seconds", "–"),
                         "clocksource": k.get("guest_clocksource", "–")})
            if k.get("error"):
                failures.append(f"{label}: {k['error']}")
            failures += [f"{label} {t.get('task')}: {t.get('error')}" for t in kernel.tasks
                         if t.get("status") in ("failed", "crashed")]
    stock = {m.run_id: stats.stock_kernel([m], pd.DataFrame({"kernel": []})) for m in metas}
    runs = list(stock)
    rows.sort(key=lambda r: (runs.index(r["run"]), r["kernel"] != stock[r["run"]]))
    if len(metas) == 1:
        for r in rows:
            r.pop("run")
    blocks = [("h2", "Kernels"), ("table", pd.DataFrame(rows))]
    if failures:
        blocks += [("p", "failures:"), ("ul", failures)]
    return blocks


def comparisons(df, metas, resamples, noisy_cv, practical=None, method="bh"):
    """{workload: comparison table}, every row of every workload adjusted as one family."""
    comps = {w: stats.compare(df, w, resamples=resamples, noisy_cv=noisy_cv, metas=metas,
                              practical=practical, method="none")
             for w in (dict.fromkeys(df["workload"]) if len(df) else [])}
    every = [c.assign(workload=w) for w, c in comps.items() if not c.empty]
    if not every:
        return comps, 0
    whole = stats.adjust_comparable(pd.concat(every, ignore_index=True), method, noisy_cv)
    family = int(whole["p_value"].notna().sum())
    return {w: whole[whole["workload"] == w].drop(columns="workload").reset_index(drop=True)
            for w in comps}, family


def workload_blocks(df, metas, workload, comp, method_note):
    blocks = [("h2", f"Workload: {workload}")]
    cols = stats.param_columns(stats.measured(df[df["workload"] == workload]), workload)
    desc = described(df, workload)
    if desc.empty:
        return blocks + [("p", "no measured records.")]
    blocks += [("h3", "Summary"), ("table", describe_table(desc, cols))]
    blocks.append(("h3", f"Comparisons against {stats.baseline(metas, df)}"))
    if comp is None or comp.empty:
        blocks.append(("p", "nothing to compare: the baseline or a second condition is missing."))
    else:
        blocks.append(("table", compare_table(comp, cols)))
        blocks.append(("p", method_note))
    return blocks + [("plot", workload)]        # its image, if one was drawn: render.with_plots


def conditions_blocks(df, metas):
    conds = list(dict.fromkeys(df["condition"])) if len(df) else []
    return [("h2", "Conditions"),
            ("p", f"A condition is a kernel and the kind of fork each record proves (its feature "
                  f"state, judged from the kernel's counters by the profile "
                  f"'{profile_of(metas).name}'). Records where {profile_of(metas).title or 'the feature'} was "
                  f"requested but is inactive or unproven are their own conditions and never count "
                  f"as its results. Baseline: {stats.baseline(metas, df)}. Warm-up records "
                  f"({int(df['warmup'].sum()) if len(df) else 0}) are left out of the statistics."),
            ("ul", conds or ["(no records)"])]


def folder(run_dirs, out_dir=None):
    """Where the report goes: out_dir, default the first run's folder."""
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    return Path(out_dir or stats.run_path(run_dirs[0]))


def write(run_dirs, out_dir=None, claims=None, resamples=2000, noisy_cv=0.05, practical=None,
          method="bh", plots=True):
    """Write report.md and report.html (in out_dir, default the first run's folder).

    claims: list of {workload, metric, condition, value, unit, params, tolerance, kind}; default
    the experiment's own claims (metadata experiment.claims); plots: draw them here (matplotlib
    loads only then), or a drawer.Plots already drawing them, or False. Returns (md_path, html_path)."""
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    metas, df = _load(run_dirs)
    out_dir = folder(run_dirs, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if claims is None:
        claims = [c for m in metas for c in (m.experiment or {}).get("claims", [])]
    TIME_NOTE["suffix"] = " (icount)" if any(m.timing == "icount" for m in metas) else ""
    pngs = drawer.draw(df, out_dir) if plots is True else {}
    blocks = header(metas) + kernels(metas) + conditions_blocks(df, metas)
    workloads = list(dict.fromkeys(df["workload"])) if len(df) else []
    comps, family = comparisons(df, metas, resamples, noisy_cv, practical, method)
    note = method_text(family, method, stats.PRACTICAL if practical is None else practical)
    for workload in workloads:
        blocks += workload_blocks(df, metas, workload, comps.get(workload), note)
    if not workloads:
        blocks += [("h2", "Workloads"), ("p", "no records in this run.")]
    blocks.append(("h2", "Claims"))
    if claims:
        blocks.append(("p", "Each claim beside the median measured here, reproduced when within its "
                            f"tolerance (default {TOLERANCE:.0%}). A \"{names_of(metas)[1]} / {names_of(metas)[0]}\" ratio compares the two "
                            "kinds of fork on the same patched kernel; a time "
                            "claimed on KVM hardware is compared as such a ratio when this run is "
                            "not on KVM."))
        blocks.append(("table", check_claims(claims, df, metas)))
    else:
        blocks.append(("p", "no claims given for this experiment."))
    blocks = render.with_plots(blocks, plots.wait() if isinstance(plots, drawer.Plots) else pngs)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(render.markdown(blocks, out_dir))
    html_path.write_text(render.to_html(blocks, blocks[0][1]))
    return md_path, html_path


_LOADED = {}


def _load(run_dirs):
    """stats.load_runs, once for write() and cv_summary() of the same unchanged runs."""
    files = [f for d in run_dirs for f in Path(stats.run_path(d)).glob("**/*.json*")]
    key = (tuple(map(str, run_dirs)), tuple(sorted((str(f), f.stat().st_mtime_ns) for f in files
                                                   if f.name != "kcidb.json")))
    if key not in _LOADED:
        _LOADED.clear()
        _DESCRIBED.clear()
        _LOADED[key] = stats.load_runs(run_dirs)
    metas, df = _LOADED[key]
    df = df.copy()
    _DESCRIBED.setdefault("frames", []).append(df)     # held: their ids stay theirs
    return metas, df


_DESCRIBED = {}


def described(df, workload):
    """stats.describe, once per workload of the runs _load gave (the text summary and the report
    both show it)."""
    if not any(df is frame for frame in _DESCRIBED.get("frames", [])):
        return stats.describe(df, workload)
    if ("describe", workload) not in _DESCRIBED:
        _DESCRIBED[("describe", workload)] = stats.describe(df, workload)
    return _DESCRIBED[("describe", workload)].copy()


def cv_summary(run_dirs, limit=None):
    """Plain text: the coefficient of variation of every measured metric, per group and condition."""
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    _, df = _load(run_dirs)
    lines = ["coefficient of variation per metric (n, median, CV):"]
    for workload in dict.fromkeys(df["workload"]) if len(df) else []:
        table = described(df, workload)
        if table is None or not len(table):
            continue
        keys = [c for c in table.columns if c not in ("condition", "metric", "unit", "n", "median", "iqr",
                                                      "mean", "std", "cv", "min", "max", "boots",
                                                      "boot_share", "layout_share")]
        for _, row in table.iterrows():
            if row["unit"] not in ("ns", "forks/s"):
                continue
            where = " ".join(f"{k}={row[k]}" for k in keys if str(row[k]) not in ("", "nan"))
            cv = "-" if row["n"] < 2 else f"{100 * row['cv']:.1f}%"
            lines.append(f"  {workload:<14} {where:<28} {row['condition']:<34} {row['metric']:<16} "
                         f"n={int(row['n']):<4} boots={int(row.get('boots', 1)):<3} "
                         f"median={row['median']:.4g} {row['unit']:<8} CV={cv}")
    return "\n".join(lines[:limit] if limit else lines)
