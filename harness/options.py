"""Every experiment option, declared once: its name, type, default, help, where it goes in an
experiment file and whether it changes a cache key.

From this table come the command line's flags (harness.cli), the keys an experiment file accepts
(harness.experiment.load), the `Experiment`'s option fields, their checks, and the command that
repeats a run (Experiment.command_line). A new option added here is in all of them at once.
"""
from dataclasses import dataclass

from harness.errors import UserError

ORDERS = ("alternating", "interleaved", "random", "sequential")


@dataclass(frozen=True)
class Option:
    name: str               # the Experiment's field
    flag: str               # the command line's flag; a bool has --flag and --no-flag
    type: type              # int, float, str or bool
    default: object
    help: str
    section: str = None     # the experiment file's table: "guest", "design", "build", or None (top level)
    cache_key: bool = False  # the value is part of a cache entry's key (a different value, another entry)
    choices: tuple = None
    metavar: str = None
    low: float = None       # the smallest value allowed (ints and floats)
    high: float = None      # values must stay below this (floats)
    short: str = None       # a one-letter flag besides the long one

    def check(self, value):
        """The value, or one UserError that names the option and what it takes."""
        if value is None:
            return value
        if self.type is bool:
            ok = isinstance(value, bool)
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if ok and self.choices:
            ok = value in self.choices
        if ok and self.low is not None:
            ok = value >= self.low if self.high is None else self.low < value < self.high
        if not ok:
            raise UserError(f"{self.name} must be {self.takes()}, got {value!r}")
        return value

    def takes(self):
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type is int:
            return "a whole number" + (f" of at least {self.low}" if self.low is not None else "")
        if self.type is float and self.high is not None:
            return f"a fraction between {self.low} and {self.high} (0.01: ±1%)"
        return {bool: "true or false", float: "a number"}.get(self.type, "text")

    def argv(self, value):
        """The flags that set this value on the command line ([] for None: not set). A value equal
        to the default is written too: an experiment file may set another one."""
        if value is None:
            return []
        if self.type is bool:
            return [self.flag if value else "--no-" + self.flag[2:]]
        return [self.flag, str(value)]


OPTIONS = (
    Option("jobs", "--jobs", int, None, "parallel build jobs (default: all cores)", "build", low=1,
           short="-j"),
    Option("insecure_download", "--insecure-download", bool, None, "allow a kernel tarball over "
           "http or without a checksum (recorded in metadata.json)", "build"),
    Option("accel", "--accel", str, "auto", "auto probes KVM with a real boot and falls back to TCG "
           "(default: auto)", "guest", choices=("auto", "kvm", "tcg")),
    Option("timing", "--timing", str, "real", "real: wall-clock time in the guest (KVM, or "
           "multi-threaded TCG); icount: TCG counting instructions, deterministic (1 ns per "
           "instruction, one vCPU); auto: icount when KVM is not available (default: real; nightly: "
           "auto)", "guest", choices=("real", "icount", "auto")),
    Option("memory_mib", "--memory", int, 3072, "guest memory (default 3072)", "guest",
           metavar="MIB", low=64),
    Option("cpus", "--cpus", int, 2, "guest vCPUs (default 2)", "guest", low=1),
    Option("image", "--image", str, "debian-minimal", "guest image recipe in vm-images/ "
           "(default debian-minimal)", "guest", cache_key=True),
    Option("mirror", "--mirror", str, None, "Debian mirror for the image (default: this host's apt "
           "sources)", "guest", cache_key=True),
    Option("boot_timeout", "--boot-timeout", int, 120, "seconds for the guest to become ready "
           "(default 120)", "guest", metavar="S", low=1),
    Option("stall_s", "--stall", int, 30, "seconds a workload may be silent before the guest is "
           "probed (default 30)", "guest", metavar="S", low=1),
    Option("pin", "--pin", str, None, "run QEMU on these host CPUs only (taskset list, e.g. 2-5): "
           "keeps other work off the measuring cores on a big runner", "guest", metavar="CPUS"),
    Option("extra_cmdline", "--cmdline", str, "", "extra guest kernel command line, e.g. "
           "'transparent_hugepage=always'", "guest", metavar="TEXT"),
    Option("prealloc", "--prealloc", bool, True, "fault the guest's RAM in on the host before boot "
           "(the default; --no-prealloc lets the host fault it in while the guest runs, and a host "
           "fault during a timed fork adds noise)", "guest"),
    Option("dmesg_check", "--dmesg-check", bool, True, "check the guest's kernel log after every "
           "workload: a BUG, WARNING or new taint fails it (default; --no-dmesg-check to skip)", "guest"),
    Option("selftest_source", "--selftest-source", str, None, "a tree to take the kernel's "
           "selftests from when the kernel's own tree has none", None, metavar="SPEC"),
    Option("boots", "--boots", int, None, "boots per kernel, the unit of replication (default: 1 "
           "for run; reproduce, nightly and calibrate boot 5, then on until every headline interval "
           "is within ±2.5%, at most 40; a --boots of theirs fixes the count)", "design",
           metavar="N", low=1),
    Option("variants", "--variants", int, None, "layout variants per kernel: the same source and "
           "config with the code placed differently (harness/kernel/layout.py); boot k runs variant "
           "(k - 1) mod N, and real-time times between two binaries are compared over variants "
           "(default: 1 for run; reproduce, nightly and calibrate: 4)", "design", metavar="N", low=1),
    Option("order", "--order", str, "alternating", "order of the kernels' boots: alternating (A B, "
           "B A, ...; default), interleaved (A B, A B), random blocks, sequential", "design",
           choices=ORDERS),
    Option("seed", "--seed", int, None, "seed of the random order (recorded)", "design"),
    Option("until", "--until-ci", float, None, "boot on (after --boots) until every headline "
           "comparison's 95% interval is within ±FRACTION of its ratio, e.g. 0.01", "design", metavar="FRACTION",
           low=0, high=1),
    Option("max_boots", "--max-boots", int, None, "the most boots per kernel with --until-ci "
           "(default 40)", "design", metavar="N", low=1),
)
BY_NAME = {o.name: o for o in OPTIONS}
SECTIONS = ("build", "guest", "design")


def in_section(section):
    return [o for o in OPTIONS if o.section == section]


def from_file(path, data):
    """The option values an experiment file sets, checked; unknown keys are one error."""
    values = {}
    for section in SECTIONS:
        table = data.get(section, {})
        known = [o.name for o in in_section(section)]
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise UserError(f"{path}: unknown keys in [{section}] {unknown} (known: {', '.join(known)})")
        values.update(table)
    values.update({o.name: data[o.name] for o in in_section(None) if o.name in data})
    for name, value in values.items():
        BY_NAME[name].check(value)
    return values

