"""Which of a series' changed lines ran: its lines in the final tree, per patch, against gcov counts.

The patched tree holds one commit per patch (series.apply). `git blame <stock>..HEAD` on each file
the series touches attributes every line of the final tree to the last commit that wrote it:
the lines of patch k are those it added or changed that no later patch rewrote (a line a later
patch changed again counts for the later one). A line is executable when gcov reports it (it has
code in an object the coverage kernel profiled; a header line through the profiled .c files that
use it) and executed in a column when its count summed over that column's tasks is above 0.
Columns: "boot" (what ran while the kernel booted), "workloads/<way>" and "selftests/<way>"
(the ways: plain, or the feature's), and "any".

A hunk here is a run of consecutive lines of one patch in one file; one with executable lines of
which none ran in any column is "never executed", named by file:line and the patch's subject.
"""
import re

from harness.kernel.sources import git

KINDS = ("workloads", "selftests")       # the tasks' kinds: each a column of its ways together
HEADER = re.compile(r"^([0-9a-f]{40}) \d+ (\d+)(?: (\d+))?$")


def parse_blame(text, patch_of):
    """{patch index: [final line numbers]} from `git blame --porcelain`; patch_of: commit -> index
    (lines of any other commit, the stock tree's, are left out)."""
    out = {}
    for line in text.splitlines():
        m = HEADER.match(line)
        if not m:
            continue
        index = patch_of.get(m[1])
        if index is not None:
            out.setdefault(index, []).append(int(m[2]))
    return out


def added_lines(tree, base, commits, files):
    """{patch index (1-based): {file: sorted final-tree lines}} of the series' commits (in order)
    on `base`; files the final tree no longer has are skipped."""
    patch_of = {c: i for i, c in enumerate(commits, 1)}
    out = {}
    for path in sorted(files):
        proc = git(tree, "blame", "--porcelain", f"{base}..{commits[-1]}", "--", path, check=False)
        if proc.returncode != 0:
            continue
        for index, lines in parse_blame(proc.stdout, patch_of).items():
            out.setdefault(index, {})[path] = sorted(set(lines))
    return out


def hunks(lines):
    """Runs of consecutive line numbers: [(first, last)]."""
    runs = []
    for n in sorted(lines):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return [tuple(r) for r in runs]


def column(record):
    """The table column of a stored count record (coverage.Collector)."""
    if record["task"] == "boot":
        return "boot"
    kind = "selftests" if record["task"].startswith("selftest:") else "workloads"
    return f"{kind}/{record['way']}"


def by_column(records):
    """{column: {file: {line: count}}} summed over each column's tasks, over each kind's
    ("workloads", "selftests": any way) and "any" over all."""
    out = {}
    for rec in records:
        col = column(rec)
        for col in dict.fromkeys((col, col.split("/")[0], "any")):
            into = out.setdefault(col, {})
            for f, lines in rec["counts"].items():
                mine = into.setdefault(f, {})
                for n, c in lines.items():
                    mine[n] = mine.get(n, 0) + c
    return out


def summarise(patches, added, records):
    """Per patch: {"index", "title", "lines" (added), "executable", "executed": {column: n},
    "no_data" (lines in files no profiled object counted)}, the never-executed hunks
    [{"patch", "title", "file", "first", "last", "executable"}] and the hunks without code (data,
    declarations: nothing of them can run), the same way. patches: series.Patch list."""
    cols = by_column(records)
    every = cols.get("any", {})
    order = [c for c in ("boot",) if c in cols] + sorted(c for c in cols if "/" in c) + ["any"]
    kinds = [c for c in KINDS if c in cols]
    rows, never, no_code = [], [], []
    for patch in patches:
        files = added.get(patch.index, {})
        row = {"index": patch.index, "title": patch.title, "lines": 0, "executable": 0, "no_data": 0,
               "executed": {c: 0 for c in order + kinds}}
        for path, lines in files.items():
            row["lines"] += len(lines)
            if path not in every:
                row["no_data"] += len(lines)
                continue
            code = [n for n in lines if n in every[path]]
            row["executable"] += len(code)
            for c in order + kinds:
                counted = cols.get(c, {}).get(path, {})
                row["executed"][c] += sum(1 for n in code if counted.get(n, 0) > 0)
            for first, last in hunks(lines):
                inside = [n for n in code if first <= n <= last]
                hunk = {"patch": patch.index, "title": patch.title, "file": path, "first": first,
                        "last": last, "executable": len(inside)}
                if not inside:
                    no_code.append(hunk)
                elif not any(every[path].get(n, 0) for n in inside):
                    never.append(hunk)
        rows.append(row)
    return {"columns": order, "patches": rows, "never_executed": never, "no_code": no_code}


def totals(summary):
    """(executed in any column, executable) over the whole series."""
    rows = summary["patches"]
    return sum(r["executed"].get("any", 0) for r in rows), sum(r["executable"] for r in rows)


def executed_in(summary, column):
    """(lines executed in `column` -- a column, a kind or "any" --, executable) over the series."""
    rows = summary["patches"]
    return sum(r["executed"].get(column, 0) for r in rows), sum(r["executable"] for r in rows)


def table(summary):
    """The per-patch table as text: executed/executable per column."""
    cols = summary["columns"]
    heads = ["#", "patch", "added", "exec.", *cols, "no data"]
    body = []
    for r in summary["patches"]:
        body.append([str(r["index"]), r["title"][:52], str(r["lines"]), str(r["executable"]),
                     *(f"{r['executed'].get(c, 0)}" for c in cols), str(r["no_data"])])
    done, code = totals(summary)
    body.append(["", "all patches", str(sum(r["lines"] for r in summary["patches"])), str(code),
                 *(str(sum(r["executed"].get(c, 0) for r in summary["patches"])) for c in cols),
                 str(sum(r["no_data"] for r in summary["patches"]))])
    widths = [max(len(row[i]) for row in [heads, *body]) for i in range(len(heads))]
    fmt = lambda row: "  ".join(cell.ljust(w) if i == 1 else cell.rjust(w)     # noqa: E731
                                for i, (cell, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(heads), *(fmt(row) for row in body)])


def never_lines(summary, kind="never_executed"):
    """One line per never-executed hunk (kind "no_code": per hunk without code):
    file:first[-last]  (n executable)  [k/N] subject."""
    n = len(summary["patches"])
    out = []
    for h in summary.get(kind, []):
        where = f"{h['file']}:{h['first']}" + (f"-{h['last']}" if h["last"] != h["first"] else "")
        out.append(f"{where}  ({h['executable']} executable)  [{h['patch']}/{n}] {h['title']}")
    return out
