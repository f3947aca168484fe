"""A/A calibration and a power check of the harness's verdicts, on this machine, with a design.

`harness calibrate` boots ONE kernel under two labels, A and B (one build, the same image and the
same design as a real comparison: several boots each, interleaved), runs the timed workloads and
compares B with A exactly as a report would. Every verdict that calls them different is a false
alarm: their share is the measured false-alarm rate of the design. Then a known effect is added to
B's measurements (every time of B multiplied by 1 + effect: a slowdown whose size is known in
advance, riding on the run's real noise) and the comparison is made again on the first 2, 3, ...
boots of each label: it says after how many boots the effect is seen.

`harness calibrate --simulate` needs no kernel: it draws two-level data (boots, then repetitions)
with a known between-boot variance and reports how often each 95% interval covers the true ratio:
the boot-level interval the harness uses, the two-level bootstrap, and the per-repetition
bootstrap that treats every fork as independent.
"""
import json
from dataclasses import replace

import numpy as np
import pandas as pd

from harness.analysis import inference, layoutcal, stats, verdict
from harness import ui
from harness.errors import UserError
from harness.experiment import DESIGN_BOOTS, Experiment, KernelSpec, WorkloadSpec

# the default groups: fork latency at three sizes, fault latency after fork in child and parent
WORKLOADS = [WorkloadSpec("fork-latency", {"sizes_mib": "16,128,512", "reps": 15, "warmup": 2}),
             WorkloadSpec("fault-latency", {"mib": 128, "pattern": "seq", "side": "child"}),
             WorkloadSpec("fault-latency", {"mib": 128, "pattern": "seq", "side": "parent"})]
DIFFERENT = ("slower", "faster")


def experiment(source, fragments, workloads=None, **design):
    """One kernel under the labels A and B."""
    kernels = [KernelSpec(label, source, list(fragments)) for label in ("A", "B")]
    exp = Experiment(kernels=kernels, workloads=list(workloads or WORKLOADS), name="calibrate")
    exp = replace(exp, **{k: v for k, v in design.items() if v is not None})
    return exp if exp.boots else replace(exp, boots=DESIGN_BOOTS)


def judged(df, max_boot=None, effect=0.0, metas=(), layouts=True):
    """The comparisons of B's plain fork against A's, as a report makes them (one BH family over
    the judged metrics); B's times scaled by 1 + effect; only boots up to max_boot. layouts=False:
    as the design before layout variants judged them (a comparison of two binaries from one
    variant each was called like any other)."""
    if max_boot is not None:
        df = df[df["boot"].fillna(1) <= max_boot]
    rows = []
    for workload, names in judged_metrics(df).items():
        sub = df[df["workload"] == workload].copy()
        if sub.empty:
            continue
        if effect:
            for m in names:
                if m in sub:
                    sub[m] = sub[m].astype(float)
                    sub.loc[sub["kernel"] == "B", m] = sub.loc[sub["kernel"] == "B", m] * (1 + effect)
        comp = stats.compare(sub, workload, base=f"A: {stats.PLAIN}", candidates=[f"B: {stats.PLAIN}"],
                             method="none", resamples=500, metas=metas, layouts=layouts)
        comp = comp[comp["metric"].isin(names)] if not comp.empty else comp
        rows.append(comp.assign(workload=workload))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return stats.adjust_comparable(table, "bh") if not table.empty else table


def judged_metrics(df):
    """{workload: the metrics judged}: each workload's headline metrics (what a verdict is about;
    spread and extremes left out), for the workloads the run measured."""
    return {w: stats.headline(w) for w in dict.fromkeys(df["workload"])} if len(df) else {}


def per_repetition(df):
    """The same comparisons with every repetition taken as independent (boots pooled): the
    analysis this harness made before boots were its units."""
    flat = df.assign(boot=1, run_id="pooled")
    return judged(flat)


def called(table):
    return sum(v.direction in DIFFERENT for v in table["verdict"]) if len(table) else 0


