"""Statistics over a run's raw records (pandas + scipy): summaries and stock-vs-patched comparisons.

The unit of comparison is a cell group: one workload with the same parameters (repetition, round
and warm-up fields aside), measured under several conditions. A condition is a kernel and a kind of
fork, the kind being each record's own COW PTE verdict (harness.activity): "off" is a plain fork,
"active" a COW PTE fork; "inactive" and "unproven" records stay conditions of their own, shown but
never taken as COW PTE results.

Times are only comparable within one accelerator and timing mode: runs that differ are refused.
"""
import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness import activity, paths
from harness.errors import UserError

KINDS = {"off": "fork", "active": "COW PTE fork",
         "inactive": "COW PTE requested, inactive", "unproven": "COW PTE requested, unproven"}
PLAIN, COW = KINDS["off"], KINDS["active"]

# never parameters: bookkeeping, the verdict (it is the condition), repetition counters
NOT_PARAMS = {"rep", "round", "warmup", "cell", "kernel", "workload", "run_id", "type", "cow_pte",
              "cow_pte_requested", "cow_pte_evidence", "repeat", "reps", "rounds", "kind",
              "condition"}
# record fields that are an axis of a workload even when the manifest names its parameter otherwise
AXES = ("size_mib", "mib", "heap_mib", "pattern", "side", "thp")
SUFFIX_UNITS = {"_ns": "ns", "_us": "us", "_ms": "ms", "_kb": "kB", "_mib": "MiB", "_per_s": "/s"}

TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
SIZE_UNITS = {"B": 1, "bytes": 1, "kB": 1024, "KiB": 1024, "KB": 1024, "MB": 1e6, "MiB": 2**20,
              "GB": 1e9, "GiB": 2**30}


# -- loading -----------------------------------------------------------------------------------

def manifest(workload):
    path = paths.WORKLOADS / workload / "manifest.toml"
    return tomllib.loads(path.read_text()) if path.exists() else {}


def run_path(run):
    """A run's folder from its path or its bare id (looked up in the results folder)."""
    path = Path(run)
    return path if path.exists() or not (paths.results() / path).exists() else paths.results() / path


def load_run(run_dir):
    """(metadata, DataFrame of every record, warm-ups included) for results/<run-id>/."""
    run_dir = run_path(run_dir)
    meta_path = run_dir / "metadata.json"
    if not meta_path.exists():
        raise UserError(f"{run_dir} is not a run: it has no metadata.json")
    meta = json.loads(meta_path.read_text())
    run_id = meta.get("run_id", run_dir.name)
    rows = []
    labels = list(meta.get("kernels", {}))
    for path in sorted(run_dir.glob("*/*.jsonl")):
        if labels and path.parent.name not in labels:
            continue                # e.g. <label>.attempt-1 left by an interrupted attempt
        if path.stem.startswith("selftest-"):
            continue                # selftest outcomes are tables, not measurements
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue            # a line cut short by a crash
            if rec.get("type", "record") != "record":
                continue
            rows.append({**rec, "kernel": path.parent.name, "workload": path.stem, "run_id": run_id})
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["kernel", "workload", "run_id"])
    return meta, add_conditions(df)


def own_verdict(rec):
    """The record's COW PTE verdict: its cow_pte field, or judged from its own evidence (the held
    fork of fork-latency, fork-server, fault-latency); None when it carries none."""
    rec = {k: v for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))}
    if rec.get("cow_pte") in KINDS:
        return rec["cow_pte"]
    if not (rec.get("cow_pte_requested") is True or rec.get("cow_pte_requested") == 1):
        return "off"
    if "pagetables_delta_kb" in rec or "config_cow_pte" in rec:
        return activity.judge(rec)[0]
    return None


def verdicts(df):
    """Every record's verdict; a record without evidence takes the one verdict of the evidence in
    its scope (run, kernel, cell and parameters, e.g. one size of fork-latency), else "unproven"."""
    own = pd.Series([own_verdict(r) for r in df.to_dict("records")], index=df.index, dtype=object)
    if not own.isna().any():
        return own
    for workload, sub in df[own.isna()].groupby("workload"):
        whole = df[df["workload"] == workload]
        scope = [c for c in ("run_id", "kernel", "cell") if c in df] + param_columns(whole, workload)
        keys = whole[scope].astype(str).agg("|".join, axis=1)
        for key in keys[sub.index].unique():
            known = set(own[keys.index[keys == key]].dropna()) - {"off"}
            own[sub.index[keys[sub.index] == key]] = known.pop() if len(known) == 1 else "unproven"
    return own


def add_conditions(df):
    """Columns warmup (bool), cow_pte (verdict), kind ("fork", "COW PTE fork", ...) and
    condition ("kernel: kind")."""
    df = df.copy()
    df["warmup"] = df["warmup"].eq(True) if "warmup" in df else False
    df["cow_pte"] = verdicts(df) if len(df) else pd.Series(dtype=object)
    df["kind"] = df["cow_pte"].map(KINDS)
    df["condition"] = df["kernel"].astype(str) + ": " + df["kind"]
    return df


