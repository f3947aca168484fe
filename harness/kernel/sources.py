"""Kernel sources: turn a user's spec into an immutable, cached tree with a stable id.

Specs:
  PATH                         a local tree (a git checkout or a plain directory)
  https://.../linux-X.Y.tar.xz a release tarball (kernel.org layout); append #sha256=HEX to pin it
  git+URL#REF                  a git repository and a ref (tag, branch or commit); git+file:///... works
  debian:linux-source-X.Y      Debian's kernel source package (installed with apt, read from /usr/src)

Every kind is imported into a git repository under the cache whose single commit holds the tree, so
the id is content-based (the git tree hash): the same tree reached two ways gets the same id. Builds
use O= and never write into it.
"""
import hashlib
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from harness import cache, safety, tools, ui
from harness.errors import InfraError, UserError

# safe.directory: a tree in a shared cache belongs to the user who imported it
GIT_ID = ["-c", "user.name=kernel-harness", "-c", "user.email=harness@localhost",
          "-c", "safe.directory=*"]
# No automatic gc: after committing a whole kernel tree (tens of thousands of loose objects) git
# would start one in the background, packing and deleting objects while the harness renames or
# removes that repository (a removal then fails on a file the gc has just deleted).
NO_AUTO_GC = ["-c", "gc.auto=0", "-c", "maintenance.auto=false"]


@dataclass(frozen=True)
class SourceTree:
    id: str          # "<kernel version>-<tree hash prefix>"
    path: Path       # a git work tree, pristine; never built in
    spec: str        # what the user asked for
    version: str     # kernel version from the Makefile
    commit: str      # the commit in `path` that holds the tree
    # where the tree came from in git, when it did (KernelCI's identity of a checkout):
    # git_commit_hash, git_commit_name (git describe), git_repository_url, dirty (a local tree
    # with uncommitted changes on top of that commit)
    upstream: dict = None

    def as_dict(self):
        return {"id": self.id, "spec": self.spec, "version": self.version, "commit": self.commit,
                **(self.upstream or {})}


def kernel_version(tree):
    makefile = Path(tree) / "Makefile"
    fields = {}
    try:
        for line in makefile.read_text(errors="replace").splitlines()[:12]:
            m = re.match(r"(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)", line)
            if m:
                fields[m[1]] = m[2]
    except FileNotFoundError:
        pass
    if "VERSION" not in fields or "PATCHLEVEL" not in fields:
        raise UserError(f"{tree} is not a Linux kernel tree (no VERSION/PATCHLEVEL in its Makefile)")
    version = f"{fields['VERSION']}.{fields['PATCHLEVEL']}"
    if fields.get("SUBLEVEL", "0") not in ("", "0"):
        version += f".{fields['SUBLEVEL']}"
    return version + fields.get("EXTRAVERSION", "")


def git(repo, *args, input=None, check=True):
    """git in repo, as the harness's own identity and never steered by the caller's GIT_DIR,
    GIT_WORK_TREE or author variables; the CompletedProcess (harness.tools.run)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_", "GIT_DIR", "GIT_WORK_TREE"))}
    return tools.run(["git", "-C", str(repo), *GIT_ID, *NO_AUTO_GC, *args], input=input, check=check,
                     env=env)


def git_out(repo, *args):
    """What git prints, stripped (a failure is an InfraError)."""
    return git(repo, *args).stdout.strip()


def resolve(spec, insecure=False):
    """Return the cached SourceTree for spec, importing it the first time. insecure: a tarball may
    come over http or without a checksum (--insecure-download)."""
    spec = str(spec).strip()
    if not spec:
        raise UserError("empty kernel source spec")
    if spec.startswith("debian:"):
        return _debian(spec)
    if spec.startswith("git+"):
        return _git_url(spec)
    if re.match(r"^[a-z][a-z0-9+.-]*://", spec, re.I):
        return _tarball(spec, insecure)
    return _local(spec)


# --- the import every kind ends in -------------------------------------------------------------

def _index_path(request_key):
    return cache.root() / "sources" / "index" / request_key


def _lookup(request_key, spec):
    """The imported tree: in one's own cache, else in a shared one (read only)."""
    for base in [cache.root(), *cache.shared_roots()]:
        idx = base / "sources" / "index" / request_key
        if idx.exists():
            path = base / "sources" / idx.read_text().strip()
            if (path / ".git").exists():
                return _tree(path, spec, _upstream_of(idx))
    return None


