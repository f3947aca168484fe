"""Statistics over a run's raw records (pandas + scipy): summaries and stock-vs-patched comparisons.

The unit of comparison is a group: one workload with the same parameters (repetition, round
and warm-up fields aside), measured under several conditions. A condition is a kernel and a kind of
fork, the kind being each record's own feature state (harness.measure.activity, named by the run's
feature profile, harness.feature): "off" is a plain fork, "active" the feature's fork; "inactive"
and "unproven" records stay conditions of their own, shown but never taken as the feature's results.

Times are only comparable within one accelerator and timing mode: runs that differ are refused.
"""
import functools
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from harness.measure import activity, coverage
from harness.analysis import inference, units, variants, verdict
from harness import feature, paths, stored, ui
from harness.guest import fingerprint
from harness import results
from harness.results import NOT_PARAMS
from harness.analysis.samples import BOOT_UNIT, boot_values  # noqa: F401 (stats.boot_values)
from harness.errors import UserError

PLAIN = feature.OFF_LABEL       # the plain fork's kind in every profile

# record fields that are an axis of a workload even when the manifest names its parameter otherwise
AXES = ("size_mib", "mib", "heap_mib", "pattern", "side", "thp")
SUFFIX_UNITS = {"_ns": "ns", "_us": "us", "_ms": "ms", "_kb": "kB", "_mib": "MiB", "_per_s": "/s"}



# -- loading -----------------------------------------------------------------------------------

def manifest(workload):
    path = paths.WORKLOADS / workload / "manifest.toml"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    return _manifest(str(path), stamp)


@functools.lru_cache(maxsize=64)
def _manifest(path, stamp):
    """A manifest read once per version of its file (a report asks for it hundreds of times)."""
    return tomllib.loads(Path(path).read_text())


def run_path(run):
    """A run's folder from its path or its bare id (looked up in the results folder)."""
    path = Path(run)
    return path if path.exists() or not (paths.results() / path).exists() else paths.results() / path


def load_run(run_dir):
    """(the run, a stored.Run; DataFrame of every record, warm-ups included) for results/<run-id>/."""
    run_dir = run_path(run_dir)
    meta_path = run_dir / "metadata.json"
    if not meta_path.exists():
        raise UserError(f"{run_dir} is not a run: it has no metadata.json")
    run = stored.run(meta_path)          # a broken file is one clear error
    run_id = run.run_id
    rows = []
    labels = list(run.kernels)
    for path in sorted(run_dir.glob("*/*.jsonl")):
        if labels and path.parent.name not in labels:
            continue                # e.g. <label>.attempt-1 left by an interrupted attempt
        if path.stem.startswith("selftest-"):
            continue                # selftest outcomes are tables, not measurements
        declared = list(manifest(path.stem).get("metrics", {}))
        for rec in stored.records(path, declared, skip_other_types=True):
            rows.append({**rec, "kernel": path.parent.name, "workload": path.stem,
                         "run_id": run_id})
    if not rows and labels:
        ui.warn(f"{run_dir}: the run has no records (no workload finished); nothing to compare")
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["kernel", "workload", "run_id"])
    return run, add_conditions(df, run.profile)


def own_verdict(rec, profile):
    """The record's feature state (harness.measure.activity.verdict), NaN fields left out."""
    return activity.verdict({k: v for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))},
                            profile)


def verdicts(df, profile):
    """Every record's verdict; a record without evidence takes the one verdict of the evidence in
    its scope (run, kernel, task and parameters, e.g. one size of fork-latency), else "unproven"."""
    # a record labelled already (activity.label, as the pipeline writes them) is its own verdict
    state = feature.STATE
    labelled = df[state].isin(feature.STATES) if state in df else pd.Series(False, index=df.index)
    own = pd.Series(df[state].where(labelled) if state in df else None, index=df.index, dtype=object)
    rest = df[~labelled]
    if len(rest):
        own[rest.index] = [own_verdict(r, profile) for r in rest.to_dict("records")]
    own = own.where(own.notna(), None)
    if not own.isna().any():
        return own
    for workload, sub in df[own.isna()].groupby("workload"):
        whole = df[df["workload"] == workload]
        scope = [c for c in ("run_id", "kernel", "boot", "task") if c in df] + param_columns(whole, workload)
        keys = whole[scope].astype(str).agg("|".join, axis=1)
        for key in keys[sub.index].unique():
            known = set(own[keys.index[keys == key]].dropna()) - {feature.OFF}
            own[sub.index[keys[sub.index] == key]] = known.pop() if len(known) == 1 else feature.UNPROVEN
    return own


