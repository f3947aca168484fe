"""Experiments: what to build, boot and measure, as a small TOML file (experiments/NAME.toml).

  source = "SPEC"                  kernel source for every kernel (see harness.kernel.sources)
  series = "SPEC"                  patch series for the kernels with patched = true (harness.kernel.series)
  [build], [guest], [design]  the options of harness.options, by their field names (e.g. [guest]
                   memory_mib = 2048; [design] boots = 5, order = "random", seed = 3)
  [[kernels]]   label, patched (bool), fragments (names in kernel-config/ or paths), base
                (this kernel's base config: tinyconfig, defconfig or a file; default [build] base);
                source and series: this kernel's own (a resolved file, `resolved()`, names them for
                every kernel; a kernel with a series is patched)
  [[workloads]] name, params (table; a list value runs the workload once per value),
                repeat (how many times to run the workload, default 1)
  [[claims]]    figures the series claims, checked by the report (see harness/analysis/report.py)

Command-line flags override any part (--kernel-src, --series, --accel, ...). The experiment is
checked when loaded, so a typo fails before anything is built.
"""
import shlex
import tomllib
from dataclasses import dataclass, field, fields, make_dataclass, replace
from pathlib import Path

from harness import options, paths
from harness.errors import UserError

DEFAULT_FRAGMENTS = ["guest-base"]
EXPERIMENTS = paths.ROOT / "experiments"


@dataclass
class KernelSpec:
    label: str
    source: str
    fragments: list = field(default_factory=lambda: list(DEFAULT_FRAGMENTS))
    series: str = None          # a series spec when this kernel is patched
    base: str = None            # this kernel's base config (--base's values); None: the experiment's
    layout: int = 0             # its layout variants are pads layout, layout + 1, ... (kernel/layout.py)


@dataclass
class WorkloadSpec:
    name: str
    params: dict = field(default_factory=dict)


class ExperimentBase:
    """What to build, boot and measure. The kernels, workloads, selftests and claims are fields of
    their own; every other field is an option of harness.options (the same name, default and
    check as its flag and its key in an experiment file)."""

    def __post_init__(self):
        for option in options.OPTIONS:
            option.check(getattr(self, option.name))

    def to_dict(self):
        """Everything needed to run the experiment again (stored in metadata.json)."""
        from harness.safety import redact_all       # credentials in URLs are never stored
        data = redact_all({f.name: getattr(self, f.name) for f in fields(self)})
        data["kernels"] = redact_all([vars(k) for k in self.kernels])
        data["workloads"] = [vars(w) for w in self.workloads]
        data["path"] = str(self.path) if self.path else None
        return data

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["kernels"] = [KernelSpec(**k) for k in data["kernels"]]
        values["workloads"] = [WorkloadSpec(**w) for w in data["workloads"]]
        values["path"] = Path(data["path"]) if data.get("path") else None
        return cls(**values)

    def only(self, cell_ids):
        """The same experiment with only the named cells (harness.ci.cells: groups of workloads, each
        on every kernel; the jobs of a CI matrix)."""
        from harness.ci import cells
        return cells.select(self, cell_ids)

    def whole_experiment(self):
        """The whole experiment this is some cells of (itself when it is whole)."""
        if self.whole is None:
            return self
        return replace(self, workloads=[WorkloadSpec(**w) for w in self.whole["workloads"]],
                       selftests=list(self.whole["selftests"]), cells=None, whole=None)

    def command_line(self):
        """The harness command that repeats this experiment (a part of one: with its --cell flags)."""
        if self.cells is not None:
            return (self.whole_experiment().command_line()
                    + "".join(f" --cell {shlex.quote(c)}" for c in self.cells))
        if self.path:
            inside = Path(self.path).resolve().parent == EXPERIMENTS.resolve()
            argv = ["harness", "run", "--experiment", Path(self.path).stem if inside else str(self.path)]
            sources = {k.source for k in self.kernels}
            series = {k.series for k in self.kernels if k.series}
            if len(sources) == 1:
                argv += ["--kernel-src", sources.pop()]
            if len(series) == 1:
                argv += ["--series", series.pop()]
        else:
            argv = ["harness", "run"]
            for k in self.kernels:
                argv += ["--kernel-src", k.source, "--label", k.label]
            for frag in self.kernels[0].fragments[len(DEFAULT_FRAGMENTS):]:
                argv += ["--config", frag]
            if self.kernels[0].series:
                argv += ["--series", self.kernels[0].series]
        for w in self.workloads:            # each --param belongs to the --workload before it
            argv += ["--workload", w.name]
            for key, value in sorted(w.params.items()):
                argv += ["--param", f"{key}={value}"]
        for option in options.OPTIONS:      # every option that is set
            argv += option.argv(getattr(self, option.name))
        from harness.safety import redact
        return redact(shlex.join(argv))


