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

    commands: tuple = ()    # a flag of these subcommands only (COMMAND_OPTIONS), not an experiment's

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
        if ok and self.type is float and value != value:
            ok = False          # NaN compares false with everything: never a value
        if not ok:
            raise UserError(f"{self.flag if self.commands else self.name} must be {self.takes()}, "
                            f"got {value!r}")
        return value

    def takes(self):
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type is int:
            return "a whole number" + (f" of at least {self.low}" if self.low is not None else "")
        if self.type is float and self.high is not None:
            return f"a fraction between {self.low} and {self.high} (0.01: ±1%)"
        if self.type is float and self.low is not None:
            return f"a number of at least {self.low}"
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
    Option("base", "--base", str, "tinyconfig", "the config the fragments go on: tinyconfig "
           "(default), defconfig, a config FILE (e.g. a distribution's /boot/config-*) or target "
           "(a real machine's running config: not available yet)", "build", metavar="BASE"),
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
    Option("machine", "--machine", str, None, "a real machine as the target instead of QEMU: "
           "ssh://USER@HOST[:PORT]; each boot kexecs the built kernel there (docs/machines.md)",
           "guest", metavar="URL"),
    Option("identity", "--identity", str, None, "with --machine: the private key to log in with "
           "(default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa)", "guest", metavar="KEY"),
    Option("known_hosts", "--known-hosts", str, None, "with --machine: host keys to trust besides "
           "~/.ssh/known_hosts (the machine's key is pinned)", "guest", metavar="FILE"),
    Option("console", "--console", str, None, "with --machine: a command on this host that prints "
           "the machine's console (its tail is the evidence when the machine does not come back)",
           "guest", metavar="CMD"),
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
    Option("feature", "--feature", str, None, "the feature profile (features/NAME or a folder): how "
           "the series' feature is switched on and proven (default: none, a plain series)", None,
           metavar="NAME"),
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