def _upstream_of(idx):
    """What the request's import recorded of the tree's git origin (None: not a git source)."""
    facts = idx.with_name(idx.name + ".upstream.json")
    try:
        return json.loads(facts.read_text()) or None
    except (OSError, ValueError):
        return None


def _tree(path, spec, upstream=None):
    commit = git_out(path, "rev-parse", "HEAD")
    tree = git_out(path, "rev-parse", "HEAD^{tree}")
    version = kernel_version(path)
    return SourceTree(id=f"{version}-{tree[:12]}", path=path, spec=safety.redact(spec), version=version,
                      commit=commit, upstream=upstream)


def git_facts(repo, commit, url=None, dirty=False, ref=None):
    """KernelCI's identity of a git checkout: the full commit hash, what `git describe` calls it
    (the ref a shallow fetch named, when no tag came with it), the repository's https URL when
    there is one, and whether the tree has uncommitted changes."""
    name = git(repo, "describe", "--tags", "--always", commit, check=False).stdout.strip()
    if ref and (not name or commit.startswith(name)) and not re.fullmatch(r"[0-9a-f]{7,40}", ref):
        name = ref
    if url is None:
        url = git(repo, "config", "--get", "remote.origin.url", check=False).stdout.strip()
    url = safety.redact(url) if url and url.startswith("https://") else None
    return {k: v for k, v in {"git_commit_hash": commit, "git_commit_name": name or None,
                              "git_repository_url": url, "dirty": dirty or None}.items() if v}


def _import(request_key, spec, fill, upstream=None):
    """fill(dir) puts a kernel tree into dir; commit it and file it under its tree hash.
    upstream(dir), called after fill, gives the tree's git origin (git_facts), kept beside the
    request's index entry: trees are shared by content, their origins are per request."""
    with cache.locked("source", request_key):
        found = _lookup(request_key, spec)
        if found:
            return found
        base = cache.root() / "sources"
        with cache.scratch(base / f"import-{request_key}.partial") as work:
            fill(work)
            kernel_version(work)
            facts = upstream(work) if upstream else None
            if not (work / ".git").exists():
                git(work, "init", "-q")
                # -f: the tree as given, whatever its .gitignore says (Debian's ignores everything).
                git(work, "add", "-A", "-f")
                git(work, "commit", "-q", "--no-verify", "-m", f"import {safety.redact(spec)}")
            tree = git_out(work, "rev-parse", "HEAD^{tree}")
        final = base / tree
        if (final / ".git").exists():
            shutil.rmtree(work)             # the same tree, reached another way: one entry
        else:
            cache.move_into_place(work, final)
        idx = _index_path(request_key)
        idx.parent.mkdir(parents=True, exist_ok=True)
        if facts:
            idx.with_name(idx.name + ".upstream.json").write_text(json.dumps(facts) + "\n")
        idx.write_text(tree + "\n")
        return _tree(final, spec, facts)


def _extract(tarball, dest):
    """A release tarball's one top folder unpacked into dest with the "data" rules (safety.extract):
    owners dropped, set-uid bits cleared, nothing outside dest."""
    safety.extract(tarball, dest, strip=1)


# --- the kinds ---------------------------------------------------------------------------------

