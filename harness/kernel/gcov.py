"""gcov coverage kernels: the series' own .c files profiled, their line counts read on the host.

A coverage kernel is asked for with a config fragment (fragment_text): CONFIG_GCOV_KERNEL and
DEBUG_FS on, GCOV_PROFILE_ALL off, and one `# harness-gcov-profile: path/file.c` comment per file
to profile. The comments are part of the fragment's text, so they are part of the build's cache
key; merge_config.sh ignores them. The build turns them into make variables
`GCOV_PROFILE_<stem>.o=...` on make's command line (Kbuild's per-object switch, read in
scripts/Makefile.lib), y only in the files' own folders (make_vars): the tree is not edited, so the
source the caches key on stays the series' own and the pooled object folders stay consistent
(Kbuild recompiles an object whose command line changed).

The objects' notes files (.gcno, written beside each .o in the pooled object folder) are copied
into the cached kernel (gcov/<path>.gcno) so later kernels built in that folder cannot change
them. In the guest, /sys/kernel/debug/gcov holds one .gcda per profiled object (harness.measure.
coverage copies them); here `gcov --json-format --stdout` on the .gcno + .gcda gives the counts of
every line that has code, headers included (inline functions counted in the .c files that use
them). The host's gcc is the kernel's compiler, so its gcov reads the files' format.
"""
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

from harness import tools
from harness.errors import HarnessError

MARK = "# harness-gcov-profile:"
NOTES = "gcov"                     # the folder of the cached kernel holding the .gcno files
OPTIONS = {"CONFIG_DEBUG_FS": "y", "CONFIG_GCOV_KERNEL": "y", "CONFIG_GCOV_PROFILE_ALL": "n"}


def fragment_text(files, title):
    """A coverage kernel's fragment profiling the .c files among `files` (tree-relative paths)."""
    wanted = sorted({f for f in files if f.endswith(".c")})
    lines = [f"# {title}", "# gcov coverage kernel: only these files are profiled"]
    lines += [f"{k}=y" if v == "y" else f"# {k} is not set" for k, v in OPTIONS.items()]
    return "\n".join(lines + [f"{MARK} {f}" for f in wanted]) + "\n"


def profiled(fragments):
    """The .c files the fragments (kconfig.Fragment) ask to profile, in order ([]: not gcov)."""
    found = []
    for frag in fragments:
        for line in frag.text.splitlines():
            if line.startswith(MARK):
                path = line[len(MARK):].strip()
                if path and path not in found:
                    found.append(path)
    return found


def make_vars(files):
    """make's command-line variables that profile `files` (Kbuild's GCOV_PROFILE_<stem>.o): y in
    the files' own folders only ($(obj) is the folder Kbuild is building), n elsewhere, so a file
    of the same name in a folder that must not be profiled (arch/x86/boot/memory.c: real-mode
    code) is not. A command-line variable is expanded where it is used, in every sub-make."""
    folders = {}
    for f in files:
        folders.setdefault(Path(f).stem, []).append(str(Path(f).parent))
    return [f"GCOV_PROFILE_{stem}.o=$(if $(filter {' '.join(sorted(dirs))},$(obj)),y,n)"
            for stem, dirs in sorted(folders.items())]


def keep_notes(objdir, files, out):
    """Copy the profiled objects' .gcno from the object folder into out/gcov/ (same relative
    paths); the files without one (not compiled by this config) are returned."""
    missing = []
    for f in files:
        note = Path(objdir) / Path(f).with_suffix(".gcno")
        if not note.exists():
            missing.append(f)
            continue
        target = Path(out) / NOTES / Path(f).with_suffix(".gcno")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(note, target)
    return missing


def notes(kernel_dir):
    """{tree-relative .c path: .gcno path} of a cached coverage kernel ({}: not one)."""
    root = Path(kernel_dir) / NOTES
    return {str(p.relative_to(root).with_suffix(".c")): p for p in sorted(root.rglob("*.gcno"))}


def tree_relative(name, trees):
    """A file name as gcov reports it made relative to the kernel tree (or the object folder:
    generated headers); None for a file outside them (a compiler header)."""
    path = os.path.normpath(name)
    for tree in trees:
        tree = os.path.normpath(str(tree))
        if path.startswith(tree + os.sep):
            return path[len(tree) + 1:]
    return None if os.path.isabs(path) or path.startswith("..") else path


def parse(report, trees=()):
    """{file: {line: count}} from one gcov JSON report (text or dict); file names made tree-relative
    (tree_relative); lines without code are absent."""
    data = json.loads(report) if isinstance(report, (str, bytes)) else report
    cwd = data.get("current_working_directory", "")
    counts = {}
    for entry in data.get("files", []):
        name = entry["file"]
        if not os.path.isabs(name) and cwd:           # relative to the folder gcc compiled in
            name = os.path.normpath(os.path.join(cwd, name))
        rel = tree_relative(name, trees)
        if rel is None:
            continue
        lines = counts.setdefault(rel, {})
        for line in entry.get("lines", []):
            n = line["line_number"]
            lines[n] = lines.get(n, 0) + int(line["count"])
    return counts


def merge(into, counts):
    """Add counts ({file: {line: count}}) into `into`, in place; returns it."""
    for f, lines in counts.items():
        mine = into.setdefault(f, {})
        for n, c in lines.items():
            mine[n] = mine.get(n, 0) + c
    return into


def line_counts(kernel_dir, gcda, trees=()):
    """{file: {line: count}} of one task: the cached kernel's .gcno with the task's .gcda files
    (gcda: {tree-relative .c path: bytes}; a profiled file without one counts zero everywhere)."""
    total = {}
    with tempfile.TemporaryDirectory(prefix="harness-gcov-") as work:
        for src, note in notes(kernel_dir).items():
            stem = Path(work) / Path(src).with_suffix("")
            stem.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(note, stem.with_suffix(".gcno"))
            if src in gcda:
                stem.with_suffix(".gcda").write_bytes(gcda[src])
            proc = tools.run(["gcov", "--json-format", "--stdout", str(stem.with_suffix(".gcno"))],
                             cwd=work, check=False)
            if proc.returncode != 0 or not proc.stdout.strip():
                raise HarnessError(f"gcov could not read {src}'s coverage data: "
                                   f"{(proc.stderr or '').strip()[:300]}")
            for report in _reports(proc.stdout):
                merge(total, parse(report, trees))
    return total


def _reports(text):
    """gcov --stdout prints one JSON document per line (one per data file)."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)


def compact(counts):
    """counts as stored in a run: {file: [[line, count], ...]} sorted (JSON keys are strings)."""
    return {f: sorted([n, c] for n, c in lines.items()) for f, lines in sorted(counts.items())}


def expand(stored):
    """compact()'s inverse."""
    return {f: {int(n): int(c) for n, c in pairs} for f, pairs in stored.items()}


def read_compact(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        return expand(json.load(fh))