# The number flags of single subcommands, declared the same way: the parser adds them and
# harness.cli checks them (check_command) before the subcommand imports, builds or writes anything.
VERDICTS = ("report", "nightly", "reproduce", "attribute")
COMMAND_OPTIONS = (
    Option("practical", "--practical", float, None, "smallest change called faster/slower (default "
           "0.02, or the workload manifest's [practical] entry for a metric)", metavar="FRACTION",
           low=0, high=1, commands=VERDICTS),
    Option("resamples", "--resamples", int, 2000, "bootstrap resamples (default 2000)", low=100,
           commands=("report",)),
    Option("noisy_cv", "--noisy-cv", float, 0.05, "call a comparison noisy above this coefficient of "
           "variation (default 0.05)", metavar="CV", low=0, high=1, commands=("report",)),
    Option("threshold", "--threshold", float, 0.05, "a regression is worse than the previous nights' "
           "median by more than this fraction (default 0.05)", low=0, high=1, commands=("nightly",)),
    Option("nights", "--nights", int, 5, "previous nights to compare with (default 5)", low=1,
           commands=("nightly",)),
    Option("effect", "--effect", float, 0.05, "the slowdown injected into B's times for the power "
           "check (default 0.05)", low=0, high=1, commands=("calibrate",)),
    Option("sims", "--sims", int, 1000, "simulations (default 1000)", low=1, commands=("calibrate",)),
    Option("reps", "--reps", int, 20, "simulated repetitions per boot (default 20)", low=1,
           commands=("calibrate",)),
    Option("boot_sd", "--boot-sd", float, 0.02, "simulated between-boot sd, log scale", low=0,
           commands=("calibrate",)),
    Option("rep_sd", "--rep-sd", float, 0.02, "simulated within-boot sd, log scale", low=0,
           commands=("calibrate",)),
    Option("drift_sd", "--drift-sd", float, 0.0, "simulated drift of the host shared by a round's "
           "boots, sd, log scale", low=0, commands=("calibrate",)),
    Option("boots", "--boots", int, 5, "boots to time (default 5)", low=1, commands=("selfbench",)),
    Option("accel", "--accel", str, "auto", "auto, kvm or tcg (default auto)",
           choices=("auto", "kvm", "tcg"), commands=("selfbench", "verify")),
    Option("jobs", "--jobs", int, None, "parallel build jobs (default: all cores)", low=1, short="-j",
           commands=("verify",)),
    Option("mib", "--mib", int, 1024, "memory mapped by fork-memory (default 1024)", low=1,
           commands=("verify",)),
    Option("no_bisect", "--no-bisect", bool, False, "skip building every patch", commands=("verify",)),
    Option("feature", "--feature", str, None, "the feature profile (features/NAME or a folder): its "
           "option's configs, kernels and selftests (default: the default profile)", metavar="NAME",
           commands=("verify",)),
    Option("bisect_configs", "--bisect-configs", str, None, "configs to build every patch with: the "
           "profile's option on and off (e.g. OPTION=y, OPTION=n), base, coverage (the options gating "
           "the series' code, derived from it) (default: the profile's [verify] default_configs)",
           metavar="LIST", commands=("verify",)),
    Option("kernels", "--kernels", str, None, "kernels to boot and measure: stock, patched, "
           "patched-debug, the profile's [verify] kernels (default: its default_kernels)", metavar="LIST",
           commands=("verify",)),
    Option("no_boot", "--no-boot", bool, False, "skip booting the kernels", commands=("verify",)),
    Option("objects_only", "--objects-only", bool, False, "build every patch by compiling only the "
           "objects of the files the series changes (make path/f.o), not whole kernels: the per-patch "
           "compile and coverage tables in minutes", commands=("verify",)),
    Option("selftests", "--selftests", str, "auto", "mm selftests beside the profile's: auto (those of "
           "the areas the series touches, from workloads/selftests/mm-selftests.toml), all, or a comma "
           "list (default: auto)", metavar="LIST", commands=("verify",)),
    Option("selftest_source", "--selftest-source", str, None, "a newer tree to take the selftests from "
           "when the kernel's tree lacks them", metavar="PATH", commands=("verify",)),
    Option("cell_timeout", "--cell-timeout", int, None, "give up on a cell after S seconds",
           metavar="S", low=1, commands=("remote",)),
)


def command_options(command):
    return [o for o in COMMAND_OPTIONS if command in o.commands]


def check_command(command, values):
    """Every declared flag of `command` in values (a dict of dest -> value), checked."""
    for o in command_options(command):
        o.check(values.get(o.name))
SECTIONS = ("build", "guest", "design")


def in_section(section):
    return [o for o in OPTIONS if o.section == section]


# --- the experiment file's own keys (the options above sit in its [build], [guest], [design]) ---

@dataclass(frozen=True)
class Key:
    """A key of an experiment file, declared once: its TOML type, range or choices and help."""
    name: str
    kind: str               # text, bool, int, number, table, texts (a list of text), tables
    help: str
    required: bool = False
    low: float = None
    high: float = None
    choices: tuple = None

    def takes(self):
        if self.choices:
            return "one of " + ", ".join(self.choices) + (" (a list)" if self.kind == "texts" else "")
        span = "" if self.low is None else f" from {self.low}" + (f" to {self.high}" if self.high else "")
        return {"text": "text", "bool": "true or false (not a string)", "int": "a whole number" + span,
                "number": "a number" + span, "table": "a table", "texts": "a list of text",
                "tables": "a list of tables ([[...]])"}[self.kind]

    def problem(self, value):
        """Why value does not fit this key, or None."""
        kind = self.kind
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {"text": isinstance(value, str), "bool": isinstance(value, bool),
              "int": number and isinstance(value, int), "number": number,
              "table": isinstance(value, dict),
              "texts": isinstance(value, list) and all(isinstance(v, str) and v for v in value),
              "tables": isinstance(value, list) and all(isinstance(v, dict) for v in value)}[kind]
        if ok and self.choices:
            ok = all(v in self.choices for v in (value if kind == "texts" else [value]))
        if ok and number and self.low is not None:
            ok = value >= self.low and (self.high is None or value <= self.high)
        if ok and kind == "number" and value != value:
            ok = False
        return None if ok else f"allowed: {self.takes()}"