def accel_mode(meta):
    return meta.get("accel", "unknown"), meta.get("timing")


def load_runs(run_dirs):
    """(list of metadata, concatenated records); runs of different accelerator or timing refused."""
    loaded = [load_run(d) for d in run_dirs]
    modes = {accel_mode(m) for m, _ in loaded}
    if len(modes) > 1:
        desc = ", ".join(f"{m.get('run_id')}: accel={m.get('accel')}"
                         + (f" timing={m['timing']}" if m.get("timing") else "") for m, _ in loaded)
        raise UserError("these runs used different accelerators or timing modes, so their times "
                        f"cannot be compared ({desc}); report them separately")
    metas = [m for m, _ in loaded]
    df = pd.concat([df for _, df in loaded], ignore_index=True)
    return metas, in_order(df, metas)


def in_order(df, metas):
    """Records sorted stably: the stock kernel first, then metadata order; plain fork first."""
    if df.empty:
        return df
    stock = stock_kernel(metas, df)
    kernels = kernel_order(metas, df)
    rank = [(k != stock, kernels.index(k), list(KINDS.values()).index(kind))
            for k, kind in zip(df["kernel"], df["kind"])]
    order = sorted(range(len(df)), key=rank.__getitem__)
    return df.iloc[order].reset_index(drop=True)


# -- what to compare ---------------------------------------------------------------------------

def unit_of(workload, metric):
    metrics = manifest(workload).get("metrics", {})
    if metric in metrics:
        return metrics[metric]
    return next((u for s, u in SUFFIX_UNITS.items() if metric.endswith(s)), "")


def metrics(df, workload):
    """{metric: unit}: the manifest's metrics that are numeric columns here (by suffix if none)."""
    declared = manifest(workload).get("metrics")
    if declared is None:
        declared = {c: unit_of(workload, c) for c in df.columns
                    if any(c.endswith(s) for s in SUFFIX_UNITS) and c not in AXES}
    return {m: u for m, u in declared.items()
            if m in df and pd.api.types.is_numeric_dtype(df[m]) and df[m].notna().any()}


def param_columns(df, workload):
    """The fields that tell cell groups apart: manifest parameters and known axes present here."""
    wanted = list(AXES) + list(manifest(workload).get("params", {}))
    found = [c for c in dict.fromkeys(wanted) if c in df and c not in NOT_PARAMS]
    return [c for c in found if c not in metrics(df, workload) and df[c].notna().any()]


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


def plain(value):
    """A numpy scalar as a Python one; 16.0 as 16 (numeric columns turn float beside NaN)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def kernel_order(metas, df):
    order = []
    for m in metas:
        order += [k for k in m.get("kernels", {}) if k not in order]
    return order + [k for k in dict.fromkeys(df["kernel"]) if k not in order]


def stock_kernel(metas, df):
    """The unpatched kernel: one labelled 'stock', else the first without patches or series."""
    order = kernel_order(metas, df)
    if "stock" in order:
        return "stock"
    for label in order:
        k = next((m["kernels"][label] for m in metas if label in m.get("kernels", {})), {})
        if not k.get("patches") and not k.get("series"):
            return label
    return order[0] if order else None


def baseline(metas, df):
    label = stock_kernel(metas, df)
    return f"{label}: {PLAIN}" if label else None


# -- numbers -----------------------------------------------------------------------------------

def values(recs, metric):
    """A metric's samples. A value repeated unchanged in every round of a cell (the evidence fork
    that fault-latency and fork-server copy into each round's record) was measured once: once."""
    x = recs.dropna(subset=[metric])
    scope = [c for c in ("run_id", "kernel", "cell") if c in x]
    if "round" in x and scope and len(x) > 1:
        per_cell = x.groupby(scope, dropna=False)[metric]
        if (per_cell.nunique() == 1).all():
            x = x.drop_duplicates(scope)
    return x[metric].to_numpy(float)


def describe(df, workload):
    """One row per group, condition and metric: n, median, IQR, mean, std, CV, min, max, unit."""
    rows = []
    units = metrics(df, workload)
    for params, part in groups(df, workload):
        for cond, recs in part.groupby("condition", sort=False):
            for metric, unit in units.items():
                x = values(recs, metric)
                if not len(x):
                    continue
                q1, med, q3 = np.percentile(x, [25, 50, 75])
                mean, std = x.mean(), (x.std(ddof=1) if len(x) > 1 else 0.0)
                rows.append({**params, "condition": cond, "metric": metric, "unit": unit,
                             "n": len(x), "median": med, "iqr": q3 - q1, "mean": mean, "std": std,
                             "cv": std / mean if mean else np.nan, "min": x.min(), "max": x.max()})
    return by_metric(pd.DataFrame(rows), units)


