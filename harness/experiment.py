"""Experiments: what to build, boot and measure, as a small TOML file (experiments/NAME.toml).

  source = "SPEC"                  kernel source for every kernel (see harness.kernel.sources)
  series = "SPEC"                  patch series for the kernels with patched = true (harness.kernel.series)
  [guest]  accel, memory_mib, cpus, image, boot_timeout
  [design] boots (per kernel), order (alternating, interleaved, random, sequential), seed,
           until (more boots until every interval is within +-until), max_boots
  [[kernels]]   label, patched (bool), fragments (names in kernel-config/ or paths)
  [[workloads]] name, params (table; a list value runs the workload once per value),
                repeat (how many times to run the workload, default 1)
  [[claims]]    figures the series claims, checked by the report (see harness/analysis/report.py)

Command-line flags override any part (--kernel-src, --series, --accel, ...). The experiment is
checked when loaded, so a typo fails before anything is built.
"""
import shlex
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from harness import paths
from harness.errors import UserError

DEFAULT_FRAGMENTS = ["guest-base"]
EXPERIMENTS = paths.ROOT / "experiments"


@dataclass
class KernelSpec:
    label: str
    source: str
    fragments: list = field(default_factory=lambda: list(DEFAULT_FRAGMENTS))
    series: str = None          # a series spec when this kernel is patched


@dataclass
class WorkloadSpec:
    name: str
    params: dict = field(default_factory=dict)


