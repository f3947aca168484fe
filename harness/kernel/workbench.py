"""Workbenches: every kernel of one source built in one tree, from the objects of the closest one.

A source's imported git repository holds the stock commit and, through the worktrees series.apply
makes, every patched commit. Its workbench (cache/bench/<repo hash>) is one more worktree of that
repository plus a small pool of object folders ("slots"). A build checks the worktree out at the
exact commit it needs (git rewrites only the files that differ, so their mtimes are newer than any
object built from their old text) and runs make in the slot whose last kernel is closest: the
fewest differing config options, then the fewest differing files. make recompiles only what changed
and, through fixdep's per-option dependencies, what depends on a changed option.

Why this is correct: a slot's objects were built from the worktree as it was then; every file that
has differed since was rewritten by a later checkout, so it is newer than those objects. The
worktree is only ever moved by checkouts, under the workbench's lock. A build killed half-way leaves
the files it wrote after its in-progress marker: they are removed (and rebuilt), the rest is kept.

Cache entries stay keyed by the build's inputs (build.Build.key); a slot only lends objects.
"""
import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from harness import cache
from harness.kernel import sources
from harness.kernel.sources import git, git_out

POOL = 3          # object folders per source (HARNESS_OBJECT_POOL overrides)
FAR = 16          # with a free slot, a kernel this many options away from every built one starts cold
MARKER = "harness-build-in-progress"


def pool_size():
    try:
        return max(1, int(os.environ.get("HARNESS_OBJECT_POOL", POOL)))
    except ValueError:
        return POOL


@dataclass
class Bench:
    repo: Path        # the git repository every tree of the source belongs to
    path: Path        # cache/bench/<name>: tree/, obj/<slot>/, obj/<slot>.json

    @property
    def name(self):
        return self.path.name

    @property
    def tree(self):
        return self.path / "tree"


def for_source(source):
    """(Bench, None) for source's repository, or (None, why) when a kernel must be built in place:
    a tree with uncommitted changes, or a repository this user cannot write (a shared cache)."""
    path = Path(source.path)
    proc = git(path, "rev-parse", "--path-format=absolute", "--git-common-dir", check=False)
    if proc.returncode != 0:
        return None, f"{path} is not a git tree"
    common = Path(proc.stdout.strip())
    if not os.access(common, os.W_OK):
        return None, f"its repository {common.parent} is read-only here"
    dirty = git(path, "status", "--porcelain", "--untracked-files=no", check=False)
    if dirty.returncode != 0 or dirty.stdout.strip():
        return None, f"{path} has changes that are not committed"
    return Bench(common.parent, cache.root() / "bench" / cache.digest(str(common.parent))), None


def checkout(bench, commit):
    """Move the workbench's tree to commit (creating it the first time)."""
    tree = bench.tree
    if (tree / ".git").exists() and \
            git(tree, "checkout", "-q", "-f", "--detach", commit, check=False).returncode == 0:
        return
    if tree.exists():
        git(bench.repo, "worktree", "remove", "--force", "--force", str(tree), check=False)
        shutil.rmtree(tree, ignore_errors=True)
    git(bench.repo, "worktree", "prune", check=False)
    tree.parent.mkdir(parents=True, exist_ok=True)
    git(bench.repo, "worktree", "add", "-q", "--detach", str(tree), commit)


@contextlib.contextmanager
def locked(bench):
    """Only one build at a time moves a workbench's tree and writes its slots."""
    with cache.locked("bench", bench.name):
        yield


def _slots(bench):
    found = {}
    for meta in sorted((bench.path / "obj").glob("*.json")):
        try:
            found[meta.stem] = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
    return found


def _option_distance(a, b):
    keys = set(a) | set(b)
    return sum(1 for k in keys if a.get(k, "n") != b.get(k, "n"))


def _files_distance(bench, a, b):
    if a == b:
        return 0
    proc = git(bench.repo, "diff", "--name-only", a, b, check=False)
    return len(proc.stdout.split()) if proc.returncode == 0 else 10 ** 6