def by_metric(table, units):
    """Rows of one metric together, in the manifest's order (stable within a metric)."""
    if table.empty:
        return table
    rank = table["metric"].map(list(units).index)
    return table.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)


def bootstrap_ratio(base, cand, resamples=2000, seed=0):
    """95% CI of median(cand)/median(base), each side resampled with replacement."""
    rng = np.random.default_rng(seed)
    mb = np.median(rng.choice(base, (resamples, len(base))), axis=1)
    mc = np.median(rng.choice(cand, (resamples, len(cand))), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = mc / mb
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) < resamples / 2:
        return np.nan, np.nan
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def cliffs_delta(base, cand):
    """P(cand > base) - P(cand < base), in [-1, 1]: also the rank-biserial correlation."""
    diff = np.sign(np.subtract.outer(cand, base))
    return float(diff.mean())


def direction_words(unit):
    u = (unit or "").strip()
    if "/" in u or u.lower().startswith("per"):
        return "higher", "lower"
    if u in TIME_UNITS:
        return "slower", "faster"
    if u in SIZE_UNITS or u == "pages":
        return "larger", "smaller"
    return "higher", "lower"


def cv(x):
    mean = np.mean(x)
    return float(np.std(x, ddof=1) / mean) if len(x) > 1 and mean else 0.0


def compare_samples(base, cand, unit, resamples=2000, seed=0, noisy_cv=0.05, alpha=0.05):
    """Ratio of medians with bootstrap CI, Mann-Whitney p, Cliff's delta and a verdict."""
    base, cand = np.asarray(base, float), np.asarray(cand, float)
    row = {"n_base": len(base), "n_cand": len(cand),
           "median_base": np.median(base) if len(base) else np.nan,
           "median_cand": np.median(cand) if len(cand) else np.nan,
           "ratio": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
           "effect": np.nan, "cv_max": np.nan}
    if len(base) < 3 or len(cand) < 3:
        return {**row, "verdict": "not enough data"}
    if row["median_base"]:
        row["ratio"] = row["median_cand"] / row["median_base"]
    row["ci_low"], row["ci_high"] = bootstrap_ratio(base, cand, resamples, seed)
    if np.ptp(np.concatenate([base, cand])) == 0:
        row["p_value"] = 1.0
    else:
        row["p_value"] = float(sps.mannwhitneyu(cand, base, alternative="two-sided").pvalue)
    row["effect"] = cliffs_delta(base, cand)
    row["cv_max"] = max(cv(base), cv(cand))
    up, down = direction_words(unit)
    ci_known = not np.isnan(row["ci_low"])
    excludes_one = ci_known and (row["ci_low"] > 1 or row["ci_high"] < 1)
    if row["p_value"] < alpha and (excludes_one or not ci_known):
        verdict = up if row["median_cand"] > row["median_base"] else down
    else:
        verdict = "no significant difference"
    if row["cv_max"] > noisy_cv:
        verdict += f" (noisy: CV {row['cv_max']:.0%})"
    return {**row, "verdict": verdict}


def compare(df, workload, base=None, candidates=None, resamples=2000, seed=0, noisy_cv=0.05,
            metas=()):
    """One row per group, candidate condition and metric, against the baseline condition.

    base: a condition name ("stock: fork" by default); candidates: condition names (default: all
    others present in the group)."""
    base = base or baseline(list(metas), df)
    units = metrics(df, workload)
    rows = []
    for params, part in groups(df, workload):
        present = list(dict.fromkeys(part["condition"]))
        if base not in present:
            continue
        for cand in candidates or [c for c in present if c != base]:
            if cand not in present or cand == base:
                continue
            for metric, unit in units.items():
                b = values(part[part["condition"] == base], metric)
                c = values(part[part["condition"] == cand], metric)
                if not len(b) and not len(c):
                    continue
                rows.append({**params, "baseline": base, "candidate": cand, "metric": metric,
                             "unit": unit, **compare_samples(b, c, unit, resamples, seed, noisy_cv)})
    return by_metric(pd.DataFrame(rows), units)


# -- units -------------------------------------------------------------------------------------

def convert(value, unit, to):
    """value in unit expressed in unit `to` (time or size units); None when they do not convert."""
    if unit == to:
        return value
    for table in (TIME_UNITS, SIZE_UNITS):
        if unit in table and to in table:
            return value * table[unit] / table[to]
    return None


def is_time(unit):
    return unit in TIME_UNITS


def median_ci(x, resamples=2000, seed=0):
    """Bootstrap 95% CI of the median of x."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return (float(x[0]), float(x[0])) if len(x) else (np.nan, np.nan)
    meds = np.median(np.random.default_rng(seed).choice(x, (resamples, len(x))), axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return float(lo), float(hi)
