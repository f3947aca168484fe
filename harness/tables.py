"""Tables of results (pandas): what a run prints and saves as Markdown and CSV."""
import pandas as pd


def fork_memory(records):
    """Parent/child VmRSS and VmPTE (medians over repetitions) and the PageTables delta at fork."""
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


def save_fork_memory(table, extra, folder):
    """fork-memory.csv and fork-memory.md: one row a metric, with its unit."""
    rows = [{"metric": name, "parent": int(row["parent"]), "child": int(row["child"]), "unit": "kB"}
            for name, row in table.iterrows()]
    rows.append({"metric": "PageTables delta at fork", "parent": extra["PageTables delta at fork"],
                 "child": None, "unit": "kB"})
    rows.append({"metric": "fork time (median)", "parent": round(extra["fork time (median)"], 4),
                 "child": None, "unit": "ms"})
    full = pd.DataFrame(rows, dtype=object).set_index("metric")
    full.to_csv(folder / "fork-memory.csv")
    (folder / "fork-memory.md").write_text(full.to_markdown() + "\n")
