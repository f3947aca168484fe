"""Feature profiles: what a series' feature is, how it is switched on and how to prove it took.

A profile is a folder features/<name>/ with profile.toml (and the files it names: config
fragments, a launcher's C source). The generic code (workloads, the judge of harness.measure.activity,
statistics, verify, attribute, the report) reads it through Profile and names no feature itself.
An experiment names its profile (`feature = "..."`); without one it is "none", a plain series.
More folders of profiles: HARNESS_FEATURES (paths separated by ':'), searched before features/.
docs/features.md describes the keys.

Runs stored before profiles existed name their record fields and workload parameters after their
feature: a profile's [legacy] table maps those old names to the generic ones, and LEGACY_FIELDS /
LEGACY_PARAMS below are the union over every profile found, so old runs read like new ones (the
stored-file reader, harness.stored, renames the fields of every record and kernel it reads).
"""
import functools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness import paths
from harness.errors import UserError

NONE = "none"
# the states a record's feature is judged in (harness.measure.activity), named here only
OFF, ACTIVE, INACTIVE, UNPROVEN = "off", "active", "inactive", "unproven"
STATES = (OFF, ACTIVE, INACTIVE, UNPROVEN)
# record fields: the state judged, the switch asked for, the judge's evidence, the kernel's option
STATE, REQUESTED, EVIDENCE, CONFIG = "feature_state", "feature_requested", "feature_evidence", "feature_config"
PARAM = "feature"           # the workload parameter that asks for the feature (0/1)
OFF_LABEL = "fork"          # the off state's name in every profile (the workloads fork plainly)

GENERIC_FIELDS = (STATE, REQUESTED, EVIDENCE, CONFIG, "feature_proof")


def _legacy():
    """({old field: generic field}, {old parameter: PARAM}) from every profile's [legacy] table."""
    fields, params = {}, {}
    for folder in folders():
        for path in sorted(folder.glob("*/profile.toml")):
            try:
                legacy = tomllib.loads(path.read_text()).get("legacy", {})
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue                      # refused with its reason when the profile is loaded
            fields.update({k: v for k, v in legacy.get("fields", {}).items() if v in GENERIC_FIELDS})
            params.update({k: PARAM for k in legacy.get("params", [])})
    return fields, params


@dataclass(frozen=True)
class Profile:
    name: str
    folder: Path = None
    title: str = ""
    description: str = ""
    default: bool = False
    experiment: str = None
    switch: dict = field(default_factory=dict)       # prctl, arg, trap
    proof: dict = field(default_factory=dict)        # config, counter, base, thresholds
    states: dict = field(default_factory=dict)       # state -> label in tables
    conditions: dict = field(default_factory=dict)   # off/on/way -> a claim's condition name
    configs: dict = field(default_factory=dict)      # on/off fragments, on_name/off_name
    selftests: dict = field(default_factory=dict)    # always, launcher, launcher_name
    verify: dict = field(default_factory=dict)
    workloads: dict = field(default_factory=dict)
    legacy: dict = field(default_factory=dict)       # fields/params of runs stored before profiles

    @property
    def has_switch(self):
        return bool(self.switch)

    def label(self, state):
        """The name of a state in tables ("fork", ...); an unknown state is shown as it is."""
        return OFF_LABEL if state == OFF else self.states.get(state, state)

    def kinds(self):
        """state -> label, for every state this profile can give (off first)."""
        return {s: self.label(s) for s in STATES if s == OFF or self.has_switch}

    def guest_args(self):
        """What the guest drivers are told of the switch (the drivers keep a default). A profile
        without one names no option either: the records carry no feature_config (null)."""
        if not self.has_switch:
            return ["--feature-config", ""]
        return ["--feature-prctl", str(self.switch["prctl"]), "--feature-arg", str(self.switch.get("arg", 0)),
                "--feature-config", self.proof.get("config", "")]

    def fragments(self, which):
        """The config fragments (names or paths) that turn the option on or off ([configs])."""
        return list(self.configs.get(which, []))

    def config_sets(self, base):
        """Per-patch build sets: {name: fragments} for the option on and off."""
        if not self.configs:
            return {}
        return {self.configs["on_name"]: base + self.fragments("on"),
                self.configs["off_name"]: base + self.fragments("off")}

    def fragment_path(self, name):
        """A fragment of this profile's folder (NAME.config), or None."""
        if self.folder and (self.folder / f"{name}.config").is_file():
            return self.folder / f"{name}.config"
        return None

    def launcher_source(self):
        src = self.selftests.get("launcher")
        return self.folder / src if src and self.folder else None

    def condition(self, name):
        """A claim's condition name -> "off" or "on" (None when the profile has no such name)."""
        for key in ("off", "on"):
            if self.conditions.get(key) == name:
                return key
        return None


def folders():
    extra = [Path(p) for p in os.environ.get("HARNESS_FEATURES", "").split(os.pathsep) if p]
    return extra + [paths.ROOT / "features"]


def names():
    return sorted({p.parent.name for d in folders() if d.is_dir() for p in d.glob("*/profile.toml")})


def find(name):
    path = Path(name)
    if (path / "profile.toml").is_file():
        return path
    for d in folders():
        if (d / name / "profile.toml").is_file():
            return d / name
    raise UserError(f"unknown feature profile '{name}' (known: {', '.join(names())})")


KEYS = {f for f in Profile.__dataclass_fields__} - {"folder"}
LEGACY_FIELDS, LEGACY_PARAMS = _legacy()       # old names -> generic ones (see the docstring)


def load(name=None):
    """The profile by name or folder; None or "" is the plain "none" profile."""
    folder = find(name or NONE)
    return _load(str(folder.resolve()), (folder / "profile.toml").stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load(folder, stamp):
    path = Path(folder) / "profile.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    profile = Profile(folder=Path(folder), **{"name": Path(folder).name, **data})
    if profile.has_switch and not {"prctl"} <= set(profile.switch):
        raise UserError(f"{path}: [switch] needs prctl (the option number)")
    if profile.has_switch and not {"counter", "base", "max_fraction"} <= set(profile.proof):
        raise UserError(f"{path}: a profile with a [switch] needs [proof] counter, base and max_fraction")
    if profile.states.get("off", OFF_LABEL) != OFF_LABEL:
        raise UserError(f"{path}: [states] off must be {OFF_LABEL!r} (the plain state of every profile)")
    bad = sorted(set(profile.states) - set(STATES))
    if bad:
        raise UserError(f"{path}: [states] {', '.join(bad)}: allowed: {', '.join(STATES)}")
    return profile


def spec(profile):
    """What names the profile in an experiment: its name when that finds it, else its folder."""
    try:
        return profile.name if find(profile.name).resolve() == profile.folder.resolve() else str(profile.folder)
    except UserError:
        return str(profile.folder)


def default():
    """The profile that says `default = true` (verify, attribute, reproduce), else "none"."""
    for name in names():
        if load(name).default:
            return load(name)
    return load(NONE)


def of(exp):
    """The profile an experiment names (its `feature` option), else "none"."""
    return load(getattr(exp, "feature", None) or NONE)


def of_meta(meta):
    """The profile of a stored run: the one it names (metadata "feature", or its experiment's
    feature option); a run stored before profiles existed is the default profile's."""
    exp = meta.get("experiment") if isinstance(meta.get("experiment"), dict) else {}
    if "feature" in meta or "feature" in exp:
        named = meta.get("feature") or exp.get("feature") or NONE
    else:
        return default()
    try:
        return load(named)
    except UserError:
        return default()
