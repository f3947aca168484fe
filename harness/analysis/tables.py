"""Tables of results (pandas): what a run prints and saves as Markdown and CSV.

pandas loads when a table is made, not when a manifest's table is checked (harness run's flags
and refusals stay quick)."""
from harness.errors import InfraError, UserError
from harness import feature


def fork_memory(records):
    """Parent/child VmRSS and VmPTE (medians over repetitions) and the PageTables delta at fork."""
    import pandas as pd
    df = pd.DataFrame(records)
    med = df.median(numeric_only=True)
    table = pd.DataFrame(
        {"parent": [med["parent_vmrss_kb"], med["parent_vmpte_kb"]],
         "child": [med["child_vmrss_kb"], med["child_vmpte_kb"]]},
        index=["VmRSS", "VmPTE"]).astype(int)
    extra = {
        "PageTables delta at fork": int(med["pagetables_delta_kb"]),
        "fork time (median)": float(med["fork_ns"]) / 1e6,
        "repetitions": len(df),
    }
    return table, extra


def render_fork_memory(table, extra, title=""):
    width = max(len(f"{v} kB") for v in table.to_numpy().ravel()) + 2
    lines = [title] if title else []
    lines.append(" " * 8 + "".join(f"{c:>{width}}" for c in table.columns))
    for name, row in table.iterrows():
        lines.append(f"{name + ':':<8}" + "".join(f"{f'{v} kB':>{width}}" for v in row))
    lines.append(f"PageTables delta at fork: {extra['PageTables delta at fork']} kB")
    lines.append(f"fork() time: {extra['fork time (median)']:.3f} ms (median of {extra['repetitions']})")
    return "\n".join(lines)


def save_fork_memory(table, extra, folder, name="fork-memory"):
    """NAME.csv and NAME.md: one row a metric, with its unit."""
    import pandas as pd
    rows = [{"metric": name, "parent": int(row["parent"]), "child": int(row["child"]), "unit": "kB"}
            for name, row in table.iterrows()]
    rows.append({"metric": "PageTables delta at fork", "parent": extra["PageTables delta at fork"],
                 "child": None, "unit": "kB"})
    rows.append({"metric": "fork time (median)", "parent": round(extra["fork time (median)"], 4),
                 "child": None, "unit": "ms"})
    save(pd.DataFrame(rows, dtype=object).set_index("metric"), folder, name)


COLUMNS = {"parent_vmrss_kb": "parent VmRSS kB", "child_vmrss_kb": "child VmRSS kB",
           "parent_vmpte_kb": "parent VmPTE kB", "child_vmpte_kb": "child VmPTE kB",
           "pagetables_delta_kb": "PageTables delta kB"}


def fork_memory_comparison(records, profile=None):
    """One row per kernel and kind of fork, with the feature's state on every row."""
    import pandas as pd
    profile = profile or feature.load()
    df = pd.DataFrame(records)
    df["kind"] = [profile.label(r.get(feature.STATE, feature.OFF)) for r in records]
    df[feature.STATE] = df.get(feature.STATE, feature.OFF)
    order = list(dict.fromkeys(df["kernel"]))
    grouped = df.groupby(["kernel", "kind", feature.STATE], sort=False)
    table = grouped[list(COLUMNS)].median().round().astype(int).rename(columns=COLUMNS)
    table["fork ms"] = (grouped["fork_ns"].median() / 1e6).round(3)
    table["n"] = grouped.size()
    return table.reindex(order, level="kernel")


def save(table, folder, name):
    try:
        table.to_csv(folder / f"{name}.csv")
        (folder / f"{name}.md").write_text(table.to_markdown() + "\n")
    except OSError as exc:
        raise InfraError(f"cannot write {name} tables in {folder}: {exc.strerror}") from None


# The tables a workload's manifest may name (`table = "..."`): how `harness run` prints and saves
# one kernel's records of it, and how it sets the kernels side by side.
KERNEL_TABLES = {"fork-memory": (fork_memory, render_fork_memory, save_fork_memory)}
COMPARISONS = {"fork-memory": fork_memory_comparison}
HEADLINE = "headline"       # the run's closing summary (analysis/summary.py), for any workload


def known(kind):
    if kind == HEADLINE:
        return None
    if kind not in KERNEL_TABLES:
        raise UserError(f"unknown table '{kind}' (known: {', '.join(sorted([*KERNEL_TABLES, HEADLINE]))})")
    return KERNEL_TABLES[kind]


def render(kind, records, title=""):
    make, render_table, _ = known(kind)
    return render_table(*make(records), title=title)


def save_kernel_table(kind, records, folder, name):
    make, _, save_table = known(kind)
    save_table(*make(records), folder, name)


def comparison(kind, records, profile=None):
    return COMPARISONS[kind](records, profile)
