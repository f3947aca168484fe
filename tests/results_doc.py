"""docs/results.md against a run folder, both ways: every file and field a run holds is documented
there, and every field documented as `always` written is in the run (tests/real/test_spine.py on a
real run; tests/unit/test_results_schema.py on a built one, and that a gap is caught)."""
import fnmatch
import json
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def sections(text=None):
    """{section: {field: written always?}} from the doc's '### `section`' tables."""
    out, section = {}, None
    for line in (text if text is not None else DOC.read_text()).splitlines():
        heading = re.match(r"^#{2,3} (?:`([^`]+)`)?", line)
        if heading:
            section = heading.group(1)
            if section:
                out[section] = {}
            continue
        if section and line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            for name in re.findall(r"`([^`]+)`", cells[0]):
                out[section][name] = cells[2] == "always"
    return out


def file_patterns(text=None):
    """The paths of the doc's first table as glob patterns (`<kernel>/<workload>.md`, `.csv`:
    `*/*.md`, `*/*.csv`; a bare name after a path is in that path's folder)."""
    patterns = []
    for line in (text if text is not None else DOC.read_text()).splitlines():
        if not line.startswith("| `") or "| what it is |" in line:
            continue
        first = line.strip("|").split("|")[0]
        names = re.findall(r"`([^`]+)`", first)
        if not names or ("/" not in names[0] and "." not in names[0]):
            continue
        folder = names[0].rsplit("/", 1)[0] + "/" if "/" in names[0] else ""
        stem = names[0].rsplit(".", 1)[0]
        for name in names:
            if name.startswith("."):
                name = stem + name
            elif "/" not in name and folder:
                name = folder + name
            patterns.append(re.sub(r"<[^>]+>", "*", name).rstrip("/"))
    return patterns


def _check(where, obj, documented, problems):
    for key in obj:
        if key not in documented:
            problems.append(f"{where}: field {key} is written but not documented")
    for key, always in documented.items():
        if always and key not in obj:
            problems.append(f"{where}: field {key} is documented as always written but missing")


def _manifest_fields(workload):
    from harness.analysis import stats
    m = stats.manifest(workload)
    return set(m.get("metrics", {})) | set(m.get("params", {}))


def gaps(run_dir, text=None):
    """Every disagreement between the run folder and the doc, as lines (empty: none)."""
    run_dir, doc, problems = Path(run_dir), sections(text), []
    patterns = file_patterns(text)
    for path in sorted(run_dir.rglob("*")):
        rel = str(path.relative_to(run_dir))
        if path.is_file() and not any(fnmatch.fnmatch(rel, p) for p in patterns):
            problems.append(f"{rel}: a file the doc does not describe")
    meta = json.loads((run_dir / "metadata.json").read_text())
    _check("metadata.json", meta, doc["metadata.json"], problems)
    for name in ("host", "design", "image"):
        if isinstance(meta.get(name), dict):
            _check(name, meta[name], doc[name], problems)
    for label, kernel in meta.get("kernels", {}).items():
        _check(f"kernels.{label}", kernel, doc["kernels.<label>"], problems)
        for n, boot in kernel.get("boots", {}).items():
            _check(f"kernels.{label}.boots.{n}", boot, doc["kernels.<label>.boots.<n>"], problems)
        for i, task in enumerate(kernel.get("tasks", [])):
            _check(f"kernels.{label}.tasks[{i}]", task, doc["kernels.<label>.tasks[]"], problems)
    record_doc = {**{k: False for k in doc["records: fork workloads"]}, **doc["records"]}
    for path in sorted(run_dir.glob("*/*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            record, where = json.loads(line), f"{path.relative_to(run_dir)}:{number}"
            if path.name.startswith("selftest-"):
                _check(where, record, doc["selftest records"], problems)
                continue
            own = {k: False for k in _manifest_fields(record.get("workload", path.stem))}
            _check(where, record, {**own, **record_doc}, problems)
    return problems