def add_conditions(df, profile=None):
    """Columns warmup (bool), feature_state (off/active/...), kind (the profile's name of the
    state: "fork", ...) and condition ("kernel: kind"). profile: the run's (default: the default
    profile, which judges records of runs stored before profiles)."""
    profile = profile or feature.default()
    df["warmup"] = df["warmup"].eq(True) if "warmup" in df else False
    df[feature.STATE] = verdicts(df, profile) if len(df) else pd.Series(dtype=object)
    df["kind"] = df[feature.STATE].map(profile.label)
    df["condition"] = df["kernel"].astype(str) + ": " + df["kind"]
    return df


def load_runs(run_dirs):
    """(list of runs (stored.Run), concatenated records); runs of different accelerator or timing refused."""
    loaded = [load_run(d) for d in run_dirs]
    modes = {m.mode for m, _ in loaded} - {(None, None)}    # (None, None): never booted
    if len(modes) > 1:
        desc = ", ".join(f"{m.run_id}: accel={m.accel} timing={m.timing}" for m, _ in loaded)
        raise UserError("these runs used different accelerators or timing modes, so their times "
                        f"cannot be compared ({desc}); report them separately")
    metas = [m for m, _ in loaded]
    for message in fingerprint.between_runs([m.data for m in metas]):
        ui.warn(message)
    df = coverage.untimed(pd.concat([df for _, df in loaded], ignore_index=True), metas)
    return metas, in_order(df, metas)



def in_order(df, metas):
    """Records sorted stably: the stock kernel first, then metadata order; plain fork first."""
    if df.empty:
        return df
    stock = stock_kernel(metas, df)
    kernels = kernel_order(metas, df)
    states = list(feature.STATES)
    rank = [(k != stock, kernels.index(k), states.index(s) if s in states else len(states))
            for k, s in zip(df["kernel"], df[feature.STATE])]
    order = sorted(range(len(df)), key=rank.__getitem__)
    return df.iloc[order].reset_index(drop=True)


# -- what to compare ---------------------------------------------------------------------------

def unit_of(workload, metric):
    metrics = manifest(workload).get("metrics", {})
    if metric in metrics:
        return metrics[metric]
    return next((u for s, u in SUFFIX_UNITS.items() if metric.endswith(s)), "")


def headline(workload):
    """The metrics a verdict is about (the manifest's `headline`; else every metric it declares):
    what the design's stopping rule watches and what `harness calibrate` judges."""
    m = manifest(workload)
    return list(m.get("headline") or m.get("metrics", {}))


def metrics(df, workload):
    """{metric: unit}: the manifest's metrics that are numeric columns here (by suffix if none)."""
    declared = manifest(workload).get("metrics")
    if declared is None:
        declared = {c: unit_of(workload, c) for c in df.columns
                    if any(c.endswith(s) for s in SUFFIX_UNITS) and c not in AXES}
    return {m: u for m, u in declared.items()
            if m in df and pd.api.types.is_numeric_dtype(df[m]) and df[m].notna().any()}


def param_columns(df, workload):
    """The fields that tell groups apart: manifest parameters and known axes present here."""
    wanted = list(AXES) + list(manifest(workload).get("params", {}))
    found = [c for c in dict.fromkeys(wanted) if c in df and c not in NOT_PARAMS]
    measured = metrics(df, workload)            # once, not once per column
    return [c for c in found if c not in measured and df[c].notna().any()]


def measured(df):
    """The records that count: warm-ups dropped."""
    return df[~df["warmup"]] if "warmup" in df else df


