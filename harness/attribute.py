"""`harness attribute`: which patch of a series costs what (or which commit of a range).

  harness attribute --kernel-src TREE --series MBOX --workload fork-latency --param sizes_mib=512
  harness attribute --kernel-src GIT-TREE --range A..B --workload fork-latency --param sizes_mib=512
  harness attribute --resume RUN

1. Builds: stock, then every prefix of the series (patches 1..k), with the feature profile's option
   =y and =n (features/<name>/profile.toml [configs]; --feature, default: the default profile),
   in the scratch worktree and object folders `harness verify` builds in (harness.kernel.bisect) and
   through the build cache: what verify built is not built again. A fragment whose every option
   the tree does not define yet (the option before the patch that adds it) resolves to nothing
   and is left out, so configs that resolve alike are one build, one kernel and one boot.
2. Measurement: every kernel booted in one run (harness.pipeline) and the workload run with a plain
   fork and, on every kernel built with the option =y, with feature=1. Whether the feature was on
   is the activity check's state from the kernel's own counters (harness.measure.activity), never
   the switch's return code. Timing: icount where KVM is absent (one boot per kernel: a fork's instruction count
   repeats within 0.1% and boots agree), else real time with the replication design (several
   boots per kernel in alternating order).
3. The per-patch table, verdicts and step plot (harness.analysis.steps), kept in the run folder, which
   `harness report RUN` shows again.

--range A..B takes the commits of a git tree (linear history) as a series on A and searches them
by halving: the two ends are measured, then the middle of the part where the plain fork moved.

Resumable: the plan (steps and kernel labels) is in metadata.json before the first boot; --resume
builds again (cache hits) and boots only the kernels whose boots did not all finish.
"""
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from harness import cache, feature, ui, validate, verify
from harness.analysis import stats, steps
from harness.errors import BuildError, InfraError, UserError
from harness.experiment import DESIGN_BOOTS, Experiment, KernelSpec
from harness.guest import accel as accel_mod
from harness.kernel import bisect, kconfig, prepare, series as series_mod, sources
from harness.kernel.build import Build
from harness.measure.workloads import Workload
from harness.pipeline import Run
from harness.results import RunStore



def config_names(profile):
    """config ("y", "n") -> the name of its config set in harness.verify (the profile's)."""
    return {"y": profile.configs["on_name"], "n": profile.configs["off_name"]}
ICOUNT_WHY = ("icount timing: the guest's clock counts instructions (1 ns each), so a fork repeats "
              "within 0.1% and boots of one kernel agree: one boot per kernel is enough, and the "
              "forks of that boot stand for it (figures are instruction counts, not hardware time)")


def effective(fragments, tree):
    """The fragments without those whose every option the tree's Kconfig does not define."""
    return [f for f in fragments
            if not f.values or any(kconfig.kconfig_entry(tree, s) is not None for s in f.values)]


def objdir_label(names, config, profile):
    """harness.verify's label of the config set made of these fragments, else the config's own."""
    for label, fragments in verify.config_sets(profile).items():
        if list(fragments) == list(names):
            return label
    return config_names(profile)[config]


def objdir_for(work, names, configs, profile):
    """The object folder to build in: verify's folder for these fragments or, when nothing was
    built there yet, the folder of one of the configs that was built in (e.g. stock after the
    prefixes with the option =n): make then rebuilds only what differs."""
    folders = [bisect.objdir_for(work, objdir_label(names, configs[0], profile))] + \
        [bisect.objdir_for(work, config_names(profile)[c]) for c in configs]
    return next((f for f in folders if (f / "vmlinux").exists()), folders[0])


