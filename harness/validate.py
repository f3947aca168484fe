"""One pass over a whole request before anything is built, booted or stored.

Every kernel's label, source and series, its config fragments, every workload parameter (against
the type and range its manifest declares in [allowed]) and the guest settings are checked, and the
first problem is raised: a UserError (exit 2) naming the field and what is allowed, or an
InfraError (exit 3) when this machine cannot do what was asked (KVM without /dev/kvm, more guest
memory than the host has, a results folder that cannot be written). Nothing here builds, downloads
or writes; the slow checks (a series applying, a config option landing) stay where they happen.

A manifest's [allowed] table has one entry per parameter:
  mib = {type = "int", min = 1, max = 1048576}
  seconds = {type = "float", min = 0.1, max = 86400}
  thp = {type = "choice", values = ["nohuge", "huge", "default"]}
  sizes_mib = {type = "int-list", min = 0, max = 1048576}     (comma-separated whole numbers)
"""
import mailbox
import os
import re
import tomllib
from pathlib import Path

from harness import options, paths, safety
from harness.kernel import kconfig
from harness.errors import InfraError, UserError

ACCELS = ("auto", "kvm", "tcg")
TIMINGS = ("real", "icount", "auto")


def selftest_names():
    """The mm selftests the harness can build and run (the catalog's names)."""
    return list(tomllib.loads((paths.WORKLOADS / "selftests" / "mm-selftests.toml").read_text()))
CPU_LIST = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


def request(exp):
    """Check the whole experiment; raises the first problem found."""
    labels(exp.kernels)
    for spec in exp.workloads:
        workload(spec.name, spec.params)
    feature(exp)
    guest(exp)
    from harness.experiment import design
    design(exp)
    kconfig.base(getattr(exp, "base", None) or "tinyconfig")
    kernels(exp.kernels, exp)
    needs(exp)
    results_folder()


def feature(exp):
    """The experiment's feature profile exists; a workload asks for the feature only where the
    profile has a switch; a claim's condition is one of the profile's condition names."""
    from harness import feature as feature_mod
    profile = feature_mod.of(exp)
    if not profile.has_switch:
        asked = [s.name for s in exp.workloads
                 if any(s.params.get(k) for k in (feature_mod.PARAM, *feature_mod.LEGACY_PARAMS))]
        if asked:
            raise UserError(f"workload {asked[0]}: {feature_mod.PARAM} = 1 asks for a feature, but the "
                            f"profile '{profile.name}' has no switch (set feature = \"NAME\" in the "
                            f"experiment; known: {', '.join(feature_mod.names())})")
    names = [v for k, v in profile.conditions.items() if k in ("off", "on")]
    for i, claim in enumerate(getattr(exp, "claims", None) or [], 1):
        if "condition" in claim and claim["condition"] not in names:
            raise UserError(f"[[claims]] entry {i}: condition = {claim['condition']!r}: allowed: "
                            f"{', '.join(names)} (the profile '{profile.name}')")
    return profile


# --- kernels ----------------------------------------------------------------------------------

def labels(specs):
    """Unique labels that can be folder names; fragments that exist and parse."""
    if not specs:
        raise UserError("no kernel to build: name one with --kernel-src or [[kernels]]")
    seen = set()
    for i, k in enumerate(specs, 1):
        safety.label(k.label, f"kernel {i}: label")
        if k.label in seen:
            raise UserError(f"kernel label {k.label!r} is used twice; every kernel needs its own label")
        seen.add(k.label)
        if not isinstance(k.fragments, list) or not all(isinstance(f, str) and f for f in k.fragments):
            raise UserError(f"kernel {k.label!r}: fragments must be a list of names or paths")
        for f in k.fragments:
            kconfig.fragment(f)
        if getattr(k, "base", None) is not None:
            kconfig.base(k.base, f"kernel {k.label!r}: base")


def kernels(specs, exp=None):
    """Every kernel's source and series."""
    for k in specs:
        source(k.source, f"kernel {k.label!r}: source",
               insecure=bool(getattr(exp, "insecure_download", False)))
        if k.series is not None:
            series(k.series, f"kernel {k.label!r}: series")


