"""`harness verify`: what a reviewer asks of a series, in one command.

  1. apply: the series on the source, a table of patch -> applied / offset / fuzz / failed
  2. checkpatch: the tree's scripts/checkpatch.pl on every patch (errors, warnings, checks)
  3. bisect: every prefix of the series built with the feature profile's option =y and =n (its
     [configs]; features/<name>/profile.toml), and with the coverage
     config (the options gating the series' files and #if blocks, derived from the series: reach),
     incrementally; per patch and config, the changed files and hunks each build compiled
  4. kernels: stock, patched with the option on, and the debug variant (DEBUG_VM, PAGE_TABLE_CHECK,
     lockdep, ...) -- or the coverage config on stock and patched -- each booted and run through
     the workloads with the kernel log checked after every one, and the kernel's own mm
     selftests (the profile's, and those of the areas the series touches: workloads/selftests/
     mm-selftests.toml) run plainly and under the profile's launcher
  5. the tables, the selftest diff against stock, and a verdict line per section

Every section runs even when an earlier one found problems (a series that does not apply still gets
checkpatch and the verdict, then its apply error); the exit code is non-zero when any did.
"""
import json
import re
from dataclasses import dataclass

from pathlib import Path

from harness import cache
from harness.kernel import (bisect, checkpatch, gcov, kconfig, linecov, prepare, reach, series as series_mod,
                            sources)
from harness.measure import activity, coverage, selftests
from harness import feature as feature_mod, ui, validate
from harness.errors import HarnessError, UserError
from harness.experiment import Experiment, KernelSpec, WorkloadSpec
from harness.pipeline import Run

BASE = ["guest-base", "selftests"]
COVERAGE = "coverage"
GCOV = "gcov"           # the gcov fragment derived from the series (harness.kernel.gcov)
PLAIN_KERNELS = {"stock": {"patched": False}, "patched": {"patched": True},
                 "patched-debug": {"patched": True, "fragments": ["debug"]}}


def config_sets(profile):
    """Configs every patch is built with (--bisect-configs): the feature profile's option on and
    off (its [configs] on_name/off_name), "base", and "coverage": the fragment derived from the
    series (reach.derive) on BASE + the option on."""
    return {**profile.config_sets(BASE), "base": BASE, COVERAGE: BASE + profile.fragments("on")}


def kernel_sets(profile):
    """Kernels booted and measured (--kernels): label -> (patched?, fragments), from the profile's
    [verify] kernels ("on" stands for its option's fragments); COVERAGE in a kernel's fragments
    stands for the derived fragment."""
    on = profile.fragments("on")
    specs = {**PLAIN_KERNELS, **profile.verify.get("kernels", {})}
    out = {label: (spec.get("patched", False),
                   BASE + [g for f in spec.get("fragments", []) for g in (on if f == "on" else [f])])
           for label, spec in specs.items()}
    out.update({"stock-coverage": (False, BASE + [COVERAGE]), "coverage": (True, BASE + on + [COVERAGE]),
                GCOV: (True, BASE + on + [COVERAGE, GCOV])})
    return out