@dataclass
class Experiment:
    kernels: list
    workloads: list = field(default_factory=lambda: [WorkloadSpec("fork-memory")])
    name: str = "ad-hoc"
    accel: str = "auto"
    timing: str = "real"        # real, icount (deterministic TCG), or auto (icount without KVM)
    memory_mib: int = 3072
    cpus: int = 2
    image: str = "debian-minimal"
    mirror: str = None
    jobs: int = None
    boot_timeout: int = 120
    stall_s: int = 30           # seconds a workload may be silent before the guest is probed
    pin: str = None             # host CPUs QEMU may run on (taskset list), e.g. "2-5"
    prealloc: bool = True       # guest RAM faulted in on the host before boot (harness.guest.machine)
    dmesg_check: bool = True
    extra_cmdline: str = ""     # appended to the guest kernel's command line
    selftests: list = field(default_factory=list)   # kernel vm selftests to run, e.g. ["cow"]
    selftest_source: str = None  # a tree to take the selftests from when the kernel's has none
    claims: list = field(default_factory=list)      # figures a series claims, for the report
    boots: int = None           # boots per kernel (None: 1 for run, DESIGN_BOOTS for reproduce/nightly)
    order: str = "alternating"  # how the kernels' boots interleave (harness.schedule.ORDERS)
    seed: int = None            # the random order's seed (chosen and recorded when not given)
    until: float = None         # more boots until every interval is within +-until (a fraction)
    max_boots: int = None       # the most boots per kernel with `until` (default 20)
    path: Path = None           # the TOML file, when there is one
    cells: list = None          # when this is some cells of an experiment (harness.ci.cells): their ids
    whole: dict = None          # ... and that experiment's "workloads" (as dicts) and "selftests"

    def __post_init__(self):
        check_design(self.boots, self.order, self.seed)
        if self.until is not None and not (isinstance(self.until, (int, float)) and 0 < self.until < 1):
            raise UserError(f"until must be a fraction between 0 and 1 (0.01: ±1%), got {self.until!r}")
        if self.max_boots is not None and (not isinstance(self.max_boots, int) or self.max_boots < 1):
            raise UserError(f"max_boots must be a whole number of at least 1, got {self.max_boots!r}")

    def to_dict(self):
        """Everything needed to run the experiment again (stored in metadata.json)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["kernels"] = [vars(k) for k in self.kernels]
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

    def command_line(self):
        """The harness command that repeats this experiment (a part of one: with its --cell flags)."""
        if self.cells is not None:
            whole = replace(self, workloads=[WorkloadSpec(**w) for w in self.whole["workloads"]],
                            selftests=self.whole["selftests"], cells=None, whole=None)
            return whole.command_line() + "".join(f" --cell {shlex.quote(c)}" for c in self.cells)
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
        argv += ["--accel", self.accel, "--timing", self.timing, "--memory", str(self.memory_mib),
                 "--cpus", str(self.cpus), "--boots", str(self.boots or 1), "--order", self.order]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        if not self.prealloc:
            argv += ["--no-prealloc"]
        if self.until is not None:
            argv += ["--until-ci", str(self.until)] + (["--max-boots", str(self.max_boots)] if self.max_boots else [])
        defaults = Experiment(kernels=[])
        for flag, name in (("--image", "image"), ("--boot-timeout", "boot_timeout"), ("--cmdline", "extra_cmdline"),
                           ("--pin", "pin")):
            if getattr(self, name) != getattr(defaults, name):
                argv += [flag, str(getattr(self, name))]
        return shlex.join(argv)


DESIGN_BOOTS = 5      # boots per kernel for reproduce, nightly and calibrate unless told otherwise
ORDERS = ("alternating", "interleaved", "random", "sequential")


def check_design(boots, order, seed):
    if boots is not None and (not isinstance(boots, int) or isinstance(boots, bool) or boots < 1):
        raise UserError(f"boots must be a whole number of at least 1, got {boots!r}")
    if order not in ORDERS:
        raise UserError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise UserError(f"seed must be a whole number, got {seed!r}")


def design_of(path, design):
    unknown = set(design) - {"boots", "order", "seed", "until", "max_boots"}
    if unknown:
        raise UserError(f"{path}: unknown keys in [design] {sorted(unknown)} "
                        f"(known: boots, order, seed, until, max_boots)")
    return dict(design)


def find(name_or_path):
    path = Path(name_or_path)
    if path.exists():
        return path
    candidate = EXPERIMENTS / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    known = ", ".join(sorted(p.stem for p in EXPERIMENTS.glob("*.toml")))
    raise UserError(f"experiment '{name_or_path}' not found (known: {known})")


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
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: {exc}") from None
    known = {"name", "description", "source", "series", "guest", "kernels", "workloads", "claims",
             "selftests", "design"}
    unknown = set(data) - known
    if unknown:
        raise UserError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    source = kernel_src or data.get("source")
    series_spec = series or _beside_repo(data.get("series"))
    if not source:
        raise UserError(f"{path} names no kernel source; pass --kernel-src")
    kernels = []
    for k in data.get("kernels", []):
        if "label" not in k:
            raise UserError(f"{path}: every [[kernels]] needs a label")
        patched = bool(k.get("patched", False))
        if patched and not series_spec:
            raise UserError(f"{path}: kernel '{k['label']}' is patched but no series is named; "
                            f"pass --series")
        kernels.append(KernelSpec(k["label"], source, list(k.get("fragments", DEFAULT_FRAGMENTS)),
                                  series_spec if patched else None))
    if not kernels:
        raise UserError(f"{path} has no [[kernels]]")
    workloads = []
    for w in data.get("workloads", []):
        for params in expand(dict(w.get("params", {}))):
            for _ in range(int(w.get("repeat", 1))):
                workloads.append(WorkloadSpec(w["name"], params))
    guest = data.get("guest", {})
    exp = Experiment(kernels=kernels, workloads=workloads or [WorkloadSpec("fork-memory")],
                     name=data.get("name", path.stem), path=path,
                     selftests=list(data.get("selftests", [])), claims=list(data.get("claims", [])),
                     **{k: guest[k] for k in ("accel", "timing", "memory_mib", "cpus", "image",
                                              "boot_timeout", "stall_s", "pin", "prealloc")
                        if k in guest},
                     **design_of(path, data.get("design", {})))
    return replace(exp, **{k: v for k, v in overrides.items() if v is not None})