def groups(df, workload):
    """[(params dict, records of that group)] for one workload, warm-ups dropped."""
    sub = measured(df[df["workload"] == workload])
    cols = param_columns(sub, workload)
    if not cols:
        return [({}, sub)] if len(sub) else []
    out = []
    for key, part in sub.groupby(cols, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        out.append((dict(zip(cols, (plain(k) for k in key))), part))
    return out


plain = results.plain


def kernel_order(metas, df):
    order = []
    for m in metas:
        order += [k for k in m.kernels if k not in order]
    return order + [k for k in dict.fromkeys(df["kernel"]) if k not in order]


def stock_kernel(metas, df):
    """The unpatched kernel: one labelled 'stock', else the first without patches or series."""
    order = kernel_order(metas, df)
    if "stock" in order:
        return "stock"
    for label in order:
        k = next((m.kernels[label].facts for m in metas if label in m.kernels), {})
        if not k.get("patches") and not k.get("series"):
            return label
    return order[0] if order else None


def baseline(metas, df):
    label = stock_kernel(metas, df)
    return f"{label}: {PLAIN}" if label else None


# -- numbers -----------------------------------------------------------------------------------

def values(recs, metric):
    """A metric's samples, every boot pooled (see boot_values)."""
    boots = boot_values(recs, metric)
    return np.concatenate(boots) if boots else np.array([])


def describe(df, workload):
    """One row per group, condition and metric: n, boots, median, IQR, mean, std, CV, min, max,
    unit, and boot_share: the share of the (log) variance that lies between boots."""
    rows = []
    units = metrics(df, workload)
    for params, part in groups(df, workload):
        for cond, recs in part.groupby("condition", sort=False):
            for metric, unit in units.items():
                boots = boot_values(recs, metric)
                if not boots:
                    continue
                x = np.concatenate(boots)
                q1, med, q3 = np.percentile(x, [25, 50, 75])
                mean, std = x.mean(), (x.std(ddof=1) if len(x) > 1 else 0.0)
                rows.append({**params, "condition": cond, "metric": metric, "unit": unit,
                             "n": len(x), "boots": len(boots), "median": med, "iqr": q3 - q1,
                             "mean": mean, "std": std, "cv": std / mean if mean else np.nan,
                             "min": x.min(), "max": x.max(),
                             "boot_share": inference.variance_split(boots)["share"],
                             "layout_share": variants.split(by_variant(recs, metric))["layout_share"]})
    return by_metric(pd.DataFrame(rows), units)


def by_metric(table, units):
    """Rows of one metric together, in the manifest's order (stable within a metric)."""
    if table.empty:
        return table
    rank = table["metric"].map(list(units).index)
    return table.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)


PRACTICAL = 0.02      # a change smaller than this is not called faster/slower, however sure
ALPHA = 0.05


def practical_of(workload, metric, default=None):
    """The practical threshold of a metric: the manifest's [practical] entry, else the default."""
    table = manifest(workload).get("practical", {}) if workload else {}
    value = table.get(metric, default if default is not None else PRACTICAL)
    return float(value)


def as_boots(x):
    """Samples as a list of per-boot arrays: a flat sequence is one boot."""
    x = list(x) if not isinstance(x, np.ndarray) else [x]
    if x and not np.ndim(x[0]):
        x = [np.asarray(x, float)]
    return inference.as_boots(x)


def compare_samples(base, cand, unit, resamples=2000, seed=0, noisy_cv=0.05, alpha=ALPHA,
                    practical=PRACTICAL, pairs=None):
    """Ratio of medians with a 95% interval, p value, Cliff's delta and a verdict.

    base, cand: each a list of per-boot arrays (or one flat array: one boot). With two or more
    boots on a side the boots are the units (inference.boot_interval; with `pairs`, the rounds
    both sides have, inference.paired_interval over them); with one boot on each side
    the repetitions are (a bootstrap and Mann-Whitney over them), and the verdict says so. The
    verdict needs p (or the family-adjusted q that `decide` is given later) below alpha and a
    change of at least `practical` (a fraction); "no significant difference" says how large a
    difference the interval still allows."""
    base, cand = as_boots(base), as_boots(cand)
    b = np.concatenate(base) if base else np.array([])
    c = np.concatenate(cand) if cand else np.array([])
    row = {"n_base": len(b), "n_cand": len(c), "boots_base": len(base), "boots_cand": len(cand),
           "median_base": np.median(b) if len(b) else np.nan,
           "median_cand": np.median(c) if len(c) else np.nan,
           "ratio": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
           "q_value": np.nan, "effect": np.nan, "cv_max": np.nan,
           "boot_share": np.nan, "unit_of_replication": "", "rounds": 0, "practical": practical}
    by_boots = min(len(base), len(cand)) >= 1 and max(len(base), len(cand)) >= 2
    if not by_boots and (len(b) < 3 or len(c) < 3):
        return {**row, "verdict": verdict.Verdict(verdict.NOT_ENOUGH, **evidence(row))}
    if row["median_base"]:
        row["ratio"] = row["median_cand"] / row["median_base"]
    rounds = inference.paired_interval(pairs, alpha) if pairs else None
    boots = rounds or inference.boot_interval(base, cand, alpha)
    if boots is None and by_boots:
        return {**row, "verdict": verdict.Verdict(verdict.NO_RATIO, **evidence(row))}
    if boots:
        row["ratio"], row["ci_low"], row["ci_high"], row["p_value"] = boots
        row["unit_of_replication"] = f"boot (paired in {len(pairs)} rounds)" if rounds else "boot"
        row["rounds"] = len(pairs) if rounds else 0
    else:
        from scipy import stats as sps      # one boot per kernel only: its import is slow
        row["ci_low"], row["ci_high"] = inference.sample_bootstrap(base, cand, resamples, seed)
        row["p_value"] = (1.0 if np.ptp(np.concatenate([b, c])) == 0 else
                          float(sps.mannwhitneyu(c, b, alternative="two-sided").pvalue))
        row["unit_of_replication"] = "repetition (1 boot per kernel)"
    row["q_value"] = row["p_value"]
    row["effect"] = inference.cliffs_delta(b, c)
    row["cv_max"] = max(inference.cv(x) for x in base + cand)
    shares = [inference.variance_split(x)["share"] for x in (base, cand)]
    row["boot_share"] = np.nanmax(shares) if not all(np.isnan(shares)) else np.nan
    return {**row, "verdict": decide(row, unit, alpha, noisy_cv)}


