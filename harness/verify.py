"""`harness verify`: what a reviewer asks of a series, in one command.

  1. apply: the series on the source, a table of patch -> applied / offset / fuzz / failed
  2. checkpatch: the tree's scripts/checkpatch.pl on every patch (errors, warnings, checks)
  3. bisect: every prefix of the series built with CONFIG_COW_PTE=y and =n, incrementally
  4. kernels: stock, patched with COW PTE, and the debug variant (DEBUG_VM, PAGE_TABLE_CHECK,
     lockdep, ...), each booted and run through the workloads with the kernel log checked after
     every one, and the kernel's own vm selftest `cow` run plainly and under the COW PTE launcher
  5. the tables, the selftest diff against stock, and a verdict line per section

Every section runs even when an earlier one found problems (a series that does not apply still gets
checkpatch and the verdict, then its apply error); the exit code is non-zero when any did.
"""
from dataclasses import dataclass, field

from harness.kernel import bisect, checkpatch, kconfig, series as series_mod, sources
from harness.measure import activity, selftests
from harness import ui, validate
from harness.errors import HarnessError, UserError
from harness.experiment import Experiment, KernelSpec, WorkloadSpec
from harness.pipeline import Run

BASE = ["guest-base", "selftests"]
# configs every patch is built with (--bisect-configs)
CONFIGS = {"COW_PTE=y": BASE + ["cow-pte"], "COW_PTE=n": BASE + ["no-cow-pte"], "base": BASE}
# kernels booted and measured (--kernels): label -> (patched?, fragments)
KERNELS = {"stock": (False, BASE), "cow-pte": (True, BASE + ["cow-pte"]),
           "debug": (True, BASE + ["cow-pte", "debug"]), "patched": (True, BASE),
           "patched-debug": (True, BASE + ["debug"])}


def bisect_verdict(results):
    """(ok, summary) of the per-patch builds (bisect.build_each_patch results)."""
    errors = [r for r in results if r["status"] == "error"]
    ok = sum(r["status"] == "ok" for r in results)
    refused = [r for r in results if r["status"] == "config"]
    last = max(r["index"] for r in results)

    def before_the_option(r):
        # e.g. CONFIG_COW_PTE=y before the patch that adds the option: not built, not an error.
        # A refusal after that config built once, or at the last patch, is a real problem.
        return r["index"] < last and not any(
            o["config"] == r["config"] and o["index"] < r["index"] and o["status"] == "ok"
            for o in results)
    early = [r for r in refused if before_the_option(r)]
    late = [r for r in refused if not before_the_option(r)]
    detail = f"{ok}/{len(results)} builds ok"
    if early:
        where = ", ".join(f"patch {r['index']} [{r['config']}]" for r in early)
        detail += f", {len(early)} not built (a requested option is not there yet: {where})"
    if late:
        where = ", ".join(f"patch {r['index']} [{r['config']}]" for r in late)
        detail += f"; {len(late)} refused by olddefconfig where the option should be: {where}"
    if errors:
        detail += f"; first error at patch {errors[0]['index']} [{errors[0]['config']}]"
    return not errors and not late, detail