def analyse(run_dir, effect=0.05):
    """{aa: ..., power: [...]} for a finished calibration run."""
    metas, df = stats.load_runs([run_dir])
    df = stats.measured(df)
    if "boot" not in df:
        df = df.assign(boot=1)
    boots = int(df["boot"].max()) if len(df) else 0
    aa = judged(df, metas=metas)
    old = per_repetition(df)
    result = {"run": metas[0].run_id, "timing": metas[0].timing,
              "accel": metas[0].accel, "boots": boots, "effect": effect,
              "design": metas[0].design.get("stopped"),
              "aa": {"verdicts": len(aa), "different": called(aa),
                     "rows": aa[["workload", "metric", "ratio", "ci_low", "ci_high", "q_value", "verdict"]
                                + [c for c in ("size_mib", "side") if c in aa]]
                     .assign(verdict=lambda t: t["verdict"].map(verdict.prose)).to_dict("records")},
              "aa_per_repetition": {"verdicts": len(old), "different": called(old)},
              "power": []}
    for k in range(1, boots + 1):
        table = judged(df, max_boot=k, effect=effect, metas=metas)
        if len(table):           # a group with one value per boot has no verdict from one boot
            table = table[[v.direction != verdict.NOT_ENOUGH for v in table["verdict"]]]
        seen = sum(v.direction == "slower" for v in table["verdict"]) if len(table) else 0
        result["power"].append({"boots": k, "verdicts": len(table), "detected": seen})
    result["detected_after_boots"] = steady(result["power"])
    result["needed"] = needed(df, effect)
    if "variant" in df and df["variant"].notna().any():
        result.update(layoutcal.analyse(df, metas, effect, judged, called))
        for p in result["power"]:
            p["variants"] = layoutcal.variants_by(df, p["boots"])
    return result


def needed(df, effect, power=0.8):
    """Per judged group: the spread of log per-boot medians (A and B pooled), that of the rounds'
    log ratios B/A, and the boots per label the test the report uses (paired over rounds where
    the boots pair, else over boots) needs to see `effect` with that power at that spread."""
    rows = []
    for workload, names in judged_metrics(df).items():
        for params, part in stats.groups(df, workload):
            for metric in names:
                recs = [part[part["condition"] == f"{lab}: {stats.PLAIN}"] for lab in ("A", "B")]
                sides = [stats.boot_values(r, metric) for r in recs]
                logs = [np.log(inference.boot_medians(b)) for b in sides if len(b) >= 2]
                if len(logs) < 2 or not all(np.isfinite(x).all() for x in logs):
                    continue
                row = {"workload": workload, "metric": metric, **params,
                       "boot_sd": float(np.sqrt(np.mean([np.var(x, ddof=1) for x in logs])))}
                d = inference.log_ratios(stats.paired(*(stats.boot_values(r, metric, rounds=True)
                                                        for r in recs)))
                if d is not None and len(d) >= 2:
                    row["round_sd"] = float(np.std(d, ddof=1))
                    row["boots"] = inference.boots_for(row["round_sd"], effect, power, paired=True)
                else:
                    row["boots"] = inference.boots_for(row["boot_sd"], effect, power)
                rows.append(row)
    return rows


def steady(power):
    """The fewest boots from which the effect is seen in every verdict, with every more boot too."""
    first = None
    for p in power:
        if p["verdicts"] and p["detected"] == p["verdicts"]:
            first = first or p["boots"]
        else:
            first = None
    return first


def render(result):
    aa, old = result["aa"], result["aa_per_repetition"]
    lines = [f"calibration run {result['run']} ({result['accel']}, timing {result['timing']}, "
             f"{result['boots']} boots per label)"]
    if result.get("design"):
        lines.append(f"design: stopped {result['design']}")
    lines.append(f"A/A: {aa['different']} of {aa['verdicts']} verdicts call A and B different "
                 f"({share(aa['different'], aa['verdicts'])}); per-repetition analysis (boots pooled): "
                 f"{old['different']} of {old['verdicts']} ({share(old['different'], old['verdicts'])})")
    for p in result["power"]:
        lines.append(f"  injected +{result['effect']:.1%} with {p['boots']} boot(s) per label"
                     + (f" ({p['variants']} layout variant(s))" if p.get("variants") else "") + ": "
                     f"detected in {p['detected']} of the {p['verdicts']} verdicts that many boots give")
    first = result["detected_after_boots"]
    lines.append(f"injected +{result['effect']:.1%}: " + (
        f"detected in every verdict from {first} boot(s) per label on" if first else
        f"not detected in every verdict within {result['boots']} boots per label"))
    lines += render_needed(result.get("needed") or [], result["effect"])
    lines += layoutcal.render(result)
    return "\n".join(lines)