def _local(spec):
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"kernel source path '{spec}' does not exist")
    if not path.is_dir():
        raise UserError(f"kernel source path '{spec}' is not a directory")
    path = path.resolve()
    kernel_version(path)
    if (path / ".config").exists() or (path / "include" / "config").exists():
        raise UserError(f"{path} has been configured or built in-tree; the harness builds out of "
                        f"tree and needs a clean tree: run 'make mrproper' in it first")
    if (path / ".git").exists():
        try:
            # A commit that includes uncommitted changes to tracked files (or HEAD when clean).
            snap = git_out(path, "stash", "create") or git_out(path, "rev-parse", "HEAD")
        except InfraError:
            snap = None   # e.g. a partial clone missing blobs: take the files as they are
    else:
        snap = None
    upstream = None
    if snap:
        key = cache.digest("local-git", str(path), snap)

        def fill(dest):
            if tools.pipe(["git", "-C", str(path), "archive", snap], ["tar", "-x", "-C", str(dest)]):
                return
            # A partial or sparse clone lacks some blobs (a mirror that leaves out large files):
            # the tracked files as the work tree has them, which is what snap holds where they exist.
            tracked = [f for f in git_out(path, "ls-files", "-z").split("\0") if f]
            present = [f for f in tracked if os.path.lexists(path / f)]
            if not present:
                raise InfraError(f"git archive of {path} failed and its work tree has no tracked file")
            ui.warn(f"{path}: git cannot read every object (a partial or sparse clone?): importing the "
                    f"tracked files of its work tree; {len(tracked) - len(present)} tracked files are "
                    f"not there and are left out")
            for old in dest.iterdir():
                shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
            listing = Path(tempfile.mkstemp(prefix="harness-files-")[1])
            try:
                listing.write_bytes("\0".join(present).encode() + b"\0")
                if not tools.pipe(["tar", "-C", str(path), "--null", "-T", str(listing), "-cf", "-"],
                                  ["tar", "-x", "-C", str(dest)]):
                    raise InfraError(f"copying the tracked files of {path} into the cache failed")
            finally:
                listing.unlink()

        def upstream(dest):
            head = git_out(path, "rev-parse", "HEAD")
            return git_facts(path, head, dirty=head != snap)
    else:
        listing = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not (dirpath == str(path) and d == ".git"))
            for name in sorted(filenames):
                st = os.lstat(os.path.join(dirpath, name))
                listing.append((os.path.relpath(os.path.join(dirpath, name), path),
                                st.st_size, st.st_mtime_ns))
        key = cache.digest("local-dir", str(path), listing)

        def fill(dest):
            if not tools.pipe(["tar", "-C", str(path), "--exclude=./.git", "-cf", "-", "."],
                              ["tar", "-x", "-C", str(dest)]):
                raise InfraError(f"copying {path} into the cache failed")
    found = _lookup(key, spec)
    if found and upstream and found.upstream is None:      # imported before origins were kept
        facts = upstream(None)
        idx = _index_path(key)
        if idx.exists():
            idx.with_name(idx.name + ".upstream.json").write_text(json.dumps(facts) + "\n")
        found = replace(found, upstream=facts)
    return found or _import(key, spec, fill, upstream)


def _git_url(spec):
    url, _, ref = spec[len("git+"):].partition("#")
    if url.startswith("-") or ref.startswith("-"):
        raise UserError(f"'{safety.redact(spec)}': a git URL or ref cannot start with '-'")
    if not ref:
        raise UserError(f"'{safety.redact(spec)}': name a ref after '#', e.g. git+https://host/linux.git#v6.2")
    key = cache.digest("git", safety.redact(url), ref)

    def fill(dest):
        git(dest, "init", "-q")
        proc = tools.run(["git", "-C", str(dest), "fetch", "-q", "--depth", "1", "--", url, ref], check=False)
        if proc.returncode != 0:
            raise UserError(safety.redact(f"cannot fetch ref '{ref}' from {url}: {proc.stderr.strip()} "
                                          f"(offline? pass a local tree instead)"))
        git(dest, "checkout", "-q", "--detach", "FETCH_HEAD")
        (dest / ".git" / "FETCH_HEAD").unlink(missing_ok=True)     # it names the URL, credentials too

    def upstream(dest):
        return git_facts(dest, git_out(dest, "rev-parse", "HEAD"), url=url, ref=ref)

    return _lookup(key, spec) or _import(key, spec, fill, upstream)


def _download(url, dest):
    """url's file to dest; credentials in the URL go as a Basic header, never in a message."""
    import base64
    plain, user, password = safety.split_credentials(url)
    request = urllib.request.Request(plain)
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out)
    except (urllib.error.URLError, OSError, ValueError) as exc:     # http.client.InvalidURL too
        raise UserError(safety.redact(f"cannot download {plain}: {exc} (offline? pass a local tree or "
                                      f"debian:linux-source-X.Y instead)")) from None


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def signed_sha256(url, keyring):
    """The sha256 of url's file from the checksum file beside it (kernel.org's sha256sums.asc),
    whose signature gpgv checks against the user's keyring (a binary keyring: gpg --export > FILE).
    Only the signed text is read."""
    base, _, name = url.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="harness-sums-") as tmp:
        sums = Path(tmp) / "sha256sums.asc"
        _download(f"{base}/sha256sums.asc", sums)
        return sha256_from_signed(sums, keyring, name)


