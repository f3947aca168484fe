"""The nights' results over time: a SQLite file (results/history.sqlite by default).

record(run) stores one row per (run, kernel, workload, condition, metric, group parameters) with
n, median, IQR, CV (harness.analysis.stats.describe) and the run's date, accelerator, timing mode, harness
sha and the kernel's release, source and patches. Recording a run again replaces its rows.
series() reads a metric back over the nights, previous() the nights before one, plot() draws it.
"""
import contextlib
import datetime
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness import database, paths, results
from harness.analysis import plots, report, stats  # noqa: E402
from harness.errors import UserError  # noqa: E402

RUN_COLUMNS = ["run_id", "date", "experiment", "accel", "timing", "harness_sha", "path", "recorded"]
COLUMNS = ["run_id", "date", "experiment", "accel", "timing", "harness_sha", "kernel", "release",
           "source", "patches", "workload", "condition", "kind", "params", "metric", "unit", "n",
           "median", "iqr", "cv", "mean", "min", "max"]
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs ({", ".join(RUN_COLUMNS)}, PRIMARY KEY (run_id));
CREATE TABLE IF NOT EXISTS results ({", ".join(COLUMNS)},
    PRIMARY KEY (run_id, kernel, workload, condition, metric, params));
CREATE INDEX IF NOT EXISTS results_key ON results (metric, workload, kernel, condition);
"""


def default_path():
    return paths.results() / "history.sqlite"


def params_key(params):
    """A group's parameters as the JSON text stored and matched on."""
    clean = {k: None if isinstance(v, float) and math.isnan(v) else stats.plain(v)
             for k, v in params.items()}
    return json.dumps(clean, sort_keys=True)