def bisect_verdict(results):
    """(ok, summary) of the per-patch builds (bisect.build_each_patch results)."""
    errors = [r for r in results if r["status"] == "error"]
    ok = sum(r["status"] == "ok" for r in results)
    refused = [r for r in results if r["status"] == "config"]
    last = max(r["index"] for r in results)

    def before_the_option(r):
        # e.g. the feature's option =y before the patch that adds it: not built, not an error.
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
    configs: list = None             # default: the profile's [verify] default_configs
    kernels: list = None             # default: the profile's [verify] default_kernels
    boot: bool = True
    selftest_source: str = None      # a tree to take the selftests from (too old a kernel tree)
    mib: int = 1024
    objects_only: bool = False       # bisect compiles only the series' objects, no kernels
    selftests: str = "auto"          # auto (the touched areas'), all, or a comma list (+ the profile's)
    feature: str = None              # the feature profile (default: the default profile)

    def __post_init__(self):
        self.profile = feature_mod.load(self.feature) if self.feature else feature_mod.default()
        self.CONFIGS, self.KERNELS = config_sets(self.profile), kernel_sets(self.profile)
        self.configs = self.configs or self.profile.verify.get("default_configs", ["base", COVERAGE])
        self.kernels = self.kernels or self.profile.verify.get("default_kernels", ["stock", "patched"])
        unknown = [c for c in self.configs if c not in self.CONFIGS]
        if unknown:
            raise UserError(f"unknown bisect config {unknown} (known: {', '.join(self.CONFIGS)})")
        unknown = [k for k in self.kernels if k not in self.KERNELS]
        if unknown:
            raise UserError(f"unknown kernel variant {unknown} (known: {', '.join(self.KERNELS)})")
        validate.source(self.kernel_src, "--kernel-src")     # the request, before any build
        validate.series(self.series, "--series")
        if self.selftest_source:
            validate.source(self.selftest_source, "--selftest-source")
        validate.workload(self.profile.verify.get("workload", "fork-memory"), {"mib": self.mib})
        if self.selftests not in ("auto", "all"):
            unknown = [t for t in self.selftests.split(",") if t not in validate.selftest_names()]
            if unknown:
                raise UserError(f"--selftests: unknown {unknown} (known: auto, all, "
                                f"{', '.join(validate.selftest_names())})")
        validate.results_folder()
        self.problems = []
        self.sections = {}
        self.derivation = None
        self.coverage_fragment = None
        self.gcov_fragment = None
        self.lines = None               # (patches, {patch: {file: lines}}): the series' lines, final tree
        self.executed = None            # linecov.summarise of the coverage kernels' counts
        self.reached = {}

    def section(self, name, ok, summary, covered=True):
        """ok: True or False (a failure: exit code 1); an ok whose evidence did not reach all of
        the series' code (covered false) is None: partial, printed PART, never "ok"."""
        ok = bool(ok) and (None if not covered else True)
        self.sections[name] = (ok, summary)
        if ok is False:
            self.problems.append(name)

    def execute(self):
        source = prepare.source(self.kernel_src)
        series = prepare.series(self.series)
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
        frag = self.derive(series, source)      # what gates the series' code: for every section
        if self.bisect:
            self.build_each(series, source, frag)
        if self.boot:
            self.run_kernels(source)
        self.verdict()
        return self

    def verdict(self):
        ui.out("verdict:")
        for name, (ok, summary) in self.sections.items():
            ui.out(f"  {({True: 'ok  ', None: 'PART'}).get(ok, 'FAIL')}  {name}: {summary}")

    @property
    def exit_code(self):
        return 1 if self.problems else 0

    def apply(self, series, source):
        try:
            _, report = prepare.apply(series, source, show=False)
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

    def derive(self, series, source):
        """The series' Derivation (reach.derive) and its coverage fragment, written to the cache."""
        with ui.step("which options gate the series' code") as say:
            patched, _ = series_mod.apply(series, source)
            commits = sources.git_out(patched.path, "rev-list", "--reverse",
                                      f"{source.commit}..HEAD").split()
            derivation = reach.derive(series.patches, patched.path, commits, extra_for=_test_options)
            self.lines = (series.patches, linecov.added_lines(patched.path, source.commit, commits,
                                                              derivation.files))
            text = derivation.fragment(f"coverage config for series {series.id} on {source.id}")
            path = _cached_fragment("coverage", text)
            self.gcov_fragment = _cached_fragment(GCOV, gcov.fragment_text(
                derivation.files, f"gcov kernel for series {series.id} on {source.id}"))
            say(derivation.summary())
        for symbol, why in derivation.chosen.items():
            ui.out(f"  CONFIG_{symbol}=y  ({why})")
        if derivation.unknown:
            ui.out(f"  gating symbols no Kconfig defines: {', '.join(derivation.unknown)}")
        self.derivation, self.coverage_fragment = derivation, path
        return kconfig.fragment(path)

    def objects_of(self, derivation):
        """--objects-only: the series' .c files' objects (None: build whole kernels)."""
        if not self.objects_only:
            return None
        def built(config_text):         # the objects the .config puts in the kernel
            config = kconfig.parse(config_text)
            return sorted(re.sub(r"\.[cS]$", ".o", p) for p in derivation.makefile
                          if reach.file_compiled(p, config, derivation.makefile)[0])
        return built

    def build_each(self, series, source, frag):
        derivation = self.derivation
        sets = {label: [kconfig.fragment(f) for f in self.CONFIGS[label]] + ([frag] if label == COVERAGE else [])
                for label in self.configs}
        reached = {}
        with ui.step(f"build every patch with {', '.join(sets)}") as say:
            def finished(outcome):          # one line per finished build
                ui.console.print(f"  {bisect.describe(outcome)}", markup=False)
                if outcome["status"] == "ok":       # read the object folder before the next build
                    config = outcome.get("config_text") or (Path(outcome["kernel"]) / "config").read_text()
                    reached[(outcome["index"], outcome["config"])] = reach.reached(
                        derivation, outcome["index"], config, outcome["objdir"], outcome.get("objects"))
            # the coverage config builds from patch 1 on: without the option's fragment until it exists
            results = bisect.build_each_patch(source, series, sets, jobs=self.jobs, progress=say,
                                              on_outcome=finished,
                                              optional=tuple(self.profile.fragments("on")) if COVERAGE in sets else (),
                                              objects=self.objects_of(derivation))
        ui.out(bisect.table(results))
        ui.out("changed code compiled, per patch and config (files and hunks of patches 1..k):")
        ui.out(reach.table(series.patches, reached))
        _, hunks = reach.never(reached)
        if hunks:
            ui.out(f"hunks no config compiled ({len(hunks)}):")
            ui.out("\n".join(f"  {line}" for line in reach.hunk_lines(hunks)))
        ok, detail = bisect_verdict(results)
        whole, reach_detail = reach.verdict(reached)
        self.reached = reached
        self.section("bisect", ok, f"{detail}; {reach_detail}", covered=whole)

    def code_in(self, run):
        """What of the series' code the booted patched kernels compiled (changed lines executed
        are not measured: say so rather than let "clean" stand for it)."""
        k = max(self.derivation.files.values(), default=0)
        parts = []
        for label in self.kernels:
            key = run.store.metadata["kernels"].get(label, {}).get("build_key")
            config = cache.entry("builds", key) / "config" if key and self.KERNELS[label][0] else None
            if config and config.exists():
                fc, fn, hc, hn = reach.counts(reach.reached(self.derivation, k, config.read_text()))
                parts.append(f"{label} {fc}/{fn} files, {hc}/{hn} hunks")
        return ("; series code compiled in them: " + ", ".join(parts) if parts else "") + "; " + self.lines_said()

    def lines_said(self):
        """The changed lines executed, as the verdict states them."""
        if not self.executed:
            return "changed lines executed: not measured (no gcov kernel: --kernels ...,gcov)"
        done, code = linecov.totals(self.executed)
        cold = self.unreached()
        return (f"changed lines executed: {done}/{code} executable ({self.executed['kernel']} kernel)"
                + (f", none of patch {', '.join(map(str, cold))}'s" if cold else ""))

    def unreached(self, column="any"):
        """The patches with executable changed lines of which none ran (in `column`)."""
        return [r["index"] for r in (self.executed or {}).get("patches", [])
                if r["executable"] and not r["executed"].get(column)]

    def count_lines(self, run):
        """The per-patch table of changed lines executed, from the coverage kernels' counts
        (printed, and saved in the run as line-coverage.json)."""
        labels = [label for label in self.kernels if any(run.store.kernel_dir(label).glob("gcov-*.json"))]
        if not labels or not self.lines:
            return
        label = labels[0]
        summary = linecov.summarise(self.lines[0], self.lines[1], coverage.stored(run.store.dir, label))
        summary["kernel"] = label
        self.executed = summary
        ui.out(f"changed lines executed, per patch (gcov kernel {label}; executed / executable lines "
               f"added or changed by each patch, per column):")
        ui.out(linecov.table(summary))
        never = linecov.never_lines(summary)
        ui.out(f"changed code never executed ({len(never)} hunks):" if never else "every changed hunk ran")
        ui.out("\n".join(f"  {line}" for line in never))
        data = linecov.never_lines(summary, "no_code")
        if data:
            ui.out(f"changed code with no line gcov counts (data, declarations, code the compiler "
                   f"folded or this config leaves out; {len(data)} hunks):")
            ui.out("\n".join(f"  {line}" for line in data))
        (run.store.dir / "line-coverage.json").write_text(json.dumps(summary, indent=1) + "\n")

    def selftests_to_run(self, source):
        """The profile's selftests ([selftests] always), then those of the areas the series touches
        (or those asked for) that the tree holds; [] with the section saying why when it holds none."""
        tree = selftests.test_tree(self.selftest_source) if self.selftest_source else source.path
        always = list(self.profile.selftests.get("always", []))
        folder = selftests.selftest_dir(tree, always[0] if always else None)
        if not folder:
            self.section("selftests", True, f"not run: {source.id} has no {', '.join(always)} selftest; "
                                            f"pass --selftest-source with a newer tree (e.g. debian:linux-source-6.12)")
            return []
        chosen = (selftests.for_paths(self.derivation.files) if self.selftests == "auto"
                  else list(selftests.catalog()) if self.selftests == "all" else self.selftests.split(","))
        tests = always + [t for t in chosen if t not in always and selftests.selftest_dir(tree, t)]
        missing = [t for t in chosen if t not in tests]
        if missing:
            ui.out(f"selftests {', '.join(missing)}: not in {tree}")
        return tests

    def run_kernels(self, source):
        kernels = [KernelSpec(label, self.kernel_src,
                              [{COVERAGE: str(self.coverage_fragment), GCOV: str(self.gcov_fragment)}.get(f, f)
                               for f in self.KERNELS[label][1]],
                              self.series if self.KERNELS[label][0] else None) for label in self.kernels]
        tests = self.selftests_to_run(source)
        name = self.profile.verify.get("workload", "fork-memory")
        workloads = [WorkloadSpec(name, {"mib": self.mib, feature_mod.PARAM: on})
                     for on in ((0, 1) if self.profile.has_switch else (0,))]
        exp = Experiment(kernels=kernels, workloads=workloads, name="verify", accel=self.accel,
                         jobs=self.jobs, selftests=tests, selftest_source=self.selftest_source,
                         feature=feature_mod.spec(self.profile))
        run = Run(exp).execute()
        meta = run.store.metadata["kernels"]
        failed = [label for label, info in meta.items() if info.get("status") != "ok"]
        self.count_lines(run)
        # clean logs say nothing of code that never ran: not "ok" when a patch's code did not
        self.section("kernels", not failed, ("all booted, workloads and kernel logs clean" if not failed
                     else f"problems in {', '.join(failed)} (see {run.store.dir})")
                     + self.code_in(run), covered=not self.unreached())
        active = sorted({label for label, info in meta.items() for c in info.get("tasks", [])
                         if activity.ACTIVE in c.get(feature_mod.STATE, [])})
        on = self.profile.fragments("on")
        wanted = [k for k in self.kernels if on and set(on) <= set(self.KERNELS[k][1])]
        if wanted:
            self.section(f"{self.profile.title or self.profile.name} active", set(wanted) <= set(active),
                         f"proven on {', '.join(active) or 'no kernel'} (expected on {', '.join(wanted)})")
        if run.selftest_results:
            ok, text = selftests_summary(run.selftest_results, run.selftest_new_failures)
            cold = self.unreached("selftests")
            if self.executed:
                done, code = linecov.executed_in(self.executed, "selftests")
                text += (f"; changed lines they executed: {done}/{code} ({self.executed['kernel']} kernel)"
                         + (f", none of patch {', '.join(map(str, cold))}'s" if cold else ""))
            # no new failure says nothing of the patches whose code no selftest ran: PART then
            self.section("selftests", ok, text, covered=not (self.executed and cold))
        ui.out(f"results: {run.store.dir}")
        self.run = run


def _cached_fragment(kind, text):
    """A fragment derived from the series, kept in the cache by its content."""
    path = cache.root() / "coverage" / f"{kind}-{cache.digest(text, length=12)}.config"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(text)
    return path


def _test_options(files):
    """The options the selftests of the touched areas need (workloads/selftests/mm-selftests.toml)."""
    return [o for t in selftests.for_paths(files) for o in selftests.spec(t).get("options", [])]


def selftests_summary(results, new):
    """(ok, text) of the selftests line: how many tests and runs (kernel x way) there were, the new
    failures against stock, and every run the guest died in, with the case it was in."""
    died = [r for r in results if r.get("crashed")]
    tests = list(dict.fromkeys(r.get("test") for r in results))
    text = (f"{len(new)} new failures against stock" if new else "no new failures against stock") \
        + f" ({len(tests)} selftests, {len(results)} runs of kernel x way, " \
        + f"{sum(len(r['cases']) for r in results)} case results: {', '.join(tests)})"
    if died:
        text += f"; {len(died)} crashed: " + ", ".join(f"{r['kernel']}/{r['way']} {r['test']} in '{r['crashed_in']}'"
                                                     for r in died)
    return not new and not died, text
