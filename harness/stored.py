"""The files a run leaves behind, read back as input: one reader per kind, each checking the shape
its schema (docs/results.md) gives and naming the file, the line and the field it cannot use.

- metadata(path): a run's metadata.json: an object; run_id, started, accel, timing, qemu ... text;
  kernels an object of objects; experiment, host, design objects. A broken one is a UserError (exit 2).
- run(path): the same metadata.json as a typed value (Run: its run_id, times, mode, host, profile,
  kernels with their boots and tasks; run_of(dict) makes one of a metadata dict); what the
  statistics and the report take; timing(meta) and mode(meta) answer for a run's dict or a Run, the one
  place a run's timing and mode are computed.
- json_object(path): a JSON file holding one object (<kernel>/kernel.json).
- renamed(record): the record (or a kernel's facts, a task) with the field names of runs stored
  before feature profiles (feature.LEGACY_FIELDS) renamed to the generic ones; metadata() and
  records() apply it to everything they read, so no consumer sees an old name. (lava's import
  applies it too: LAVA's results of jobs exported before profiles are records read from elsewhere.)
- records(path, metrics): a <kernel>/<workload>.jsonl: one JSON object per line; `type` text,
  `boot` a whole number from 1, every declared metric a finite number. A last line cut short by a
  crash is skipped; a broken line before it is an error. A non-finite number (NaN, Infinity: JSON
  has none, Python writes them) in an old run is flagged once and left out of the tables.
- finite(value): a summary about to be stored (calibration.json) with NaN and infinities as null
  (JSON has no such numbers; "not computed").

A run's calibration.json is written, never read back; a history database is checked by
harness.ci.history and harness.database (SQLite: its schema is its tables).
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from harness import feature, ui
from harness.errors import InfraError, UserError

TEXT_FIELDS = ("run_id", "started", "finished", "accel", "accel_reason", "timing", "qemu", "command", "harness_sha")


def finite(value):
    """A JSON-like value with every NaN or infinity (numpy's too) replaced by None."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return float(value) if math.isfinite(value) else None
    return value


def non_finite(record):
    """The fields of a flat record that hold NaN or an infinity."""
    return [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]


def renamed(record):
    """A record with its old field names replaced by the generic ones (a new name present wins)."""
    if not any(k in record for k in feature.LEGACY_FIELDS):
        return record
    out = {}
    for key, value in record.items():
        new = feature.LEGACY_FIELDS.get(key, key)
        if new not in out or new == key:
            out[new] = value
    return out


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise InfraError(f"cannot read {path}: {exc.strerror}") from None


def json_object(path, consequence="", holds=""):
    """A JSON file that must hold one object (a kernel's kernel.json, a run's metadata.json)."""
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}){consequence}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: must be a JSON object{holds}, got {type(data).__name__}")
    return data


def metadata(path):
    """A run's metadata.json, its shape checked."""
    data = json_object(path, "; the run cannot be read", " (the run's facts)")
    for key in TEXT_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UserError(f"{path}: field {key} = {data[key]!r}: allowed: text")
    kernels = data.get("kernels", {})
    if not isinstance(kernels, dict) or not all(isinstance(v, dict) for v in kernels.values()):
        raise UserError(f"{path}: field kernels: allowed: an object of label -> object")
    for label, info in kernels.items():
        where = f"{path}: field kernels.{label}"
        if not isinstance(info.get("tasks", []), list) or not all(isinstance(t, dict) for t in info.get("tasks", [])):
            raise UserError(f"{where}.tasks: allowed: a list of objects")
        boots = info.get("boots", {})
        if not isinstance(boots, dict) or not all(isinstance(b, dict) for b in boots.values()):
            raise UserError(f"{where}.boots: allowed: an object of boot number -> object")
        if info.get("status") is not None and not isinstance(info["status"], str):
            raise UserError(f"{where}.status = {info['status']!r}: allowed: text")
    for key in ("experiment", "host", "design"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise UserError(f"{path}: field {key}: allowed: an object")
    for label, info in kernels.items():          # a run stored before profiles: the generic names
        kernels[label] = renamed(info)
        if "tasks" in info:
            kernels[label]["tasks"] = [renamed(t) for t in info["tasks"]]
    return data


@dataclass(frozen=True)
class Kernel:
    """A kernel of a run as metadata.json holds it (docs/results.md, kernels.<label>)."""
    label: str
    status: str = None
    boots: dict = field(default_factory=dict)     # boot number (int) -> its facts
    tasks: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)     # every field as written

    @property
    def ok(self):
        return self.status == "ok"