def source(spec, where, insecure=False):
    """The checks of a source spec that need neither network nor cache (harness.sources)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"{where}: empty; give a path, debian:linux-source-X.Y, https://...tar.xz "
                        f"or git+URL#REF")
    spec = spec.strip()
    shown = safety.redact(spec)
    if spec.startswith("debian:"):
        package = spec[len("debian:"):]
        if re.fullmatch(r"\d+\.\d+", package):
            package = f"linux-source-{package}"
        if not re.fullmatch(r"linux-source-\d+\.\d+", package):
            raise UserError(f"{where} {shown!r}: expected debian:linux-source-X.Y")
        if not Path(f"/usr/src/{package}.tar.xz").exists() and os.geteuid() != 0:
            raise InfraError(f"{where}: {package} is not installed and installing it needs root: "
                             f"sudo apt-get install {package}")
        return
    if spec.startswith("git+"):
        url, _, ref = spec[len("git+"):].partition("#")
        if not ref or url.startswith("-") or ref.startswith("-") or not url:
            raise UserError(f"{where} {shown!r}: write git+URL#REF (a tag, branch or commit; "
                            f"neither may start with '-')")
        return
    if re.match(r"^[a-z][a-z0-9+.-]*://", spec, re.I):
        from harness.kernel.sources import check_tarball
        check_tarball(spec, where, insecure)
        return
    local_tree(spec, where)


def local_tree(spec, where):
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise UserError(f"{where} {spec!r}: " + ("is not a directory" if path.exists() else "does not exist")
                        + "; give a kernel tree, debian:linux-source-X.Y, https://...tar.xz or git+URL#REF")
    from harness.kernel.sources import kernel_version
    try:
        kernel_version(path)
    except UserError:
        raise UserError(f"{where} {spec!r}: not a Linux kernel tree (no VERSION/PATCHLEVEL in its "
                        f"Makefile)") from None
    if (path / ".config").exists() or (path / "include" / "config").exists():
        raise UserError(f"{where} {spec!r}: configured or built in-tree; the harness builds out of "
                        f"tree: run 'make mrproper' in it first")


def series(spec, where):
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"{where}: empty; give an mbox, a folder of .patch files or a Message-Id")
    path = Path(spec.strip()).expanduser()
    if path.is_dir():
        if not any(path.glob("*.patch")):
            raise UserError(f"{where} {spec!r}: the folder has no *.patch files")
        return
    if path.is_file():
        try:
            box = mailbox.mbox(str(path), create=False)
            empty = next(box.iterkeys(), None) is None
            box.close()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{where} {spec!r}: cannot be read: {exc}") from None
        if empty:
            raise UserError(f"{where} {spec!r}: not an mbox (no mails in it)")
        return
    from harness.kernel.series import _message_id
    if not _message_id(spec.strip()):
        raise UserError(f"{where} {spec!r}: does not exist and is not a lore Message-Id")


# --- workloads --------------------------------------------------------------------------------

def workload(name, params):
    """The workload exists, every parameter is known and within its manifest's [allowed]."""
    from harness.measure.workloads import Workload
    if not isinstance(name, str) or not name:
        raise UserError(f"a workload needs a name, got {name!r}")
    if not isinstance(params, dict):
        raise UserError(f"workload {name}: params must be a table of NAME = VALUE")
    w = Workload.load(name)
    if w.manifest.get("table"):
        from harness.analysis import tables     # no pandas at import
        tables.known(w.manifest["table"])
    kernel_config(w)
    values = w.params(params)
    allowed = w.manifest.get("allowed", {})
    for key, value in values.items():
        rule = allowed.get(key) or {"type": type(w.manifest["params"][key]).__name__}
        problem = value_problem(value, rule)
        if problem:
            raise UserError(f"workload {name}: parameter {key} = {value!r}: {problem}")
    return values


# A manifest's keys the harness acts on beyond [params]/[allowed], declared as an experiment
# file's keys are (harness/options.py).
KERNEL_CONFIG = options.Key("kernel_config", "texts",
                            "the kernel options the workload needs (CONFIG_X names, each set =y)")


def kernel_config(w):
    """A manifest's kernel_config: a list of CONFIG_ names."""
    value = w.manifest.get(KERNEL_CONFIG.name, [])
    problem = KERNEL_CONFIG.problem(value)
    if problem is None:
        wrong = [v for v in value if not kconfig.SYMBOL.fullmatch(v)]
        problem = f"{', '.join(map(repr, wrong))}: allowed: CONFIG_ names (CONFIG_SYSVIPC)" if wrong else None
    if problem:
        raise UserError(f"workload {w.name}: manifest.toml: {KERNEL_CONFIG.name} = {value!r}: {problem}")


def needs(exp):
    """No kernel's fragments turn off an option its workloads or selftests need (checked before
    anything is built; what they add is checked in the final .config, as any fragment's options)."""
    from harness.experiment import kernel_needs
    wanted = kernel_needs(exp)
    for k in exp.kernels:
        kconfig.needed([kconfig.fragment(f) for f in k.fragments], wanted, k.label)


