"""A metric's samples per boot: the grouping every statistic of a report starts from.

In plain Python over the few rows of one group: pandas' groupby costs milliseconds a call and a
report makes thousands (harness/analysis/stats.py re-exports boot_values)."""
import numpy as np

# what tells the boots of a kernel apart: a record's replication unit (no "boot" field: boot 1)
BOOT_UNIT = ("run_id", "from_run", "kernel", "host", "boot")


def boot_values(recs, metric, rounds=False):
    """A metric's samples as one array per boot (run, kernel, host, boot). A value repeated
    unchanged in every round of a task (the evidence fork that fault-latency and fork-server copy
    into each round's record) was measured once: once. rounds: {round: array} instead, a round
    being the boots of one run, host and boot index (every kernel's boot number k of a run).

    Grouped in plain Python over the few rows of one group (pandas' groupby costs milliseconds a
    call, and a report makes thousands), in pandas' order (groupby sort=True, dropna=False)."""
    values = recs[metric].to_numpy(dtype=float, na_value=np.nan) if metric in recs else np.array([])
    keep = np.flatnonzero(~np.isnan(values))
    if not len(keep):
        return {} if rounds else []
    values = values[keep]
    columns = {c: _keys(recs[c], keep) for c in (*BOOT_UNIT, "task", "round") if c in recs}
    if rounds:
        key = [c for c in BOOT_UNIT if c in columns and c != "kernel"]
        if "boot" not in key or ("kernel" in columns and len(set(columns["kernel"])) > 1):
            return {}
        out = {}
        for k, rows in _grouped(columns, key, len(values)).items():
            (out[k],) = _per_boot(values[rows], {c: [col[i] for i in rows] for c, col in columns.items()})
        return out
    return _per_boot(values, columns)


def _per_boot(values, columns):
    unit = [c for c in BOOT_UNIT if c in columns]
    scope = unit + (["task"] if "task" in columns else [])
    if "round" in columns and scope and len(values) > 1:
        per_task = _grouped(columns, scope, len(values))
        if all(len(set(values[rows])) == 1 for rows in per_task.values()):
            first = sorted(rows[0] for rows in per_task.values())       # drop_duplicates: the first
            values = values[first]
            columns = {c: [col[i] for i in first] for c, col in columns.items()}
    if not unit:
        return [values]
    return [values[rows] for rows in _grouped(columns, unit, len(values)).values()]


def _keys(column, rows):
    """A column's values at rows, NaN as numpy's one nan (pandas' group key for a missing value)."""
    return [np.nan if v is None or (isinstance(v, float) and v != v) else v
            for v in column.to_numpy(dtype=object)[rows].tolist()]


def _grouped(columns, key, n):
    """{key tuple: row positions}, keys sorted with missing values last."""
    out = {}
    for i, k in enumerate(zip(*(columns[c] for c in key)) if key else [()] * n):
        out.setdefault(k, []).append(i)
    order = sorted(out, key=lambda k: tuple((1, 0) if v is np.nan else (0, v) for v in k))
    return {k: out[k] for k in order}