@dataclass
class Verify:
    kernel_src: str
    series: str
    accel: str = "auto"
    jobs: int = None
    bisect: bool = True
    configs: list = field(default_factory=lambda: ["COW_PTE=y", "COW_PTE=n"])
    kernels: list = field(default_factory=lambda: ["stock", "cow-pte", "debug"])
    boot: bool = True
    selftest_source: str = None      # a tree to take the cow selftest from (6.1 has none)
    mib: int = 1024

    def __post_init__(self):
        unknown = [c for c in self.configs if c not in CONFIGS]
        if unknown:
            raise UserError(f"unknown bisect config {unknown} (known: {', '.join(CONFIGS)})")
        unknown = [k for k in self.kernels if k not in KERNELS]
        if unknown:
            raise UserError(f"unknown kernel variant {unknown} (known: {', '.join(KERNELS)})")
        validate.source(self.kernel_src, "--kernel-src")     # the request, before any build
        validate.series(self.series, "--series")
        if self.selftest_source:
            validate.source(self.selftest_source, "--selftest-source")
        validate.workload("fork-memory", {"mib": self.mib})
        validate.results_folder()
        self.problems = []
        self.sections = {}

    def section(self, name, ok, summary):
        self.sections[name] = (ok, summary)
        if not ok:
            self.problems.append(name)

    def execute(self):
        with ui.step(f"kernel source {self.kernel_src}") as say:
            source = sources.resolve(self.kernel_src)
            say(source.id)
        with ui.step(f"series {self.series}") as say:
            series = series_mod.load(self.series)
            say(f"{len(series.patches)} patches, v{series.version}, based on {series.base or '?'}")
        try:
            self.apply(series, source)
        except UserError:
            # checkpatch reads the patch files, not the tree: the reviewer still gets it, and
            # the apply error stays the one reported
            try:
                self.checkpatch(series, source)
            except HarnessError as exc:
                self.section("checkpatch", False, f"not run: {str(exc).splitlines()[0]}")
            for name, wanted in (("bisect", self.bisect), ("kernels", self.boot)):
                if wanted:
                    self.section(name, False, "not run: the series does not apply")
            self.verdict()
            raise
        self.checkpatch(series, source)
        if self.bisect:
            self.build_each(series, source)
        if self.boot:
            self.run_kernels(source)
        self.verdict()
        return self

    def verdict(self):
        ui.out("verdict:")
        for name, (ok, summary) in self.sections.items():
            ui.out(f"  {'ok  ' if ok else 'FAIL'}  {name}: {summary}")

    @property
    def exit_code(self):
        return 1 if self.problems else 0

    def apply(self, series, source):
        try:
            with ui.step(f"apply {len(series.patches)} patches"):
                _, report = series_mod.apply(series, source)
            ui.out(report.table())
            moved = sum(r.status != "applied" for r in report.results)
            self.section("apply", True, f"{len(report.results)} applied"
                         + (f", {moved} with offset or fuzz" if moved else ""))
        except UserError as exc:
            self.section("apply", False, str(exc).splitlines()[0])
            raise

    def checkpatch(self, series, source):
        with ui.step("checkpatch.pl on every patch"):
            results = checkpatch.run(source.path, series)
        ui.out(checkpatch.table(results))
        errors = sum(r["errors"] for r in results)
        warnings = sum(r["warnings"] for r in results)
        self.section("checkpatch", errors == 0, f"{errors} errors, {warnings} warnings")

    def build_each(self, series, source):
        sets = {label: [kconfig.fragment(f) for f in CONFIGS[label]] for label in self.configs}
        with ui.step(f"build every patch with {', '.join(sets)}") as say:
            def finished(outcome):          # one line per finished build
                ui.console.print(f"  {bisect.describe(outcome)}", markup=False)
            results = bisect.build_each_patch(source, series, sets, jobs=self.jobs, progress=say,
                                              on_outcome=finished)
        ui.out(bisect.table(results))
        self.section("bisect", *bisect_verdict(results))

    def run_kernels(self, source):
        kernels = [KernelSpec(label, self.kernel_src, KERNELS[label][1],
                              self.series if KERNELS[label][0] else None) for label in self.kernels]
        tests = ["cow"]
        tree = selftests.test_tree(self.selftest_source) if self.selftest_source else source.path
        if not selftests.selftest_dir(tree):
            tests = []
            self.section("selftests", True, f"not run: {source.id} has no cow selftest (Linux 6.2+); "
                                            f"pass --selftest-source with a 6.2+ tree (e.g. debian:linux-source-6.12)")
        workloads = [WorkloadSpec("fork-memory", {"mib": self.mib, "cow_pte": 0}),
                     WorkloadSpec("fork-memory", {"mib": self.mib, "cow_pte": 1})]
        exp = Experiment(kernels=kernels, workloads=workloads, name="verify", accel=self.accel,
                         jobs=self.jobs, selftests=tests, selftest_source=self.selftest_source)
        run = Run(exp).execute()
        meta = run.store.metadata["kernels"]
        failed = [label for label, info in meta.items() if info.get("status") != "ok"]
        self.section("kernels", not failed, "all booted, workloads and kernel logs clean" if not failed
                     else f"problems in {', '.join(failed)} (see {run.store.dir})")
        active = sorted({label for label, info in meta.items() for c in info.get("tasks", [])
                         if activity.ACTIVE in c.get("cow_pte", [])})
        wanted = [k for k in self.kernels if "cow-pte" in KERNELS[k][1]]
        if wanted:
            self.section("COW PTE active", set(wanted) <= set(active),
                         f"proven on {', '.join(active) or 'no kernel'} (expected on {', '.join(wanted)})")
        if run.selftest_results:
            new = run.selftest_new_failures
            self.section("selftests", not new, f"{len(new)} new failures against stock" if new
                         else "no new failures against stock")
        ui.out(f"results: {run.store.dir}")
        self.run = run