def sha256_from_signed(sums, keyring, name):
    proc = tools.run(["gpgv", "--keyring", Path(keyring).expanduser().resolve(), "--output", "-", sums],
                     check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"the signature of {sums.name} does not check out against {keyring}: {last}")
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == name and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            return parts[0].lower()
    raise UserError(f"the signed {sums.name} has no sha256 for {name}")


def check_tarball(spec, where, insecure=False):
    """A tarball spec that may be fetched: https (or --insecure-download), a sha256 or a keyring."""
    url, _, frag = spec.partition("#")
    shown = safety.redact(url)
    if not re.search(r"\.tar(\.(xz|gz|bz2|zst))?$", url.rstrip("/")):
        raise UserError(f"{where} {shown!r}: a URL must name a release tarball (linux-X.Y.tar.xz)")
    if not url.lower().startswith("https://") and not insecure:
        raise UserError(f"{where} {shown!r}: tarballs are fetched over https only "
                        f"(or pass --insecure-download, which is recorded)")
    options = dict(part.partition("=")[::2] for part in frag.split("&") if part) if frag else {}
    unknown = set(options) - {"sha256", "keyring"}
    if unknown:
        raise UserError(f"{where} {shown!r}: unknown '#' options {sorted(unknown)} "
                        f"(allowed: sha256=HEX, keyring=PATH)")
    if "sha256" in options and not re.fullmatch(r"[0-9a-f]{64}", options["sha256"].lower()):
        raise UserError(f"{where} {shown!r}: sha256= takes 64 hex digits")
    if "keyring" in options and not Path(options["keyring"]).expanduser().is_file():
        raise UserError(f"{where} {shown!r}: keyring {options['keyring']} does not exist")
    if not options and not insecure:
        raise UserError(f"{where} {shown!r}: a tarball needs its sha256 (#sha256=HEX) or a keyring "
                        f"to check the signed checksum file (#keyring=PATH), or --insecure-download")


def _tarball(spec, insecure=False):
    check_tarball(spec, "kernel source", insecure)
    url, _, frag = spec.partition("#")
    options = dict(part.partition("=")[::2] for part in frag.split("&") if part)
    shown = safety.redact(url)
    name = url.rstrip("/").rsplit("/", 1)[-1]
    downloads = cache.root() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    local = downloads / f"{cache.digest(shown)}-{name}"
    if not local.exists():
        tmp = local.with_suffix(".partial")
        _download(url, tmp)
        tmp.rename(local)
    got = _sha256(local)
    want = options.get("sha256", "").lower() or None
    if not want and options.get("keyring"):
        want = signed_sha256(url, options["keyring"])
    if want and got != want:
        local.unlink()
        raise UserError(f"{shown}: sha256 is {got}, expected {want}; the download was removed")
    if not want:
        ui.warn(f"{shown}: no checksum checked (--insecure-download); its sha256 is {got}")
    key = cache.digest("tarball", shown, got)
    return _lookup(key, safety.redact(spec)) or _import(key, safety.redact(spec),
                                                         lambda dest: _extract(local, dest))


def _debian(spec):
    package = spec[len("debian:"):]
    if re.fullmatch(r"\d+\.\d+", package):
        package = f"linux-source-{package}"
    if not re.fullmatch(r"linux-source-\d+\.\d+", package):
        raise UserError(f"'{spec}': expected debian:linux-source-X.Y (e.g. debian:linux-source-6.1)")
    tarball = Path("/usr/src") / f"{package}.tar.xz"
    if not tarball.exists():
        if os.geteuid() != 0:
            raise InfraError(f"{package} is not installed and installing it needs root: "
                             f"sudo apt-get install {package}")
        proc = tools.run(["apt-get", "install", "-y", "-q", package], check=False,
                         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode != 0 or not tarball.exists():
            raise UserError(f"apt-get could not install {package}: "
                            f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    version = tools.run(["dpkg-query", "-W", "-f", "${Version}", package], check=False).stdout.strip()
    key = cache.digest("debian", package, version, tarball.stat().st_size)
    return _lookup(key, spec) or _import(key, spec, lambda dest: _extract(tarball, dest))
