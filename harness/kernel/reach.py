"""Which of a series' code a build reaches: the coverage config, and per patch and config the
changed files compiled and the changed #if regions compiled.

derive() reads the series' diffs against the patched tree: the files each patch touches, the Kbuild
gates of every .c file (gates.makefile_gates), the #if blocks around every changed line
(gates.regions, at the commit of the patch that changes it), and turns the positive CONFIG_
symbols into a fragment with their Kconfig prerequisites (kdeps.closure). The fragment is what
`harness verify` builds as its "coverage" config beside the lean ones.

reached() tells, for one build (patch k, config), per file the series has touched by patch k:
compiled or not -- from the object folder when that build just ran there (the object, or for a
header, a .cmd file listing it among an object's dependencies), else from the final .config
through the same Kbuild gates -- and per changed hunk whether its #if nesting holds under
that .config (None when a condition names a macro .config does not decide).
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.kernel import gates, kconfig, kdeps
from harness.kernel.sources import git


@dataclass
class Hunk:
    patch: int
    title: str
    path: str
    first: int
    last: int
    conditions: list          # the enclosing #if conditions, outermost first


@dataclass
class Derivation:
    files: dict = field(default_factory=dict)        # path -> first patch touching it
    makefile: dict = field(default_factory=dict)     # .c path -> (symbols, why)
    hunks: list = field(default_factory=list)        # [Hunk]
    chosen: dict = field(default_factory=dict)       # symbol -> why
    unknown: list = field(default_factory=list)      # gating symbols no Kconfig defines

    def fragment(self, title):
        return kdeps.fragment_text(self.chosen, title)

    def summary(self):
        c = sum(p.endswith(".c") for p in self.files)
        return (f"{len(self.files)} files ({c} .c), {len(self.hunks)} hunks, "
                f"{len(self.chosen)} options in the coverage config")


def _show(tree, commit, path):
    proc = git(tree, "show", f"{commit}:{path}", check=False)
    return proc.stdout if proc.returncode == 0 else None


def derive(patches, tree, commits, kconfig_texts=None, extra_for=None):
    """A Derivation for patches (objects with .index, .title) applied as commits in tree (the
    patched tree, one commit per patch); kconfig_texts defaults to the tree's own. extra_for(files)
    names more symbols to turn on (e.g. the options the touched areas' selftests need)."""
    d = Derivation()
    final = commits[-1]
    wanted = []
    for patch, commit in zip(patches, commits):
        # the commit as applied: its line numbers are the tree's (a mail's may be offset)
        diff = git(tree, "show", "--format=", "--no-renames", commit).stdout
        for path in gates.changed_lines(diff):
            d.files.setdefault(path, patch.index)
        for path, first, last in gates.hunks(diff):
            text = _show(tree, commit, path) or ""
            blocks = gates.regions(text)
            conds = gates.enclosing(blocks, first)
            d.hunks.append(Hunk(patch.index, patch.title, path, first, last, conds))
            for cond in conds:
                wanted += sorted(gates.positive_symbols(cond))
    for path in d.files:
        if path.endswith((".c", ".S")):
            symbols, why = gates.makefile_gates(lambda rel: _show(tree, final, rel), path)
            d.makefile[path] = (symbols, why)
            wanted += sorted(symbols)
    if extra_for:
        wanted += [(s, "the touched areas' selftests need it") for s in extra_for(list(d.files))]
    texts = kconfig_texts if kconfig_texts is not None else kdeps.tree_texts(tree)
    entries = kdeps.index(texts)
    d.chosen, d.unknown = kdeps.closure(entries, list(dict.fromkeys(wanted)))
    d.unknown = [u for u in dict.fromkeys(d.unknown)]
    return d


def _headers_in_cmds(objdir, headers):
    """The headers (tree-relative paths) some object's .cmd file lists as a dependency."""
    found, wanted = set(), {h: re.compile(rf"(^|[/\s]){re.escape(h)}\b") for h in headers}
    for folder, _, files in os.walk(objdir):
        for name in files:
            if not (name.startswith(".") and name.endswith(".o.cmd")):
                continue
            text = Path(folder, name).read_text(errors="replace")
            for h, rx in wanted.items():
                if h not in found and h in text and rx.search(text):
                    found.add(h)
            if len(found) == len(wanted):
                return found
    return found


def file_compiled(path, config, makefile, objdir=None, headers_seen=(), objects=None):
    """(compiled True/False/None, how) of one changed file under one build (objects: the .o
    files an objects-only build compiled)."""
    if path.endswith((".c", ".S")):
        obj = re.sub(r"\.[cS]$", ".o", path)
        if objects is not None:
            return obj in objects, "object"
        if objdir and Path(objdir).is_dir():
            p = Path(objdir) / obj
            cmd = p.parent / f".{p.name}.cmd"
            return p.exists() or cmd.exists(), "object"
        symbols, _ = makefile.get(path, (set(), []))
        return all(config.get(f"CONFIG_{s}", "n") in ("y", "m") for s in symbols), ".config"
    if path.endswith(".h"):
        if objdir and Path(objdir).is_dir():
            return path in headers_seen, ".cmd"
        return None, "header"
    return None, "not code"


def reached(derivation, k, config_text, objdir=None, objects=None):
    """{"files": {path: (compiled, how)}, "hunks": [(Hunk, compiled)]} for the build of patches
    1..k under a final .config (objdir: the object folder that build just used, if it did)."""
    config = kconfig.parse(config_text, ".config")
    files = [p for p, first in derivation.files.items() if first <= k]
    headers = [p for p in files if p.endswith(".h")]
    seen = _headers_in_cmds(objdir, headers) if objdir and headers else set()
    out = {p: file_compiled(p, config, derivation.makefile, objdir, seen, objects) for p in files}
    hunks = []
    for h in derivation.hunks:
        if h.patch > k:
            continue
        compiled_file = out.get(h.path, (None,))[0]
        inside = gates.compiled_under(h.conditions, config)
        hunks.append((h, False if compiled_file is False else inside))
    return {"files": out, "hunks": hunks}


def counts(result):
    """(files compiled, files, hunks compiled, hunks) of one reached() result."""
    files = result["files"].values()
    return (sum(c is True for c, _ in files), sum(c is not None for c, _ in files),
            sum(c is True for _, c in result["hunks"]), len(result["hunks"]))


def _short(title, width=44):
    return title if len(title) <= width else title[:width - 3] + "..."


def table(patches, builds):
    """Per patch and config: 'files a/b, hunks c/d' compiled; then per patch the files and hunks
    no config compiled. builds: {(k, label): reached() result}."""
    labels = list(dict.fromkeys(label for _, label in builds))
    rows = [("#", "patch", *labels, "compiled in no config")]
    for patch in patches:
        k = patch.index
        cells, missing = [], None
        for label in labels:
            r = builds.get((k, label))
            if r is None:
                cells.append("-")
                continue
            fc, fn, hc, hn = counts(r)
            cells.append(f"files {fc}/{fn}, hunks {hc}/{hn}")
            not_here = {p for p, (c, _) in r["files"].items() if c is False}
            missing = not_here if missing is None else missing & not_here
        rows.append((str(k), _short(patch.title), *cells, ", ".join(sorted(missing or [])) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(f"{c:<{w}}" for c, w in zip(row, widths)).rstrip() for row in rows)


def never(builds):
    """(files, hunks) no build compiled at some patch from the one changing them: files as
    {path: [patches]}, hunks as [Hunk] no config compiled at the last patch built."""
    files = {}
    for k in sorted({k for k, _ in builds}):
        at_k = [r for (kk, _), r in builds.items() if kk == k]
        paths = {p for r in at_k for p in r["files"]}
        for p in sorted(paths):
            states = [r["files"][p][0] for r in at_k if p in r["files"]]
            if True not in states and False in states:
                files.setdefault(p, []).append(k)
    last = max((k for k, _ in builds), default=None)
    hunks = []
    if last is not None:
        at_last = [r for (kk, _), r in builds.items() if kk == last]
        for i, h in enumerate(at_last[0]["hunks"] if at_last else []):
            if not any(r["hunks"][i][1] is True for r in at_last):
                hunks.append(h[0])
    return files, hunks


def verdict(builds):
    """(ok, summary) of what the builds reached: ok only when every changed file was compiled
    in some config at every patch from the one changing it."""
    files, hunks = never(builds)
    last = max((k for k, _ in builds), default=None)
    if last is None:
        return False, "no build reached the series' code"
    at_last = [r for (kk, _), r in builds.items() if kk == last]
    touched = {p for r in at_last for p, (c, _) in r["files"].items() if c is not None}
    total = len(at_last[0]["hunks"])
    text = (f"{len(touched) - len(files)}/{len(touched)} changed files compiled at every patch from "
            f"the one changing them, {total - len(hunks)}/{total} hunks compiled in some config")
    if files:
        text += "; not compiled: " + ", ".join(f"{p} (patches {_ranges(ks)})" for p, ks in files.items())
    return not files, text


def _ranges(numbers):
    out, start, prev = [], None, None
    for n in sorted(numbers) + [None]:
        if start is None:
            start = prev = n
        elif n is not None and n == prev + 1:
            prev = n
        else:
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = n
    return ",".join(out)


def hunk_lines(hunks):
    """'path:first-last  [patch N] title' per hunk, with its #if conditions."""
    out = []
    for h in hunks:
        where = f"{h.path}:{h.first}" + (f"-{h.last}" if h.last != h.first else "")
        cond = " && ".join(h.conditions) if h.conditions else "no #if"
        out.append(f"{where}  [patch {h.patch}] {_short(h.title, 60)}  ({cond})")
    return out