def bound_of(row):
    """The largest change (a fraction) the row's interval still allows."""
    if np.isnan(row["ci_low"]) or np.isnan(row["ci_high"]):
        return np.nan
    return max(abs(row["ci_low"] - 1), abs(row["ci_high"] - 1))


def evidence(row):
    """The evidence fields of a verdict from its comparison row: boots (the side with fewer),
    layout variants (the side with fewer; 0 when none were measured) and whether one boot's
    repetitions stood in for boots."""
    boots = min(int(row.get("boots_base", 0) or 0), int(row.get("boots_cand", 0) or 0))
    variants_text = row.get("variants")
    layouts = (min(int(x) for x in variants_text.split("/"))
               if isinstance(variants_text, str) and variants_text else 0)
    return {"boots": boots, "layouts": layouts,
            "repetitions": str(row.get("unit_of_replication", "")).startswith("repetition")}


def decide(row, unit, alpha=ALPHA, noisy_cv=0.05):
    """The verdict (verdict.Verdict) of one comparison row from its q value (its p until a family
    adjusts it), its ratio against the practical threshold, and its interval."""
    if verdict.direction(row.get("verdict")) == verdict.NOT_ENOUGH or np.isnan(row["ratio"]):
        return verdict.Verdict(verdict.NOT_ENOUGH, **evidence(row))
    practical = row.get("practical", PRACTICAL)
    change = row["ratio"] - 1
    up, down = units.direction_words(unit)
    size = {"ratio": float(row["ratio"]), "low": float(row["ci_low"]), "high": float(row["ci_high"]),
            **evidence(row),
            "noisy_cv": float(row["cv_max"]) if row["cv_max"] > noisy_cv else np.nan}
    if row.get("spread") in variants.UNJUDGED:    # a level's spread not measured: no direction
        return verdict.Verdict(verdict.NOT_JUDGED, level=row["spread"], **size)
    if row["q_value"] < alpha and abs(change) >= practical:
        return verdict.Verdict(up if change > 0 else down, **size)
    if row["q_value"] < alpha:
        return verdict.Verdict(verdict.NO_PRACTICAL, change=change, practical=practical, **size)
    return verdict.Verdict(verdict.NO_SIGNIFICANT, bound=bound_of(row), **size)


def adjust(table, method="bh", alpha=ALPHA, noisy_cv=0.05):
    """The table's rows taken as one family: q_value = the adjusted p, verdicts decided again."""
    if table.empty:
        return table
    table = table.copy()
    table["q_value"] = inference.adjust(table["p_value"].to_numpy(float), method)
    table["verdict"] = [decide(r, r["unit"], alpha, noisy_cv) for r in table.to_dict("records")]
    table["multiplicity"] = method
    return table


def paired(b_rounds, c_rounds):
    """[(base boot, candidate boot)] of the rounds both sides have ({round: array} each, as
    boot_values(..., rounds=True) gives them)."""
    return [(b, c_rounds[k]) for k, b in b_rounds.items() if k in c_rounds]


def by_variant(recs, metric):
    """{layout variant: per-boot arrays} ({} when the records have no variants)."""
    has = "variant" in recs and recs["variant"].notna().any()
    return {int(v): boot_values(part, metric) for v, part in recs.groupby("variant")} if has else {}


def host_of(recs):
    return set(recs["host"].dropna()) if "host" in recs else set()