def value_problem(value, rule):
    """Why value breaks rule (a manifest's [allowed] entry), or None."""
    kind = rule.get("type", "str")
    low, high = rule.get("min"), rule.get("max")
    span = "" if low is None and high is None else f" from {low} to {high}"
    if kind == "choice":
        return None if value in rule["values"] else "allowed: " + ", ".join(map(str, rule["values"]))
    if kind == "int-list":
        parts = str(value).split(",")
        if not all(re.fullmatch(r"\s*\d+\s*", p) for p in parts):
            return f"allowed: comma-separated whole numbers{span}"
        value, kind = [int(p) for p in parts], "int"
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"allowed: a whole number{span}"
        value = [value]
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"allowed: a number{span}"
        value = [value]
    elif kind == "str":
        return None if isinstance(value, str) else "allowed: text"
    elif kind == "bool":
        return None if isinstance(value, bool) else "allowed: true or false"
    else:
        return f"the manifest declares an unknown type {kind!r}"
    if any((low is not None and v < low) or (high is not None and v > high) for v in value):
        return f"allowed: {'whole numbers' if kind == 'int' else 'a number'}{span}"
    return None


# --- guest settings and the machine -----------------------------------------------------------

def number(value, name, low, high=None, kind=int):
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) \
            or value < low or (high is not None and value > high):
        whole = "a whole number" if kind is int else "a number"
        raise UserError(f"{name} = {value!r}: allowed: {whole} from {low}"
                        + (f" to {high}" if high is not None else " up"))


def guest(exp):
    if exp.accel not in ACCELS:
        raise UserError(f"accel = {exp.accel!r}: allowed: {', '.join(ACCELS)}")
    if exp.timing not in TIMINGS:
        raise UserError(f"timing = {exp.timing!r}: allowed: {', '.join(TIMINGS)}")
    if exp.timing == "icount" and exp.accel == "kvm":
        raise UserError("timing = icount runs under TCG: it cannot go with --accel kvm (allowed: auto, tcg)")
    number(exp.memory_mib, "memory_mib", 256, 1 << 20)
    number(exp.cpus, "cpus", 1, 256)
    number(exp.boot_timeout, "boot_timeout", 1, 86400)
    number(exp.stall_s, "stall_s", 1, 86400)
    if exp.jobs is not None:
        number(exp.jobs, "jobs", 1, 4096)
    if not isinstance(exp.prealloc, bool):
        raise UserError(f"prealloc = {exp.prealloc!r}: allowed: true or false")
    if not isinstance(exp.extra_cmdline, str) or "\n" in exp.extra_cmdline:
        raise UserError(f"extra_cmdline = {exp.extra_cmdline!r}: allowed: one line of text")
    if not isinstance(exp.image, str) or not safety.LABEL.fullmatch(exp.image) \
            or not (paths.VM_IMAGES / exp.image / "recipe.toml").is_file():
        known = ", ".join(sorted(p.name for p in paths.VM_IMAGES.iterdir() if (p / "recipe.toml").is_file()))
        raise UserError(f"image = {exp.image!r}: allowed: a recipe in vm-images/ ({known})")
    if exp.mirror is not None and not re.match(r"^(https?|file)://\S+$", str(exp.mirror)):
        raise UserError(f"mirror = {exp.mirror!r}: allowed: an http(s):// or file:// URL")
    known = selftest_names()
    unknown = [s for s in exp.selftests if s not in known]
    if unknown:
        raise UserError(f"selftests = {unknown}: allowed: {', '.join(known)}")
    machine(exp)
    target(exp)


def target(exp):
    """--machine: its URL, the key to log in with and its pinned host key (no connection yet)."""
    url = getattr(exp, "machine", None)
    if url is None:
        for name in ("identity", "known_hosts", "console"):
            if getattr(exp, name, None) is not None:
                raise UserError(f"{name} = {getattr(exp, name)!r} goes with --machine URL only")
        return
    from harness.guest import remote
    if exp.timing == "icount":
        raise UserError("timing = icount is QEMU's instruction counting: it cannot go with --machine")
    remote.pinned_host_key(remote.parse_url(url), exp.known_hosts)
    remote.load_identity(exp.identity)


def machine(exp):
    """What this host cannot do (exit 3)."""
    if exp.pin is not None:
        if not isinstance(exp.pin, str) or not CPU_LIST.fullmatch(exp.pin):
            raise UserError(f"pin = {exp.pin!r}: allowed: a CPU list such as 2-5 or 0,2")
        wanted = {c for part in exp.pin.split(",") for a, _, b in [part.partition("-")]
                  for c in range(int(a), int(b or a) + 1)}
        if not wanted:
            raise UserError(f"pin = {exp.pin!r}: an empty CPU set; allowed: ranges low-high with low <= high")
        missing = sorted(wanted - os.sched_getaffinity(0))
        if missing:
            raise InfraError(f"pin = {exp.pin!r}: CPUs {missing} are not available to the harness here")
    if exp.accel == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise InfraError("accel = kvm: /dev/kvm cannot be opened on this machine; use --accel auto or tcg")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    if exp.memory_mib > total:
        raise InfraError(f"memory_mib = {exp.memory_mib}: this host has {total} MiB")


def results_folder():
    """The results folder can be made and written (checked without writing)."""
    folder = paths.results()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InfraError(f"results folder {folder} cannot be written (set HARNESS_RESULTS to a "
                         f"writable folder)")
