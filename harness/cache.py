"""Content-addressed caches outside the repository.

Everything expensive (source trees, kernel builds, guest images, the accelerator probe) lives under
one root, keyed by a hash of what produced it. An entry is built in a temporary sibling and renamed
into place, so a crash never leaves a half-built entry that looks complete.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path


def root():
    base = os.environ.get("HARNESS_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "kernel-harness"


def shared_roots():
    """Caches read, never written, after one's own: $HARNESS_SHARED_CACHE (folders separated by
    ':'), else /var/cache/kernel-harness when it exists. Root fills one once (HARNESS_CACHE=DIR
    harness image / build ...); runner users find images, kernels and sources there."""
    listed = os.environ.get("HARNESS_SHARED_CACHE")
    if listed is None:
        listed = "/var/cache/kernel-harness" if Path("/var/cache/kernel-harness").is_dir() else ""
    return [Path(p) for p in listed.split(":") if p and Path(p) != root()]


def find(kind, key, marker):
    """The entry whose `marker` file exists: one's own, else the first shared cache's; or None."""
    for base in [root(), *shared_roots()]:
        found = base / kind / key
        if (found / marker).exists():
            return found
    return None


def digest(*parts, length=16):
    """A short stable hash of strings, bytes or JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, str):
            data = part.encode()
        else:
            data = json.dumps(part, sort_keys=True).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:length]


def entry(kind, key):
    return root() / kind / key


@contextlib.contextmanager
def locked(kind, key):
    """Serialise work on one cache entry between concurrent harness processes."""
    lockdir = root() / "locks"
    lockdir.mkdir(parents=True, exist_ok=True)
    with open(lockdir / f"{kind}-{key}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _remove(path):
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def scratch(path, remove=_remove, make=True):
    """The folder `path`, fresh (what an earlier crash left there is removed first), for building
    something that is renamed into place when done (move_into_place); if the block fails, the folder is
    removed. remove(path) deletes it (a git worktree needs git's own removal); make: create it."""
    remove(path)
    if make:
        path.mkdir(parents=True)
    try:
        yield path
    except BaseException:
        remove(path)
        raise


def move_into_place(done, final):
    """Put the finished scratch folder `done` in place as `final`, replacing what is there."""
    shutil.rmtree(final, ignore_errors=True)
    done.rename(final)


@contextlib.contextmanager
def building(kind, key):
    """Yield a scratch directory; on success it becomes the entry, on failure it is removed."""
    final = entry(kind, key)
    with scratch(final.with_name(final.name + ".partial")) as work:
        yield work
    move_into_place(work, final)