def compare(df, workload, base=None, candidates=None, resamples=2000, seed=0, noisy_cv=0.05,
            metas=(), practical=None, method="bh", only=None, layouts=True):
    """One row per group, candidate condition and metric, against the baseline condition; the
    rows' p values adjusted as one family (method: bh, holm or none).

    base: a condition name ("stock: fork" by default); candidates: condition names (default: all
    others present in the group); only: these metrics alone (default: all). Only measurements of
    one host are compared: a pair measured on different hosts is a row without a verdict."""
    base = base or baseline(list(metas), df)
    units = metrics(df, workload)
    # boots pair in rounds unless a run booted its kernels one after another (sequential order:
    # boot k of two kernels then lies far apart in time, and the drift is the kernel's)
    in_rounds = not any(m.design.get("order") == "sequential" for m in metas)
    real = layouts and not (any(m.timing == "icount" for m in metas)
                            or ("timing" in df and df["timing"].eq("icount").any()))
    rows = []
    for params, part in groups(df, workload):
        present = list(dict.fromkeys(part["condition"]))
        if base not in present:
            continue
        for cand in candidates or [c for c in present if c != base]:
            if cand not in present or cand == base:
                continue
            b_recs, c_recs = part[part["condition"] == base], part[part["condition"] == cand]
            hosts = host_of(b_recs) & host_of(c_recs)
            apart = host_of(b_recs) and host_of(c_recs) and not hosts
            if hosts:
                b_recs, c_recs = b_recs[b_recs["host"].isin(hosts)], c_recs[c_recs["host"].isin(hosts)]
            for metric, unit in units.items():
                if only is not None and metric not in only:
                    continue
                br, cr = boot_values(b_recs, metric, rounds=True), boot_values(c_recs, metric, rounds=True)
                b = list(br.values()) or boot_values(b_recs, metric)
                c = list(cr.values()) or boot_values(c_recs, metric)
                if not len(b) and not len(c):
                    continue
                row = compare_samples(b, c, unit, resamples, seed, noisy_cv,
                                      practical=practical_of(workload, metric, practical),
                                      pairs=paired(br, cr) if in_rounds else None)
                row = variants.judge(row, by_variant(b_recs, metric), by_variant(c_recs, metric), unit,
                                     real, variants.different_binaries(metas, base, cand))
                row["verdict"] = decide(row, unit, noisy_cv=noisy_cv)
                if apart:
                    row.update(p_value=np.nan, q_value=np.nan, ci_low=np.nan, ci_high=np.nan,
                               verdict=verdict.Verdict(
                                   verdict.NOT_COMPARABLE, ratio=float(row["ratio"]), **evidence(row),
                                   detail="measured on different hosts "
                                          f"({', '.join(sorted(host_of(b_recs)))} vs "
                                          f"{', '.join(sorted(host_of(c_recs)))})"))
                rows.append({**params, "baseline": base, "candidate": cand, "metric": metric,
                             "unit": unit, **row})
    table = by_metric(pd.DataFrame(rows), units)
    return adjust_comparable(table, method, noisy_cv)


def widest_interval(run_dir, kernels=None):
    """The widest 95% interval, as a fraction of its ratio, over the comparisons of the headline
    metrics a report of the run would make between `kernels` (default: all; a kernel that failed
    gets no more boots, so its comparisons cannot narrow and are not waited for). Infinite when
    one has no interval yet or only a one-boot interval over repetitions. Spread and extremes
    (std, max, ...) are reported but not waited for: their intervals need not narrow."""
    metas, df = load_runs([run_dir])
    if kernels is not None and len(df):
        df = df[df["kernel"].isin(kernels)]
    widest = 0.0
    for workload in dict.fromkeys(df["workload"]) if len(df) else []:
        watched = headline(workload) or list(metrics(df, workload))
        comp = compare(df, workload, metas=metas, method="none", resamples=200, only=watched)
        for r in comp.to_dict("records") if len(comp) else []:
            if not r["verdict"].sized:
                continue
            if np.isnan(r["ci_low"]) or not r["ratio"] or r["verdict"].repetitions:
                return float("inf")
            widest = max(widest, (r["ci_high"] - r["ci_low"]) / 2 / r["ratio"])
    return widest


def adjust_comparable(table, method, noisy_cv=0.05):
    """`adjust` over the rows that have a p value; rows without one keep their verdict."""
    if table.empty or "p_value" not in table:
        return table
    has_p = table["p_value"].notna()
    table = table.copy()
    if has_p.any():
        table.loc[has_p] = adjust(table[has_p], method, noisy_cv=noisy_cv)
    table["multiplicity"] = method
    return table