def choose(bench, want):
    """The slot to build `want` in and why: (slot name, base kernel's record or None, reason).

    want: {"key", "commit", "base", "options", "source_id"[, "expected"]}; options: what the
    fragments request; expected: the whole config a config-file base and the fragments ask for,
    compared with a slot's last final .config (its record's "config") when the bases differ."""
    slots = _slots(bench)
    if not slots:
        return "0", None, "no kernel of this source was built here before: a full build"
    scored = []
    for name, rec in slots.items():
        options = _option_distance(rec.get("options", {}), want["options"])
        if rec.get("base") != want["base"]:
            if want.get("expected") and rec.get("config"):
                options = _option_distance(rec["config"], want["expected"])
            else:
                options += 1000
        files = _files_distance(bench, rec.get("commit"), want["commit"])
        scored.append((options * 20 + files, options, files, name, rec))
    _, options, files, name, rec = min(scored)
    free = next((str(i) for i in range(pool_size()) if str(i) not in slots), None)
    if options > FAR and free is not None:
        return free, None, (f"the closest built kernel ({rec.get('key')}) differs in {options} config "
                            f"options: a full build in a new object folder")
    if rec.get("key") == want["key"]:
        return name, rec, "the same kernel's own objects"
    return name, rec, (f"objects of kernel {rec.get('key')} ({rec.get('source_id')}): {options} requested "
                       f"option(s) and {files} file(s) differ, the closest of {len(slots)} built")


def holding(bench, key):
    """The slot whose objects are now kernel `key`'s (its last build there finished), or None."""
    return next((name for name, rec in _slots(bench).items()
                 if rec.get("key") == key and rec.get("status") == "ok"), None)


def objdir(bench, slot):
    return bench.path / "obj" / slot


def record(bench, slot, want, status):
    """Remember what the slot's objects now are (for choosing the next base)."""
    meta = bench.path / "obj" / f"{slot}.json"
    tmp = meta.with_name(meta.name + ".partial")
    tmp.write_text(json.dumps({**want, "status": status, "when": time.time()}, indent=1) + "\n")
    tmp.rename(meta)


def recover(folder, say):
    """A build killed half-way (SIGKILL, a reboot) leaves half-written files that make would take
    for finished. Of the files written after the in-progress marker, an object (.o) whose kbuild
    command file (.NAME.cmd, written after the object succeeded) is as new as it is complete and
    kept; every other one is removed and made again, with a command file of that build's: kbuild's
    if_changed runs a command again only when its saved command differs or is gone, and a rule
    that writes several files at once (selinux's flask.h and av_permissions.h) would otherwise
    see one of them made and never make the other. What is older is from a build that finished."""
    marker = folder / MARKER
    if not marker.exists():
        return
    since = marker.stat().st_mtime
    removed = kept = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            if path == str(marker) or name.endswith(".cmd"):
                continue
            try:
                mtime = os.lstat(path).st_mtime
                if mtime < since:
                    continue
                cmd = os.path.join(dirpath, f".{name}.cmd")
                fresh = os.path.exists(cmd) and os.lstat(cmd).st_mtime >= since
                if name.endswith(".o") and fresh and os.lstat(cmd).st_mtime >= mtime:
                    kept += 1
                    continue
                os.unlink(path)
                removed += 1
                if fresh:
                    os.unlink(cmd)
            except OSError:
                continue
    (folder / "harness-config.sha").unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    say(f"the last build in this folder was interrupted: removed the {removed} files it may have "
        f"left half-written, kept {kept} finished objects")


def compiled_since(folder, since):
    """How many objects (.o) were written in folder since `since` (a time.time())."""
    count = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".o"):
                try:
                    count += os.stat(os.path.join(dirpath, name)).st_mtime >= since
                except OSError:
                    continue
    return count


def source_at(source, bench):
    """source as the workbench's tree (same id and commit: the same kernel, another path)."""
    return sources.SourceTree(id=source.id, path=bench.tree, spec=source.spec, version=source.version,
                              commit=source.commit)


def head(bench):
    return git_out(bench.tree, "rev-parse", "HEAD")