@dataclass(frozen=True)
class Run:
    """A run's metadata.json as a typed value (docs/results.md, metadata.json)."""
    path: Path
    run_id: str
    started: str = None
    finished: str = None
    interrupted: str = None
    accel: str = None
    timing: str = "real"
    command: str = None
    harness_sha: str = None
    experiment: dict = None
    design: dict = field(default_factory=dict)
    kernels: dict = field(default_factory=dict)   # label -> Kernel
    data: dict = field(default_factory=dict)      # every field as written
    accel_reason: str = None
    qemu: str = None
    host: dict = field(default_factory=dict)
    attribution: dict = None                      # a run of harness attribute: its steps

    @property
    def mode(self):
        return mode(self.data)

    @property
    def profile(self):
        """The run's feature profile (feature.of_meta: the one it names, else the default)."""
        return feature.of_meta(self.data)


def timing(meta):
    """A run's timing mode: its `timing`, or "real" for a run from before the harness wrote it
    down (every run was real-time then). meta: a metadata dict or a Run."""
    if isinstance(meta, Run):
        return meta.timing
    return meta.get("timing") or "real"


def mode(meta):
    """(accel, timing) of a run, what decides whether two runs' times compare; (None, None) when
    no kernel got as far as booting. meta: a metadata dict or a Run."""
    data = meta.data if isinstance(meta, Run) else meta
    return (data["accel"], timing(data)) if data.get("accel") else (None, None)


def run(path):
    """A run's metadata.json (the file, or its run folder) as a Run, its shape checked."""
    path = Path(path)
    path = path / "metadata.json" if path.is_dir() else path
    return run_of(metadata(path), path.parent)


def run_of(data, folder=None):
    """A run's metadata (a dict of metadata.json's shape, as metadata() gives it) as a Run."""
    kernels = {label: Kernel(label, info.get("status"),
                             {int(n) if str(n).isdigit() else n: b for n, b in info.get("boots", {}).items()},
                             list(info.get("tasks", [])), info)
               for label, info in data.get("kernels", {}).items()}
    return Run(folder, data.get("run_id") or (folder.name if folder else None), data.get("started"),
               data.get("finished"), data.get("interrupted"), data.get("accel"), timing(data), data.get("command"),
               data.get("harness_sha"), data.get("experiment"), data.get("design") or {}, kernels, data,
               data.get("accel_reason"), data.get("qemu"), data.get("host") or {}, data.get("attribution"))


def records(path, metrics=(), skip_other_types=False):
    """The records of a JSONL file, each checked (see the module's docstring)."""
    lines = _read(path).splitlines()
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    out, flagged = [], set()
    for i, (number, line) in enumerate(numbered):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(numbered) - 1:
                ui.warn(f"{path}:{number}: a last line cut short (a crash while writing) left out")
                break
            raise UserError(f"{path}:{number}: not a JSON record; the file is damaged") from None
        where = f"{path}:{number}"
        if not isinstance(rec, dict):
            raise UserError(f"{where}: a record must be a JSON object, got {type(rec).__name__}")
        if not isinstance(rec.get("type", "record"), str):
            raise UserError(f"{where}: field type = {rec['type']!r}: allowed: text")
        boot = rec.get("boot", 1)
        if isinstance(boot, bool) or not isinstance(boot, int) or boot < 1:
            raise UserError(f"{where}: field boot = {boot!r}: allowed: a whole number from 1")
        if skip_other_types and rec.get("type", "record") != "record":
            continue
        for key in metrics:
            value = rec.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UserError(f"{where}: field {key} = {value!r}: allowed: a number")
        for key in non_finite(rec):
            flagged.add(key)
            rec[key] = None
        out.append(renamed(rec))
    if flagged:
        ui.warn(f"{path}: non-finite values in {', '.join(sorted(flagged))} left out of the tables")
    return out