def range_inputs(tree, span, folder):
    """(source at A, series of the commits A..B as patches in folder) for --range A..B."""
    start, dots, end = span.partition("..")
    if not dots or not start or not end:
        raise UserError(f"--range wants A..B (two commits of the tree), got '{span}'")

    def git(*argv):
        try:
            proc = sources.git(tree, *argv, check=False)
        except InfraError as exc:
            raise UserError(f"--range {span}: {exc}") from None
        if proc.returncode != 0:
            raise UserError(f"--range {span}: git {argv[0]} in {tree} failed: "
                            f"{((proc.stderr or '').strip().splitlines() or ['?'])[0]}")
        return proc.stdout
    base = git("rev-parse", "--verify", f"{start}^{{commit}}").strip()
    if git("rev-list", "--merges", f"{start}..{end}").strip():
        raise UserError(f"--range {span} has merge commits: give a linear range")
    if not git("rev-list", f"{start}..{end}").strip():
        raise UserError(f"--range {span} has no commits")
    git("format-patch", "-q", "--no-signature", "-o", str(folder), f"{start}..{end}")
    return f"git+file://{Path(tree).resolve()}#{base}", series_mod.load(str(folder))


class StepTasks:
    """The task plan of an attribution's run: each step's kernel runs its own tasks (a plain fork
    and, where the kernel has the option, the feature's); the seconds each boot took are added to
    the step's times in metadata.json."""

    def __init__(self, tasks, store):
        self.tasks, self.store = tasks, store

    def of(self, label):
        return self.tasks[label]

    def done(self, label, boot, seconds):
        times = self.store.metadata["attribution"]["times"].setdefault(label, {})
        times["measure"] = round(times.get("measure", 0) + seconds, 1)
        self.store.save()
        ui.console.print(f"[{label}] boot {boot} measured in {seconds:.0f} s", markup=False)


