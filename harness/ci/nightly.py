"""A night of CI: run the experiment (or take a run already made, e.g. cells merged by
harness.ci.merge), record it in the history, compare it with the stock kernel in the run and with
the previous nights, write junit.xml, kcidb.json and summary.md into the run's folder and print the
summary.

A regression: a (kernel, workload, condition, metric, parameters) whose median is worse than the
median of the previous nights (same experiment, accelerator and timing mode) by more than the
threshold, and, when the previous night's raw records are at hand with 3 or more samples on each
side, also different from them: the boot-level test of inference (boots as units), its p
adjusted over the night's family by Benjamini-Hochberg (q < alpha). Worse: slower for
times, larger for sizes, lower for rates (units with "/" or "per"); larger for any other unit.

Exit code: 0 ok, 1 regression, 5 a kernel or task failed (or did not run).
"""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis import inference, report, stats, units
from harness.ci import junit, kcidb
from harness import results, ui
from harness.results import RunStore
from harness.errors import UserError
from harness.ci.history import History, params_key

OK, REGRESSION, FAILED = 0, 1, 5


def higher_is_worse(unit):
    return not units.is_rate(unit)


def worse_word(unit):
    up, down = units.direction_words(unit)
    return up if higher_is_worse(unit) else down


def boots_p(tonight, before, unit):
    """Two-sided p of tonight's samples against an earlier night's, boots as units
    (stats.compare_samples); NaN with too little data on a side."""
    if not tonight or not before:
        return np.nan
    return stats.compare_samples(before, tonight, unit, resamples=200)["p_value"]


def samples(df):
    """{(workload, params key, condition): records} of a run, grouped as stats.describe does."""
    index = {}
    if df.empty:
        return index
    for workload in dict.fromkeys(df["workload"]):
        for params, part in stats.groups(df, workload):
            for cond, recs in part.groupby("condition", sort=False):
                index[(workload, params_key(params), cond)] = recs
    return index