FILE_KEYS = {
    None: (Key("name", "text", "the experiment's name (default: the file's)"),
           Key("description", "text", "what it measures"),
           Key("source", "text", "kernel source for every kernel (a --kernel-src spec)"),
           Key("series", "text", "patch series for the kernels with patched = true"),
           Key("kernels", "tables", "the kernels to build", required=True),
           Key("workloads", "tables", "the workloads to run (default fork-memory)"),
           Key("claims", "tables", "figures the series claims, checked by the report"),
           Key("selftests", "texts", "kernel selftests to run (the feature profile's, e.g. its [selftests] always)"),
           *(Key(s, "table", f"the [{s}] options") for s in ("build", "guest", "design"))),
    "kernels": (Key("label", "text", "the kernel's name in results", required=True),
                Key("patched", "bool", "apply the series (true or false)"),
                Key("fragments", "texts", "config fragments (names in kernel-config/ or paths)"),
                Key("base", "text", "the config the fragments go on (tinyconfig, defconfig or a file)"),
                Key("source", "text", "this kernel's source (default: the file's source)"),
                Key("series", "text", "this kernel's series (the kernel is patched with it)"),
                Key("layout", "int", "its first layout variant's pad (a resolved file's)", low=0, high=1 << 20)),
    "workloads": (Key("name", "text", "a workload in workloads/", required=True),
                  Key("params", "table", "its parameters; a list runs it once per value"),
                  Key("repeat", "int", "how many times to run it", low=1, high=1000)),
    "claims": (Key("workload", "text", "the workload", required=True),
               Key("metric", "text", "its metric", required=True),
               Key("value", "number", "the figure claimed", required=True),
               Key("condition", "text", "the state claimed: the profile's [conditions] off or on name"),
               Key("unit", "text", "the claimed figure's unit"),
               Key("params", "table", "the workload's parameters of the claim"),
               Key("tolerance", "number", "how close counts as reproduced", low=0, high=10),
               Key("kind", "text", "absolute or a ratio", choices=("absolute", "ratio")),
               Key("note", "text", "a remark shown beside it")),
}


def unknown_key(where, key, known):
    """The one error for a key nobody declared: the known ones, and the nearest spelled out."""
    import difflib
    near = difflib.get_close_matches(str(key), known, n=1)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    raise UserError(f"{where}: unknown key '{key}'{hint} (known: {', '.join(sorted(known))})")


def check_table(where, table, keys):
    """A table of an experiment file against its declared keys: unknown keys, missing required
    ones and values of the wrong type are one UserError each."""
    if not isinstance(table, dict):
        raise UserError(f"{where}: must be a table, got {table!r}")
    by_name = {k.name: k for k in keys}
    for key, value in table.items():
        if key not in by_name:
            unknown_key(where, key, list(by_name))
        problem = by_name[key].problem(value)
        if problem:
            raise UserError(f"{where}: {key} = {value!r}: {problem}")
    for k in keys:
        if k.required and k.name not in table:
            raise UserError(f"{where}: {k.name} is missing ({k.help}: {k.takes()})")
    return table


def from_file(path, data):
    """The option values an experiment file sets, checked; unknown keys are one error."""
    values = {}
    for section in SECTIONS:
        table = data.get(section, {})
        known = [o.name for o in in_section(section)]
        for key in table:
            if key not in known:
                unknown_key(f"{path}: [{section}]", key, known)
        values.update(table)
    values.update({o.name: data[o.name] for o in in_section(None) if o.name in data})
    for name, value in values.items():
        try:
            BY_NAME[name].check(value)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
    return values