def render_needed(rows, effect):
    """What the run's own spread between boots implies: boots per label for 80% power."""
    if not rows:
        return []
    lines = [f"boots per label the boot-level test needs to see +{effect:.1%} with 80% power, at "
             "this run's spread between boots:"]
    for r in rows:
        where = ", ".join(f"{k} {v}" for k, v in r.items()
                          if k not in ("workload", "metric", "boot_sd", "round_sd", "boots"))
        n = r["boots"] if r["boots"] is not None else "more than 500"
        rounds = f", of the rounds' log ratios {r['round_sd']:.1%}" if "round_sd" in r else ""
        lines.append(f"  {r['workload']} {r['metric']} ({where}): sd of log boot medians "
                     f"{r['boot_sd']:.1%}{rounds} -> {n}")
    return lines


def share(a, b):
    return f"{a / b:.1%}" if b else "–"


# -- simulation --------------------------------------------------------------------------------

def simulate(sims=1000, boots=5, reps=20, boot_sd=0.02, rep_sd=0.02, ratio=1.0, resamples=400,
             seed=1, methods=("rounds", "boot", "hierarchical", "repetition"), drift_sd=0.0):
    """Coverage of each 95% interval of the ratio on two-level lognormal data with a known
    between-boot standard deviation (log scale), and a drift of the host shared by the two boots
    of a round (drift_sd): {method: share of sims whose interval holds the true ratio}, and the
    mean width of each interval."""
    rng = np.random.default_rng(seed)
    hits = {m: 0 for m in methods}
    widths = {m: [] for m in methods}
    for i in range(sims):
        sides = []
        drift = rng.normal(0, drift_sd, boots) if drift_sd else np.zeros(boots)
        for mu in (0.0, np.log(ratio)):
            offsets = rng.normal(mu, boot_sd, boots) + drift
            sides.append([np.exp(o + rng.normal(0, rep_sd, reps)) for o in offsets])
        base, cand = sides
        for m in methods:
            if m == "rounds":
                _, lo, hi, _ = inference.paired_interval(list(zip(base, cand)))
            elif m == "boot":
                _, lo, hi, _ = inference.boot_interval(base, cand)
            elif m == "hierarchical":
                lo, hi = inference.hierarchical_bootstrap(base, cand, resamples, seed=i)
            else:
                lo, hi = inference.sample_bootstrap(base, cand, resamples, seed=i)
            hits[m] += lo <= ratio <= hi
            widths[m].append(hi - lo)
    return {m: {"coverage": hits[m] / sims, "width": float(np.mean(widths[m]))} for m in methods}


SIM_NAMES = {"rounds": "paired t over rounds (the harness's interval where boots pair)",
             "boot": "boot-level t (boots as units, where boots do not pair)",
             "hierarchical": "two-level bootstrap (boots, then repetitions)",
             "repetition": "per-repetition bootstrap (every fork independent; the old interval)"}


def render_simulation(result, sims, boots, reps, boot_sd, rep_sd, drift_sd=0.0):
    lines = [f"coverage of 95% intervals of a ratio of medians, {sims} simulations: {boots} boots "
             f"x {reps} repetitions per kernel, between-boot sd {boot_sd:.1%}, within-boot sd "
             f"{rep_sd:.1%}, drift shared by a round's boots sd {drift_sd:.1%} (log scale)"]
    for m, r in result.items():
        lines.append(f"  {SIM_NAMES[m]:<72} coverage {r['coverage']:.1%}  mean width {r['width']:.4f}")
    return "\n".join(lines)


def main(args, run_experiment):
    """The calibrate command: --simulate, --analyse RUN, or a calibration run."""
    if args.simulate:
        checks = {"--sims": (args.sims, 1), "--reps": (args.reps, 1), "--boots": (args.boots or 2, 2),
                  "--boot-sd": (args.boot_sd, 0), "--rep-sd": (args.rep_sd, 0), "--drift-sd": (args.drift_sd, 0)}
        for flag, (value, low) in checks.items():
            if value < low:
                raise UserError(f"{flag} must be at least {low} for --simulate, got {value}")
        result = simulate(args.sims, args.boots or DESIGN_BOOTS, args.reps, args.boot_sd, args.rep_sd,
                          drift_sd=args.drift_sd)
        ui.out(render_simulation(result, args.sims, args.boots or DESIGN_BOOTS, args.reps,
                                 args.boot_sd, args.rep_sd, args.drift_sd))
        return 0
    run_dir, code = (stats.run_path(args.analyse), 0) if args.analyse else run_experiment()
    result = analyse(run_dir, args.effect)
    from harness import stored     # JSON has no NaN: a figure not computed is written as null
    (run_dir / "calibration.json").write_text(
        json.dumps(stored.finite(result), indent=2, default=float, allow_nan=False) + "\n")
    ui.out(render(result))
    ui.console.print(f"calibration: {run_dir / 'calibration.json'}")
    return code
