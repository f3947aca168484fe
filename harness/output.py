"""What a run prints, apart from measuring: a workload's per-kernel table as its task finishes,
and at the end the selftest diff, the summary and the comparison tables (each saved in the run
folder too). The pipeline hands records over; nothing here boots or measures."""
from harness import feature, ui
from harness.analysis import tables          # its pandas loads only when a table is made
from harness.measure import activity, coverage, selftests


class Output:
    def __init__(self, store, profile=None):
        self.store = store
        self.profile = profile or feature.load(feature.NONE)

    def kernel_table(self, label, workload, records):
        """The table the workload's manifest names (`table`), printed and saved per kernel."""
        kind = workload.manifest.get("table")
        if kind not in tables.KERNEL_TABLES or not records:
            return                              # "headline": one table at the end (compare)
        ui.out(tables.render(kind, records, title=f"{label}: {workload.name}, {activity.kind(records, self.profile)}"))
        ui.out()
        name = f"{workload.name}-{self.profile.name}" if records[0].get(feature.REQUESTED) else workload.name
        tables.save_kernel_table(kind, records, self.store.kernel_dir(label), name)

    def selftest_diff(self, results, stock):
        """The selftests' case x kernel/way table; the cases that fail where stock's plain run
        passes (also kept in metadata.json)."""
        ui.out(f"kernel selftests (case x kernel/way; '!!' = fails where {stock}/plain passes):")
        ui.out(selftests.render(results, stock=stock))
        ui.out()
        table = selftests.table(results)
        table.to_csv(self.store.dir / "selftests.csv")
        new = selftests.new_failures(table, stock) if (stock, "plain") in table.columns else []
        self.store.update(selftest_new_failures=new)
        return new

    def end(self, labels, workloads):
        """The summary of the run's workloads and, with two kernels or two tasks, the comparison
        table of every workload whose manifest asks for one."""
        from harness.analysis import summary
        names = list(dict.fromkeys(w.name for w in workloads))
        try:
            summary.show(self.store.dir, names, ui.out)
        except coverage.Untimed as exc:          # a run of coverage kernels only: nothing to time
            ui.out(f"no timing summary: {exc}")
            return
        if len(labels) < 2 and len(workloads) < 2:
            return
        shown = {w.name: w.manifest["table"] for w in workloads
                 if w.manifest.get("table") in tables.COMPARISONS}
        for name, kind in shown.items():
            rows = [r for label in labels for r in self.store.records(label, name)]
            if not rows:
                continue
            table = tables.comparison(kind, rows, self.profile)
            tables.save(table, self.store.dir, f"{name}-comparison")
            ui.out(f"{name}, all kernels (medians; {self.profile.title or 'the feature'} judged from the "
                   f"kernel's counters, not from the switch):")
            ui.out(table.to_string())
            ui.out()