STRUCTURE = [
    ("kernels", list),
    ("workloads", list, field(default_factory=lambda: [WorkloadSpec("fork-memory")])),
    ("name", str, "ad-hoc"),
    ("selftests", list, field(default_factory=list)),   # kernel vm selftests to run (workloads/selftests/mm-selftests.toml)
    ("claims", list, field(default_factory=list)),      # figures a series claims, for the report
    ("path", Path, None),           # the TOML file, when there is one
    ("cells", list, None),          # when this is some cells of an experiment (harness.ci.cells): their ids
    ("whole", dict, None),          # ... and that experiment's "workloads" (as dicts) and "selftests"
]
Experiment = make_dataclass(
    "Experiment", STRUCTURE + [(o.name, o.type, o.default) for o in options.OPTIONS],
    bases=(ExperimentBase,), namespace={"__module__": __name__})

# The default design of reproduce, nightly and calibrate (a `--boots N` of their own fixes the
# count instead): DESIGN_BOOTS per kernel, then more rounds until every headline interval is within
# ±DESIGN_UNTIL of its ratio (a 5% change then lies twice that far from 1: seen with ~98% power
# per verdict), or MAX_BOOTS have run. A host whose boots agree stops at DESIGN_BOOTS (icount's
# agree within ~1%); a noisy TCG host boots on, and where it stopped is recorded.
DESIGN_BOOTS = 5
# layout variants per kernel in that design (harness/kernel/layout.py; docs/statistics.md "Layout variants")
DESIGN_VARIANTS = 4
DESIGN_UNTIL = 0.025
MAX_BOOTS = 40        # with an --until-ci and no --max-boots


def kernel_needs(exp):
    """{CONFIG_X: [who needs it]}: the kernel options the experiment's workloads (their manifests'
    kernel_config) and selftests (their catalog entries' options) need, which every kernel of the
    experiment gets (harness/kernel/kconfig.py with_needs). Some cells of an experiment need what
    the whole one does, so that every cell builds the same kernels."""
    from harness.measure import selftests, workloads
    exp = exp.whole_experiment() if hasattr(exp, "whole_experiment") else exp
    needs = {}
    for name in dict.fromkeys(w.name for w in exp.workloads):
        for symbol in workloads.Workload.load(name).kernel_config:
            needs.setdefault(symbol, []).append(name)
    for name in exp.selftests:
        for option in selftests.spec(name).get("options", []):
            needs.setdefault(f"CONFIG_{option}", []).append(f"selftest {name}")
    return needs


def find(name_or_path):
    path = Path(name_or_path)
    if path.is_dir():
        raise UserError(f"experiment {str(name_or_path)!r} is a folder; give a TOML file or a name "
                        f"in experiments/")
    if path.exists():
        return path
    candidate = EXPERIMENTS / f"{name_or_path}.toml"
    if "/" not in str(name_or_path) and candidate.is_file():
        return candidate
    known = ", ".join(sorted(p.stem for p in EXPERIMENTS.glob("*.toml")))
    raise UserError(f"experiment '{name_or_path}' not found (known: {known})")


def read_toml(path):
    """A TOML file's tables; a file that is not UTF-8 TOML is one UserError."""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (not UTF-8); an experiment is a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read: {exc.strerror}") from None


def expand(params):
    """A parameter given as a list means one workload per value (every combination)."""
    combos = [{}]
    for key, value in params.items():
        values = value if isinstance(value, list) else [value]
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def _beside_repo(spec):
    """A relative path in an experiment file means a path in the repository."""
    if spec and not Path(spec).is_absolute() and (paths.ROOT / spec).exists():
        return str(paths.ROOT / spec)
    return spec


