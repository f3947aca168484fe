"""The files a run leaves behind, read back as input: one reader per kind, each checking the shape
its schema (docs/results.md) gives and naming the file, the line and the field it cannot use.

- metadata(path): a run's metadata.json: an object; run_id, started, accel, timing text; kernels
  an object of objects; experiment an object. A broken one is a UserError (exit 2).
- json_object(path): a JSON file holding one object (<kernel>/kernel.json).
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
from pathlib import Path

from harness import ui
from harness.errors import InfraError, UserError

TEXT_FIELDS = ("run_id", "started", "finished", "accel", "timing", "command", "harness_sha")


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
    if data.get("experiment") is not None and not isinstance(data["experiment"], dict):
        raise UserError(f"{path}: field experiment: allowed: an object")
    return data


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
                break               # a line cut short by a crash
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
        out.append(rec)
    if flagged:
        ui.warn(f"{path}: non-finite values in {', '.join(sorted(flagged))} left out of the tables")
    return out