class Attribution:
    def __init__(self, exp, kernel_src=None, series=None, span=None, metric=None, practical=None,
                 method="bh", command=None, store=None, extra=()):
        if exp.workloads is None or len(exp.workloads) != 1:
            raise UserError("attribute measures one workload: give one --workload (and its --param)")
        params = exp.workloads[0].params
        self.profile = feature.load(exp.feature) if exp.feature else feature.default()
        if not self.profile.configs:
            raise UserError(f"attribute builds every step with the feature's option on and off: the "
                            f"profile '{self.profile.name}' has no [configs]; name one with --feature")
        exp = replace(exp, feature=exp.feature or feature.spec(self.profile))
        self.configs = config_names(self.profile)
        if feature.PARAM in params or any(k in params for k in feature.LEGACY_PARAMS):
            raise UserError(f"attribute runs the workload with {feature.PARAM}=0 and, where the kernel "
                            f"has the option, {feature.PARAM}=1 itself: leave --param {feature.PARAM} out")
        if any(isinstance(v, list) for v in params.values()):
            raise UserError("attribute runs one set of parameters: give each --param once "
                            "(several sizes in one value, e.g. sizes_mib=64,512)")
        if bool(series) == bool(span):
            raise UserError("give either --series (every prefix of a series) or --range A..B")
        self.exp, self.kernel_src, self.series_spec, self.span = exp, kernel_src, series, span
        self.metric, self.practical, self.method = metric, practical, method
        self.store = store                      # made once the inputs are found
        self.command = command
        self.extra = list(extra)                # --config: fragments added to every config
        self.prebuilt, self.skip = {}, set()   # label -> (tree, Kernel); boots done
        self.failures = []                      # (label, error) of kernels that failed to boot or run
        validate.request(exp)                   # every parameter against its manifest, before any build
        self.workload = Workload.load(exp.workloads[0].name)

    @classmethod
    def resume(cls, run_dir):
        store = RunStore.open(run_dir)
        saved = store.metadata.get("attribution")
        if not saved:
            raise UserError(f"{store.dir} is not an attribution run (no 'attribution' in its metadata.json)")
        req = saved["request"]
        self = cls(Experiment.from_dict(saved["experiment"]), req["kernel_src"], req.get("series"),
                   req.get("range"), req.get("metric"), req.get("practical"), req.get("method", "bh"),
                   command=store.metadata.get("command"), store=store, extra=req.get("extra", ()))
        done = sum(b.get("status") == "ok" for info in store.metadata["kernels"].values()
                   for b in (info.get("boots") or {}).values())
        ui.console.print(f"resuming {store.dir}: {done} boots finished earlier are kept", markup=False)
        return self

    # --- plan and builds --------------------------------------------------------------------------

    def execute(self):
        with tempfile.TemporaryDirectory() as folder:
            src = self.kernel_src
            if self.span:
                src, self.series = range_inputs(self.kernel_src, self.span, folder)
            self.source = prepare.source(src)
            if not self.span:
                self.series = prepare.series(self.series_spec)
            patched, report = prepare.apply(self.series, self.source, show=False)
        ui.out(report.table())
        self.store = self.store or RunStore()
        ui.console.print(f"attribution run {self.store.id} -> {self.store.dir}", markup=False)
        self.commits = sources.git_out(patched.path, "rev-list", "--reverse",
                                       f"{self.source.commit}..HEAD").split()
        self.plan()
        if self.span:
            self.search()
        else:
            self.walk()
        return self.show()

    def walk(self):
        """Every step. With icount each step is built and measured in turn (one boot each, no
        drift to balance: figures come as the builds do); in real time every kernel is built
        first, so the boots of all of them can alternate."""
        self.build([0])
        if "stock" in self.prebuilt:
            self.design(self.prebuilt["stock"][1])
        if self.exp.timing == "icount":
            for k in range(len(self.steps)):
                self.measure([k])
        else:
            self.measure(range(len(self.steps)))

    def plan(self):
        """The steps, kept in metadata.json (what a resume and a report read)."""
        saved = self.store.metadata.get("attribution", {})
        self.steps = saved.get("steps") or (
            [{"index": 0, "title": "stock", "commit": self.source.commit, "kernels": {}}]
            + [{"index": p.index, "title": p.title, "commit": c, "kernels": {}}
               for p, c in zip(self.series.patches, self.commits)])
        self.store.update(command=self.command or self.store.metadata.get("command"), attribution={
            "request": {"kernel_src": self.kernel_src, "series": self.series_spec, "range": self.span,
                        "metric": self.metric, "practical": self.practical, "method": self.method,
                        "extra": self.extra},
            "experiment": self.exp.to_dict(), "mode": "range" if self.span else "series",
            "workload": self.workload.name, "params": self.exp.workloads[0].params,
            "metric": self.metric, "configs": list(self.configs), "steps": self.steps,
            "times": saved.get("times", {}), "timing": saved.get("timing"),
            "found": saved.get("found", {})})

    @property
    def saved(self):
        return self.store.metadata["attribution"]

    def build(self, indices):
        """Build the kernels of these steps (cache hits for what was built before)."""
        ids = series_mod.patch_ids(self.series)
        name = f"{self.source.id}-{self.series.id}"
        work = cache.root() / "bisect" / name
        with cache.locked("bisect", name):
            for k in indices:
                if self.steps[k]["kernels"] and all(x in self.prebuilt for x in self.steps[k]["kernels"].values()):
                    continue                    # built in this attribution already
                # stock too is built in the scratch worktree (same source id, same cache entry),
                # so it can take an object folder the prefixes were built in: make rebuilds what
                # the patches changed, not the whole kernel
                commit = self.commits[k - 1] if k else self.source.commit
                series_mod.worktree(self.source, work / "tree", commit)
                tree = series_mod.prefix_tree(self.source, self.series, k, work / "tree", commit) if k else \
                    sources.SourceTree(id=self.source.id, path=work / "tree", spec=self.source.spec,
                                       version=sources.kernel_version(work / "tree"), commit=commit,
                                       upstream=self.source.upstream)
                self.build_step(self.steps[k], tree, ids[:k], work)
        self.store.save()

    def build_step(self, step, tree, ids, work):
        k = step["index"]
        groups = {}
        for config, label in self.configs.items():
            wanted = [kconfig.fragment(f) for f in verify.config_sets(self.profile)[label] + self.extra]
            fragments = effective(wanted, tree.path)
            group = groups.setdefault(tuple(f.name for f in fragments), (fragments, [], []))
            group[1].append(config)
            group[2].append(wanted)
        for names, (fragments, configs, asked) in groups.items():
            label = "stock" if k == 0 else f"p{k:02d}" + (
                "" if len(configs) == len(self.configs) else "-" + "".join(configs))
            objdir = objdir_for(work, names, configs, self.profile)
            jobs = {"jobs": self.exp.jobs} if self.exp.jobs else {}
            jobs["base"] = self.exp.base          # --base: every step on the same base config
            # the same .config may be cached under the fragments as asked (e.g. verify's build
            # with '# CONFIG_X is not set' before the option exists): take that one
            build = next((b for b in (Build(tree, f, patches=list(ids), objdir=objdir, **jobs) for f in asked)
                          if b.cached()), Build(tree, fragments, patches=list(ids), objdir=objdir, **jobs))
            started = time.monotonic()
            try:
                with ui.step(f"[{label}] build {tree.id} ({', '.join(names)})") as say:
                    kernel = build.run(say)
            except (BuildError, UserError) as exc:
                first = (str(exc).splitlines() or ["?"])[0]
                ui.error(f"[{label}] {first}: this step is left out of the table")
                step.setdefault("failed", {}).update({c: first for c in configs})
                self.failures.append((label, exc))      # the exit code says so, the rest goes on
                continue
            seconds = round(time.monotonic() - started, 1)
            cached = kernel.info.get("cached", False)
            ui.console.print(f"[{label}] build {'(cached) ' if cached else ''}{seconds:.0f} s", markup=False)
            times = self.saved["times"].setdefault(label, {})
            if not times or not cached:
                times.update(build=seconds, cached=cached)
            step["kernels"].update({c: label for c in configs})
            if len(configs) > 1:
                step["shared"] = (f"{'='.join(configs)}: one kernel, the configs resolve alike "
                                  f"({', '.join(names)})")
            self.prebuilt[label] = (tree, kernel)

    # --- measurement ------------------------------------------------------------------------------

    def design(self, kernel):
        """Decide the timing mode (and so the boots per kernel) once, and say why."""
        if self.saved.get("timing"):
            return
        timing, boots = self.exp.timing, self.exp.boots
        if timing == "auto":
            chosen, reason = accel_mod.choose(self.exp.accel, kernel.image)
            timing = "real" if chosen == "kvm" else "icount"
            ui.console.print(f"timing auto: {timing} ({chosen}: {reason})", markup=False)
        if timing == "icount":
            boots = boots or 1
            ui.console.print(ICOUNT_WHY + (f"; --boots {boots} asked for" if boots > 1 else ""), markup=False)
        else:
            boots = boots or DESIGN_BOOTS
            ui.console.print(f"real-time timing: {boots} boots per kernel in alternating order; a step is "
                             f"called only when its 95% interval over boots excludes no change "
                             f"({self.method} over the steps)", markup=False)
        self.exp = replace(self.exp, timing=timing, boots=boots)
        self.saved.update(timing=timing, experiment=self.exp.to_dict())
        self.store.save()

    def tasks(self, kernel):
        """The workload with a plain fork and, on a kernel built with the option, with the feature."""
        w, on = self.workload, feature.PARAM
        params = self.exp.workloads[0].params
        tasks = [(w, w.params({**params, on: 0}))] if on in w.params() else [(w, w.params(params))]
        if on in w.params() and kconfig.parse(kernel.config).get(self.profile.proof.get("config")) == "y":
            tasks.append((w, w.params({**params, on: 1})))
        return tasks

    def measure(self, indices):
        """Build and boot the kernels of these steps; the ones measured before are kept."""
        self.build(indices)
        labels = list(dict.fromkeys(self.steps[k]["kernels"][c] for k in indices
                                    for c in self.configs if c in self.steps[k]["kernels"]))
        if not labels:
            return
        self.design(self.prebuilt[labels[0]][1])
        self.skip = self.store.finished_boots()
        labels = [x for x in labels if not all((x, n) in self.skip for n in range(1, self.exp.boots + 1))]
        if not labels:
            return
        kernels = {label: self.prebuilt[label] for label in labels}
        specs = [KernelSpec(label, self.kernel_src, [f["name"] for f in kernels[label][1].info["fragments"]],
                            self.series_spec) for label in labels]
        run = Run(replace(self.exp, kernels=specs), store=self.store, kernels=prepare.Prebuilt(kernels, self.profile),
                  tasks=StepTasks({label: self.tasks(k) for label, (_, k) in kernels.items()}, self.store),
                  checked=True)
        run.skip = self.skip
        run.execute()
        self.store.update(command=self.command or self.store.metadata.get("command"))
        self.failures += run.failures

    def records(self):
        return stats.load_runs([self.store.dir])[1]

    def search(self):
        """Halve the range where the plain fork moves, for each config."""
        last = len(self.steps) - 1
        self.measure([0, last])
        found = self.saved["found"]
        for config in self.configs:
            lo, hi = 0, last
            if not steps.moves(self.records(), self.saved, config, lo, hi, self.practical):
                found[config] = None
                continue

            def moved(a, b):
                self.measure([b])
                return steps.moves(self.records(), self.saved, config, a, b, self.practical)
            while hi - lo > 1:
                lo, hi = steps.halve(lo, hi, moved)
            found[config] = hi
        self.store.save()

    # --- output -----------------------------------------------------------------------------------

    def show(self):
        text = show(self.store.dir, self.metric, self.practical, self.method)
        ui.out(text)
        return self

    @property
    def exit_code(self):
        return self.failures[0][1].exit_code if self.failures else 0