def load(name_or_path, kernel_src=None, series=None, **overrides):
    path = find(name_or_path)
    data = read_toml(path)
    top = options.FILE_KEYS[None] + tuple(options.Key(o.name, {bool: "bool", int: "int", float: "number"}
                                                      .get(o.type, "text"), o.help)
                                          for o in options.in_section(None))
    options.check_table(str(path), data, top)
    source = kernel_src or data.get("source")
    series_spec = series or _beside_repo(data.get("series"))
    if not source and not all(isinstance(k, dict) and k.get("source") for k in data["kernels"]):
        raise UserError(f"{path} names no kernel source; pass --kernel-src")
    kernels = []
    for i, k in enumerate(data["kernels"], 1):
        options.check_table(f"{path}: [[kernels]] entry {i}", k, options.FILE_KEYS["kernels"])
        own = _beside_repo(k.get("series"))
        if own is None and k.get("patched", False) and not series_spec:
            raise UserError(f"{path}: kernel '{k['label']}' is patched but no series is named; "
                            f"pass --series")
        kernels.append(KernelSpec(k["label"], kernel_src or k.get("source") or source,
                                  list(k.get("fragments", DEFAULT_FRAGMENTS)),
                                  (series or own) if own else
                                  (series_spec if k.get("patched", False) else None),
                                  k.get("base"), k.get("layout", 0)))
    if not kernels:
        raise UserError(f"{path} has no [[kernels]]")
    for i, c in enumerate(data.get("claims", []), 1):
        options.check_table(f"{path}: [[claims]] entry {i}", c, options.FILE_KEYS["claims"])
    workloads = []
    for i, w in enumerate(data.get("workloads", []), 1):
        _check_entry(path, i, w)
        for params in expand(dict(w.get("params", {}))):
            for _ in range(w.get("repeat", 1)):
                workloads.append(WorkloadSpec(w["name"], params))
    exp = Experiment(kernels=kernels, workloads=workloads or [WorkloadSpec("fork-memory")],
                     name=data.get("name", path.stem), path=path,
                     selftests=list(data.get("selftests", [])), claims=list(data.get("claims", [])),
                     **options.from_file(path, data))
    exp = replace(exp, **{k: v for k, v in overrides.items() if v is not None})
    design(exp, path)
    return exp


def resolved(exp):
    """The experiment as run, as an experiment file's text (saved as experiment.toml in its run):
    every kernel with its own source, series, fragments, base and layout, every workload with its
    parameters expanded, every option set. `harness run --experiment <run>/experiment.toml` runs
    it again; nothing of a multi-kernel experiment is lost (the command line names one series)."""
    import tomli_w
    from harness.safety import redact_all       # credentials in URLs are never stored
    data = {"name": exp.name}
    for option in options.OPTIONS:
        value = getattr(exp, option.name)
        if value is not None and not option.commands:
            (data.setdefault(option.section, {}) if option.section else data)[option.name] = value
    if exp.selftests:
        data["selftests"] = list(exp.selftests)
    data["kernels"] = []
    for k in exp.kernels:
        entry = {"label": k.label, "source": k.source, "fragments": list(k.fragments)}
        entry.update({key: value for key, value in (("series", k.series), ("base", k.base),
                                                     ("layout", k.layout)) if value})
        data["kernels"].append(entry)
    data["workloads"] = [{"name": w.name, "params": dict(w.params)} for w in exp.workloads]
    if exp.claims:
        data["claims"] = [dict(c) for c in exp.claims]
    return ("# the experiment as run (harness run --experiment <this file> runs it again)\n"
            + tomli_w.dumps(redact_all(data)))


def design(exp, where="the request"):
    """Contradictions between options, refused."""
    if exp.max_boots is not None and exp.boots is not None and exp.max_boots < exp.boots:
        raise UserError(f"{where}: max_boots = {exp.max_boots} is below boots = {exp.boots}; "
                        f"allowed: max_boots >= boots")


def _check_entry(path, number, w):
    """A [[workloads]] entry: a name, a table of params, a whole repeat count."""
    if not isinstance(w, dict) or not isinstance(w.get("name"), str) or not w.get("name"):
        raise UserError(f"{path}: [[workloads]] entry {number} needs a name (name = \"fork-memory\")")
    options.check_table(f"{path}: [[workloads]] entry {number} ({w['name']})", w, options.FILE_KEYS["workloads"])
