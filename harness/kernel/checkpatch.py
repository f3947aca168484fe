"""Reviewer's style check: the kernel's own scripts/checkpatch.pl on each patch of a series.

It runs from the source tree the series applies to (so checkpatch sees that tree's spelling list,
const structs and git history) with its default options, the Signed-off-by check included, and
reads each patch's counts from the `total: N errors, M warnings, ...` line.
"""
import re
import tempfile
from pathlib import Path

from harness import tools
from harness.errors import InfraError, UserError

TIMEOUT = 300     # seconds for one patch; checkpatch takes well under a second on a normal one
FIRST = 5         # ERROR/WARNING lines kept per patch
TOTAL = re.compile(r"^total: (\d+) errors, (\d+) warnings, (?:(\d+) checks, )?(\d+) lines checked", re.M)
PROBLEM = re.compile(r"^(ERROR|WARNING|CHECK): ")
WHERE = re.compile(r"^#\d+: FILE: (\S+?):(\d+):")


def _parse(output):
    """(errors, warnings, checks, first problem lines) from checkpatch's output, or None."""
    total = TOTAL.search(output)
    if not total:
        return None
    lines = output.splitlines()
    first = []
    for i, line in enumerate(lines):
        if PROBLEM.match(line) and not line.startswith("CHECK:") and len(first) < FIRST:
            where = WHERE.match(lines[i + 1]) if i + 1 < len(lines) else None
            first.append(f"{line} ({where[1]}:{where[2]})" if where else line)
    return int(total[1]), int(total[2]), int(total[3] or 0), first


def _check(script, source_path, patch, tmp):
    mail = Path(tmp) / f"{patch.index:04d}.patch"
    mail.write_text(patch.text)
    try:
        proc = tools.run(["perl", str(script), str(mail)], cwd=source_path, check=False, timeout=TIMEOUT)
    except InfraError as exc:
        raise InfraError(f"checkpatch.pl on patch {patch.index} '{patch.title}': {exc}") from None
    parsed = _parse(proc.stdout)
    if parsed is None or proc.returncode not in (0, 1):
        why = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1][:300]
        raise InfraError(f"checkpatch.pl failed on patch {patch.index} '{patch.title}' "
                         f"(exit {proc.returncode}, no 'total:' line): {why}",
                         log_tail="\n".join((proc.stdout + proc.stderr).splitlines()[-20:]))
    errors, warnings, checks, first = parsed
    return {"index": patch.index, "title": patch.title, "errors": errors, "warnings": warnings,
            "checks": checks, "first": first}


def run(source_path, series):
    """checkpatch.pl of the tree at source_path on every patch of series, as one dict per patch."""
    source_path = Path(source_path)
    script = source_path / "scripts" / "checkpatch.pl"
    if not script.exists():
        raise UserError(f"{source_path} has no scripts/checkpatch.pl; pass a full kernel tree")
    with tempfile.TemporaryDirectory(prefix="checkpatch-") as tmp:
        return [_check(script, source_path, patch, tmp) for patch in series.patches]


def table(results):
    """A plain-text table: one row a patch, then the first problems of each patch below it."""
    rows = [("#", "patch", "errors", "warnings", "checks")]
    for r in results:
        title = r["title"] if len(r["title"]) <= 60 else r["title"][:57] + "..."
        rows.append((str(r["index"]), title, str(r["errors"]), str(r["warnings"]), str(r["checks"])))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [f"{a:>{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d:>{widths[3]}}  {e:>{widths[4]}}"
             for a, b, c, d, e in rows]
    for r in results:
        if r["first"]:
            lines.append("")
            lines.append(f"patch {r['index']}:")
            lines += [f"  {line}" for line in r["first"]]
    return "\n".join(lines)