def run_date(meta, run_id):
    """The run's start as ISO text in UTC (from metadata, a stored.Run, else from its id)."""
    for text in (meta.started, meta.finished):
        try:
            when = datetime.datetime.fromisoformat(text)
        except (TypeError, ValueError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        return when.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        when = datetime.datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S")
        return when.replace(tzinfo=datetime.timezone.utc).isoformat(timespec="seconds")
    except ValueError:
        return ""


def number(value):
    value = stats.plain(value)
    return None if isinstance(value, float) and math.isnan(value) else value


def kernel_facts(info):
    src = info.get("source") or {}
    patches = info.get("patches") or (info.get("series") or {}).get("patches") or []
    return {"release": info.get("release"), "source": src.get("spec") or src.get("id"),
            "patches": json.dumps(patches)}


def rows_of(run_dir):
    """(run row, result rows) of a run, as dicts."""
    meta, df = stats.load_run(run_dir)
    run_id = meta.run_id
    run = {"run_id": run_id, "date": run_date(meta, run_id),
           "experiment": (meta.experiment or {}).get("name"), "accel": meta.accel,
           "timing": meta.timing, "harness_sha": meta.harness_sha,
           "path": str(Path(stats.run_path(run_dir)).resolve()),
           "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    rows = []
    if df.empty:
        return run, rows
    owner = dict(zip(df["condition"], df["kernel"]))
    kinds = dict(zip(df["condition"], df["kind"]))
    for workload in dict.fromkeys(df["workload"]):
        desc = stats.describe(df, workload)
        cols = stats.param_columns(stats.measured(df[df["workload"] == workload]), workload)
        for r in desc.to_dict("records"):
            kernel = owner[r["condition"]]
            rows.append({**{k: run[k] for k in RUN_COLUMNS if k in COLUMNS}, "kernel": kernel,
                         **kernel_facts(meta.kernels[kernel].facts if kernel in meta.kernels else {}),
                         "workload": workload, "condition": r["condition"],
                         "kind": kinds[r["condition"]],
                         "params": params_key({c: r[c] for c in cols if c in r}),
                         "metric": r["metric"], "unit": r["unit"],
                         **{k: number(r[k]) for k in ("n", "median", "iqr", "cv", "mean", "min", "max")}})
    return run, rows


class History:
    def __init__(self, path=None):
        self.path = Path(path or default_path())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write(lambda db: db.executescript(SCHEMA))

    @contextlib.contextmanager
    def connect(self):
        """A connection that commits on success and is closed afterwards (harness.database:
        WAL, a long busy timeout, a locked database retried, a broken file one clear error)."""
        with database.connect(self.path) as db:
            yield db

    def write(self, work):
        """work(db) in one transaction, retried whole while another writer holds the lock."""
        return database.retry(lambda: self._write(work), self.path)

    def _write(self, work):
        with self.connect() as db:
            return work(db)

    def record(self, run_dir):
        """Store a run's summaries, replacing any rows it had. Returns the number of rows."""
        run, rows = rows_of(run_dir)

        def work(db):
            db.execute("DELETE FROM results WHERE run_id = ?", (run["run_id"],))
            db.execute(f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
                       [run[c] for c in RUN_COLUMNS])
            db.executemany(f"INSERT INTO results VALUES ({', '.join('?' * len(COLUMNS))})",
                           [[r[c] for c in COLUMNS] for r in rows])
        self.write(work)
        return len(rows)

    def runs(self):
        """The recorded runs, oldest first."""
        with self.connect() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY date, run_id").fetchall()
        return pd.DataFrame([dict(r) for r in rows], columns=RUN_COLUMNS)

    def run(self, run_id):
        with self.connect() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def query(self, where, args, order="date, run_id"):
        with self.connect() as db:
            rows = db.execute(f"SELECT * FROM results WHERE {where} ORDER BY {order}", args).fetchall()
        return pd.DataFrame([dict(r) for r in rows], columns=COLUMNS)

    def series(self, metric, workload=None, condition=None, kernel=None):
        """A metric over the nights, oldest first. condition: "stock: fork" or a kind ("fork")."""
        where, args = ["metric = ?"], [metric]
        if workload:
            where.append("workload = ?")
            args.append(workload)
        if kernel:
            where.append("kernel = ?")
            args.append(kernel)
        if condition:
            where.append("(condition = ? OR kind = ?)")
            args += [condition, condition]
        return self.query(" AND ".join(where), args)

    def previous(self, row, nights=5):
        """Up to `nights` earlier results for the same experiment, accelerator, timing mode,
        kernel, workload, condition, metric and parameters as row (a result row), newest first."""
        keys = ("experiment", "accel", "timing", "kernel", "workload", "condition", "metric", "params")
        where = " AND ".join(f"{k} IS ?" for k in keys) + " AND (date < ? OR (date = ? AND run_id < ?))"
        args = [row[k] for k in keys] + [row["date"], row["date"], row["run_id"]]
        found = self.query(where, args, order="date DESC, run_id DESC")
        return found.head(nights).reset_index(drop=True)

    def plot(self, metric, out, workload=None, condition=None, kernel=None):
        """A PNG of the metric's median over the nights (band: min to max), a line per condition
        and parameters. Returns the path."""
        table = self.series(metric, workload, condition, kernel)
        if table.empty:
            raise UserError(f"no history of metric '{metric}' in {self.path}")
        table["when"] = pd.to_datetime(table["date"], utc=True, errors="coerce")
        div, unit = report.display_unit(table["unit"].iloc[0], table["median"].dropna().to_numpy(float))
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for (wl, cond, params), part in table.groupby(["workload", "condition", "params"], sort=False):
            shown = results.params_text(json.loads(params))
            label = f"{cond}" + (f" [{shown}]" if json.loads(params) else "") + (f" ({wl})" if not workload else "")
            ax.plot(part["when"], part["median"] / div, marker="o", label=label)
            ax.fill_between(part["when"], part["min"] / div, part["max"] / div, alpha=0.15)
        ax.set_ylabel(f"{metric} ({unit}, median)")
        ax.set_xlabel("night")
        ax.set_title(f"{metric} over nights (band: min to max)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
        fig.autofmt_xdate()
        return plots.save(fig, out)


def main(args):
    """`harness history METRIC`: the metric over nights as a table, and a plot with --plot."""
    from harness import ui
    store = History(args.history)
    table = store.series(args.metric, args.workload, args.condition, args.kernel)
    if table.empty:
        raise UserError(f"no history of metric '{args.metric}' in {store.path}")
    shown = table[["date", "run_id", "kernel", "condition", "workload", "params", "n", "median",
                   "iqr", "cv", "unit", "accel", "harness_sha"]]
    ui.out(shown.to_markdown(index=False))
    if args.plot:
        png = store.plot(args.metric, args.plot, args.workload, args.condition, args.kernel)
        ui.console.print(f"plot: {png}")
    return 0