def show(run_dir, metric=None, practical=None, method="bh"):
    """The attribution tables of a run, written into its folder too (text, CSV, step plot)."""
    metas, df = stats.load_runs([run_dir])
    att = metas[0].attribution
    profile = metas[0].profile
    run_dir = Path(stats.run_path(run_dir))
    groups = steps.table(df, att, metric or att.get("metric"), practical, method)
    times = {label: (f"build {t.get('build', 0):.0f} s{' cached' if t.get('cached') else ''}"
                     + (f", measure {t['measure']:.0f} s" if "measure" in t else ""))
             for label, t in att.get("times", {}).items()}
    same = {s["kernels"][c] for s in att["steps"] if s.get("shared") for c in s["kernels"]}
    mode = metas[0].timing
    lines = [f"attribution of {att['workload']} {att['params']} ({mode} timing; "
             f"{'binary search of a range' if att['mode'] == 'range' else 'every prefix of the series'})"]
    if mode == "icount":
        lines.append(ICOUNT_WHY)
    for s in att["steps"]:
        for config, why in s.get("failed", {}).items():
            lines.append(f"step {s['index']} [{config}] not measured: {why}")
    for params, frame in groups.items():
        lines += ["", ", ".join(f"{k}={v}" for k, v in params) or "(no parameters)", "",
                  steps.render(frame, times, same, profile), ""] + steps.summary(frame, profile)
        frame.to_csv(run_dir / f"attribution-{'-'.join(f'{k}{v}' for k, v in params)}.csv", index=False)
    inactive = steps.not_active(df, att, profile)
    if inactive:
        lines.append(inactive)
    for config, index in att.get("found", {}).items():
        where = "no change between the ends" if index is None else \
            f"first moved at step {index}: {att['steps'][index]['title']}"
        lines.append(f"binary search, {steps.config_name(config, profile)}, plain fork: {where}")
    picture = steps.plot(groups, run_dir / "attribution.png", profile)
    if picture:
        lines.append(f"step plot: {picture}")
    text = "\n".join(lines)
    (run_dir / "attribution.txt").write_text(text + "\n")
    return text