def message(r):
    """One line naming the metric, the ratio and its CI (for the summary and junit.xml)."""
    where = f"{r['kernel']} {r['workload']} [{r['params']}] {r['condition']}"
    if r["status"] == "no history":
        return f"{r['metric']} ({where}): no previous night to compare with"
    if np.isnan(r["ratio"]):
        return f"{r['metric']} ({where}): no ratio (the previous nights' median is 0)"
    text = (f"{r['metric']} ({where}): median {report.num(r['median'])} {r['unit']} is "
            f"{r['ratio']:.3f}x the median of {r['nights']} previous night(s) "
            f"({report.num(r['reference'])} {r['unit']}), 95% CI of the ratio "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
    if not np.isnan(r["p_value"]):
        text += (f", p={r['p_value']:.2g} (q={r.get('q_value', np.nan):.2g} over the night's family) "
                 f"against night {r['last_night']}, boots as units")
    if r["status"] == "regression":
        text = f"REGRESSION: {text}; {worse_word(r['unit'])} by more than {r['threshold']:.0%}"
    return text


class Nightly:
    def __init__(self, experiment=None, run=None, baseline_nights=5, threshold=0.05, history=None,
                 alpha=0.05, resamples=2000, method="bh", practical=None):
        if (experiment is None) == (run is None):
            raise UserError("a night needs an experiment to run or a finished run (--run), not both")
        self.exp = experiment
        self.run_dir = run
        self.baseline_nights = baseline_nights
        self.threshold = threshold
        self.alpha = alpha
        self.resamples = resamples
        self.method = method
        self.practical = practical
        self.history = history if isinstance(history, History) else History(history)
        self.failures, self.baseline, self.nights = [], [], []
        self.baseline_tables = {}
        self.summary = ""

    # --- the night ------------------------------------------------------------------------------

    def execute(self):
        if self.run_dir is None:
            from harness.pipeline import Run
            self.run_dir = Run(self.exp).execute().store.dir
        self.run_dir = Path(stats.run_path(self.run_dir))
        RunStore.open(self.run_dir).lock()      # summary.md and junit.xml are written into it
        self.run, self.df = stats.load_run(self.run_dir)
        self.meta = self.run.data          # its fields as written (still read as a dict here)
        self.run_id = self.meta.get("run_id", self.run_dir.name)
        self.history.record(self.run_dir)
        self.labels = self.kernel_labels()
        self.failures = self.failed()
        self.baseline = self.against_baseline()
        self.nights = self.against_nights()
        self.write()
        ui.out(self.summary)
        return self

    @property
    def regressions(self):
        return [r for r in self.nights if r["status"] == "regression"]

    @property
    def exit_code(self):
        return FAILED if self.failures else REGRESSION if self.regressions else OK

    def kernel_labels(self):
        """Every kernel the experiment has (those that did not run too), then any other."""
        planned = [k["label"] for k in (self.meta.get("experiment") or {}).get("kernels", [])]
        return planned + [k for k in self.meta.get("kernels", {}) if k not in planned]

    def failed(self):
        out = []
        kernels = self.meta.get("kernels", {})
        for label in self.labels:
            info = kernels.get(label)
            if info is None:
                out.append(f"{label}: did not run")
                continue
            if info.get("error"):
                out.append(f"{label}: {info['error']}")
            tasks = [t for t in info.get("tasks", []) if t.get("status") != "ok"]
            out += [f"{label} {t.get('task')}: {t.get('error') or 'failed (kernel log)'}" for t in tasks]
            if info.get("status") != "ok" and not info.get("error") and not tasks:
                out.append(f"{label}: status {info.get('status', 'unknown')}")
        return out

    # --- comparisons ----------------------------------------------------------------------------

    def against_baseline(self):
        """stats.compare of every workload against the stock kernel's plain fork in this run."""
        rows = []
        if self.df.empty:
            return rows
        owner = dict(zip(self.df["condition"], self.df["kernel"]))
        comps, _ = report.comparisons(self.df, [self.run], self.resamples, 0.05,
                                      practical=self.practical, method=self.method)
        for workload, comp in comps.items():
            if comp is None or comp.empty:
                continue
            cols = stats.param_columns(stats.measured(self.df[self.df["workload"] == workload]), workload)
            self.baseline_tables[workload] = report.compare_table(comp, cols)
            for r in comp.to_dict("records"):
                rows.append({**r, "workload": workload, "kernel": owner[r["candidate"]],
                             "params": results.params_text(r, cols)})
        return rows

    def against_nights(self):
        """One row per result of this run against the previous nights' medians."""
        current = self.history.query("run_id = ?", [self.run_id], order="rowid")
        here = samples(self.df)
        earlier = {}
        rows = []
        for r in current.to_dict("records"):
            prev = self.history.previous(r, self.baseline_nights)
            row = {"kernel": r["kernel"], "workload": r["workload"], "condition": r["condition"],
                   "params": results.params_text(json.loads(r["params"])), "metric": r["metric"], "unit": r["unit"],
                   "n": r["n"], "median": r["median"], "nights": len(prev), "reference": np.nan,
                   "ratio": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan,
                   "last_night": None, "threshold": self.threshold, "status": "no history"}
            if len(prev):
                key = (r["workload"], r["params"], r["condition"])
                x = stats.boot_values(here[key], r["metric"]) if key in here else []
                last = prev.loc[0, "run_id"]
                if last not in earlier:
                    earlier[last] = self.night_samples(last)
                y = stats.boot_values(earlier[last][key], r["metric"]) if key in earlier[last] else []
                row.update(self.judge(r, prev, x, y), last_night=last)
            rows.append(row)
        self.gate(rows)
        for row in rows:
            row["message"] = message(row)
        rank = {label: i for i, label in enumerate(self.labels)}
        return sorted(rows, key=lambda r: rank.get(r["kernel"], len(rank)))

    def night_samples(self, run_id):
        """The raw records of an earlier night, when its folder is still there."""
        info = self.history.run(run_id)
        if not info or not info.get("path") or not (Path(info["path"]) / "metadata.json").exists():
            return {}
        return samples(stats.load_run(info["path"])[1])

    def judge(self, r, prev, x, y):
        """The change against the previous nights' median; the status is set by `gate`."""
        reference = float(np.nanmedian(prev["median"].astype(float)))
        if not reference or np.isnan(reference):
            return {"reference": reference, "status": "ok"}
        flat = np.concatenate(x) if x else np.array([])
        lo, hi = (np.array(inference.median_ci(flat, self.resamples)) / reference if len(flat)
                  else (np.nan, np.nan))
        return {"reference": reference, "ratio": r["median"] / reference, "ci_low": float(lo),
                "ci_high": float(hi), "p_value": boots_p(x, y, r["unit"]), "status": "ok"}

    def gate(self, rows):
        """Regression or improvement: beyond the threshold, and (where last night's samples are at
        hand) different from them with the night's p values adjusted as one family (the method of
        the report, Benjamini-Hochberg by default)."""
        judged = [r for r in rows if not np.isnan(r.get("ratio", np.nan))]
        q = inference.adjust([r["p_value"] for r in judged], self.method)
        for r, qv in zip(judged, q):
            r["q_value"] = qv
            tested = np.isnan(qv) or qv < self.alpha
            up, down = r["ratio"] > 1 + self.threshold, r["ratio"] < 1 - self.threshold
            worse, better = (up, down) if higher_is_worse(r["unit"]) else (down, up)
            r["status"] = "regression" if worse and tested else "improved" if better and tested else "ok"

    # --- output ---------------------------------------------------------------------------------

    def status_word(self):
        return {OK: "OK", REGRESSION: "REGRESSION", FAILED: "FAILED"}[self.exit_code]

    def nights_table(self):
        rows = []
        for r in self.nights:
            ratio = "–" if np.isnan(r["ratio"]) else f"{r['ratio']:.3f}"
            if not np.isnan(r["ci_low"]):
                ratio += f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            rows.append({"kernel": r["kernel"], "workload": r["workload"], "params": r["params"],
                         "condition": r["condition"], "metric": r["metric"], "unit": r["unit"],
                         "n": r["n"], "median": report.num(r["median"]),
                         "previous median": report.num(r["reference"]), "nights": r["nights"],
                         "ratio [95% CI]": ratio,
                         "p": "–" if np.isnan(r["p_value"]) else f"{r['p_value']:.2g}",
                         "status": r["status"]})
        return pd.DataFrame(rows)

    def markdown(self):
        m = self.meta
        lines = [f"# Nightly {self.run_id}: {self.status_word()} (exit {self.exit_code})", "",
                 f"- experiment: {(m.get('experiment') or {}).get('name', '?')}",
                 f"- started: {m.get('started', '?')}; accelerator: {m.get('accel', '?')}; "
                 f"timing: {m.get('timing', 'real')}; harness: {m.get('harness_sha', '?')}",
                 f"- run: {self.run_dir}"
                 + (f" (merged from {', '.join(m['merged_from'])})" if m.get("merged_from") else ""),
                 f"- regression: worse than the median of up to {self.baseline_nights} previous "
                 f"nights (same experiment, accelerator, timing) by more than {self.threshold:.0%}, "
                 f"and different from the previous night when its records are at hand: "
                 f"{inference.TEST_TEXT}, q < {self.alpha} after "
                 f"{inference.METHOD_TEXT[self.method]} over the night's comparisons", ""]
        if self.failures:
            lines += ["## Failures", ""] + [f"- {f}" for f in self.failures] + [""]
        lines += ["## Regressions against previous nights", ""]
        lines += [f"- {r['message']}" for r in self.regressions] or ["none"]
        lines.append("")
        kernels = self.meta.get("kernels", {})
        table = pd.DataFrame([{"kernel": k, "status": (kernels.get(k) or {}).get("status", "did not run"),
                               "release": (kernels.get(k) or {}).get("release", "–"),
                               "tasks": len((kernels.get(k) or {}).get("tasks", [])),
                               "failed tasks": sum(t.get("status") != "ok"
                                                   for t in (kernels.get(k) or {}).get("tasks", []))}
                              for k in self.labels])
        lines += ["## Kernels", "", table.to_markdown(index=False) if len(table) else "(none)", ""]
        nights = self.nights_table()
        lines += ["## Against previous nights", "",
                  nights.to_markdown(index=False, disable_numparse=True) if len(nights) else "no results", ""]
        lines += ["## Against the stock kernel in this run", ""]
        for workload, comp in self.baseline_tables.items():
            lines += [f"### {workload}", "", comp.to_markdown(index=False, disable_numparse=True), ""]
        if not self.baseline_tables:
            lines += ["nothing to compare", ""]
        return "\n".join(lines)

    def write(self):
        self.summary = self.markdown()
        (self.run_dir / "summary.md").write_text(self.summary)
        cases = (junit.task_cases(self.meta, self.labels) + junit.night_cases(self.nights)
                 + junit.baseline_cases(self.baseline))
        junit.write(self.run_dir / "junit.xml", f"nightly {self.run_id}", cases,
                    timestamp=self.meta.get("started"))
        kcidb.write(self.run_dir, origin=os.environ.get("HARNESS_KCIDB_ORIGIN", kcidb.ORIGIN),
                    artifacts_url=os.environ.get("HARNESS_ARTIFACTS_URL"))
