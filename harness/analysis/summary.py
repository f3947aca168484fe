"""The table `harness run` ends with, per workload whose manifest says `table = "headline"`.

One row per group of parameters, condition (a kernel and the kind of fork its records prove) and
headline metric (the manifest's `headline`): the median with its spread (IQR, CV, n and boots)
and, where there is a baseline to compare with (the stock kernel's plain fork), the ratio with its
95% interval and the verdict. The figures are `harness report`'s (stats.describe, report's
comparisons over the run's headline rows), so the two never disagree.
"""
import pandas as pd

from harness.analysis import report, stats

RESAMPLES = 2000
KIND = "headline"       # tables.HEADLINE


def table(df, metas, workload, comp):
    """The workload's summary as a DataFrame of display strings (empty when nothing measured);
    comp: its comparisons (report.comparisons), None without any."""
    heads = stats.headline(workload)
    sub = df[df["workload"] == workload]
    desc = stats.describe(sub, workload)
    if desc.empty:
        return pd.DataFrame()
    desc = desc[desc["metric"].isin(heads)].reset_index(drop=True)
    cols = stats.param_columns(stats.measured(sub), workload)
    shown = report.describe_table(desc, cols)
    out = shown[["params", "condition", "metric", "median", "unit", "iqr", "CV", "n", "boots"]].copy()
    out = out.rename(columns={"iqr": "IQR"})
    if comp is not None and not comp.empty:
        comp = comp[comp["metric"].isin(heads)].reset_index(drop=True)

        def key(row, condition):      # 64.0 beside NaN is 64: the raw values, made plain
            return (*(stats.plain(row[c]) for c in cols), row[condition], row["metric"])
        shown_comp = report.compare_table(comp, cols).to_dict("records")
        keyed = {key(r, "candidate"): v for r, v in zip(comp.to_dict("records"), shown_comp)}
        base = stats.baseline(metas, sub)
        ratio, verdict = [], []
        for r in desc.to_dict("records"):
            v = keyed.get(key(r, "condition"))
            ratio.append(v["ratio [95% CI]"] if v else ("1 (baseline)" if r["condition"] == base else "–"))
            verdict.append(v["verdict"] if v else "")
        out["ratio [95% CI]"], out["verdict"] = ratio, verdict
    if (out["params"] == "–").all():
        out = out.drop(columns="params")
    return out


def text(out):
    return out.to_string(index=False) if len(out) else "(no measured records)"


def show(run_dir, workloads, say, resamples=RESAMPLES):
    """Print (through say) and save (<workload>-summary.md/.csv in the run) the summary of every
    workload named whose manifest asks for one; returns {workload: table}."""
    wanted = [w for w in workloads if stats.manifest(w).get("table") == KIND]
    if not wanted:
        return {}
    metas, df = stats.load_runs([run_dir])
    comps, _ = report.comparisons(df, metas, resamples, 0.05)   # one family, as the report's
    tables = {}
    for workload in wanted:
        out = table(df, metas, workload, comps.get(workload)) if len(df) else pd.DataFrame()
        heads = ", ".join(stats.headline(workload))
        say(f"{workload} ({heads}; ratio and verdict against {stats.baseline(metas, df) or '–'}):")
        say(text(out))
        say("")
        if len(out):
            out.to_csv(run_dir / f"{workload}-summary.csv", index=False)
            (run_dir / f"{workload}-summary.md").write_text(out.to_markdown(index=False) + "\n")
        tables[workload] = out
    return tables
