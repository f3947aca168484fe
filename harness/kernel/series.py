"""Patch series: read one from an mbox, a folder of .patch files or lore, and apply it to a source.

Specs:
  FILE        an mbox (b4 turns it into a clean, ordered, git-am-ready series, offline)
  DIR         a folder of git format-patch output (*.patch, in filename order)
  MSGID       a lore Message-Id (or https://lore.kernel.org/... URL), fetched with b4

A patch's id hashes only its diff, with the parts that change when the same patch is regenerated
on another base left out (index lines, hunk line numbers, the git version signature), so the
same series reached any of these ways gets the same ids.

apply() checks out the source's commit in a git worktree under the cache, applies the patches
one by one with `git am` (GNU patch's dry run tells offset and fuzz apart, and carries a patch
git am refuses only for fuzz), and keeps the result only when every patch applied.
"""
import email
import hashlib
import json
import mailbox
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from email.header import decode_header, make_header
from pathlib import Path

from harness import cache, safety, tools
from harness.kernel import sources
from harness.kernel.sources import git
from harness.errors import InfraError, UserError

B4_TIMEOUT = 60  # seconds; b4 only ever talks to lore
MISSING_MSG = "pass the series as an mbox file or a folder of .patch files (--series PATH)"
_AM = ["-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null",
       "am", "--no-3way", "--committer-date-is-author-date"]


@dataclass(frozen=True)
class Patch:
    index: int          # 1-based position
    subject: str        # e.g. "[PATCH v4 01/14] mm: ... via prctl"
    title: str          # subject without the [PATCH ...] prefix
    author: str
    message_id: str | None
    text: str           # the full mail text, git-am-ready

    @property
    def id(self):
        return hashlib.sha256(_normalized_diff(_body(self.text)).encode()).hexdigest()[:16]


@dataclass
class Series:
    spec: str
    patches: list[Patch]
    version: int
    title: str | None       # cover letter title
    base: str | None        # what the cover letter says the series is based on
    message_id: str | None  # cover letter's Message-Id

    @property
    def id(self):
        return cache.digest("series", patch_ids(self))

    @property
    def patchset_hash(self):
        """KCIDB's patchset hash: the sha256 of the patches' sha256s, each a line, in order (for a
        folder of .patch files: `sha256sum *.patch | cut -c-64 | sha256sum`). A patch is its text
        as git am takes it: the file's, or for an mbox the mail as b4 (or the mbox) gives it."""
        lines = "".join(hashlib.sha256(p.text.encode()).hexdigest() + "\n" for p in self.patches)
        return hashlib.sha256(lines.encode()).hexdigest() if self.patches else ""

    def as_dict(self):
        return {"spec": self.spec, "id": self.id, "version": self.version, "title": self.title,
                "base": self.base, "message_id": self.message_id, "patchset_hash": self.patchset_hash,
                "patches": [{"index": p.index, "title": p.title, "id": p.id,
                             "message_id": p.message_id} for p in self.patches]}


def patch_ids(series):
    return [p.id for p in series.patches]


# --- reading mails -----------------------------------------------------------------------------

def _header(msg, name):
    value = msg.get(name)
    if value is None:
        return ""
    try:
        value = str(make_header(decode_header(str(value))))
    except (ValueError, LookupError):
        value = str(value)
    return " ".join(value.split())


def _body(text):
    """The decoded text parts of a mail (what `patch` and the id read)."""
    msg = email.message_from_string(text)
    parts = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True) or b""
        try:
            parts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
        except LookupError:
            parts.append(payload.decode("utf-8", "replace"))
    return "\n".join(parts)


def _normalized_diff(body):
    start = re.search(r"^diff --git ", body, re.M)
    diff = body[start.start():] if start else body
    diff = re.sub(r"\n-- \n[^ +\-\\\n][^\n]*\n*\Z", "\n", diff)  # the "-- \n2.34.1" signature
    lines = []
    for line in diff.replace("\r", "").split("\n"):
        if line.startswith("index "):
            continue
        if line.startswith("@@ "):
            line = "@@"
        lines.append(line.rstrip())
    return "\n".join(lines).strip("\n") + "\n"


def _subject_parts(subject):
    """'[RFC PATCH v4 01/14] mm: x' -> ('mm: x', 4, 1, 14); missing parts are None."""
    m = re.match(r"\s*((?:\[[^\]]*\]\s*)+)", subject)
    tags = m[1] if m else ""
    title = subject[m.end():].strip() if m else subject.strip()
    version = re.search(r"\bv(\d+)\b", tags, re.I)
    number = re.search(r"\b(\d+)/(\d+)\b", tags)
    return (title, int(version[1]) if version else None,
            int(number[1]) if number else None, int(number[2]) if number else None)


@dataclass
class _Mail:
    text: str
    subject: str
    author: str
    message_id: str | None

    @classmethod
    def parse(cls, text):
        msg = email.message_from_string(text)
        msgid = _header(msg, "Message-Id").strip("<>") or None
        return cls(text, _header(msg, "Subject"), _header(msg, "From"), msgid)

    @property
    def number(self):
        return _subject_parts(self.subject)[2]

    @property
    def has_diff(self):
        return bool(re.search(r"^(diff --git |--- \S)", _body(self.text), re.M))


def _base(body):
    m = re.search(r"^base-commit:\s*([0-9a-f]{7,40})\b", body, re.M)
    if m:
        return m[1]
    for m in re.finditer(r"\bbased\s+on\s+(?:top\s+of\s+)?(?:the\s+)?(?:tag\s+|commit\s+)?(\S+)",
                         body, re.I):
        word = m[1].strip(".,;:()'\"`")
        if re.fullmatch(r"v\d+\.\d+[\w.\-]*|(?=.*\d)[0-9a-f]{7,40}|[\w.\-]+/[\w.\-]+|\w[\w.]*-[\w.\-]+",
                        word):
            return word
    return None


def _series(spec, cover, mails):
    if not mails:
        raise UserError(f"no patches found in series '{spec}'")
    patches = [Patch(index=i, subject=m.subject, title=_subject_parts(m.subject)[0], author=m.author,
                     message_id=m.message_id, text=m.text)
               for i, m in enumerate(mails, 1)]
    version = _subject_parts((cover or mails[0]).subject)[1] or 1
    title = _subject_parts(cover.subject)[0] if cover else None
    if title and "SUBJECT HERE" in title:
        title = None
    return Series(spec=spec, patches=patches, version=version, title=title,
                  base=_base(_body(cover.text)) if cover else None,
                  message_id=cover.message_id if cover else None)


def load(spec):
    """Read the series `spec` names (see the module docstring)."""
    spec = str(spec).strip()
    if not spec:
        raise UserError(f"empty patch series spec; {MISSING_MSG}")
    path = Path(spec).expanduser()
    if path.is_file():
        return _from_mbox(path, spec)
    if path.is_dir():
        return _from_folder(path, spec)
    msgid = _message_id(spec)
    if msgid:
        return _from_lore(msgid, spec)
    raise UserError(f"patch series '{spec}' does not exist (and is not a lore Message-Id); "
                    f"{MISSING_MSG}")


def _message_id(spec):
    if re.match(r"https?://", spec):
        parts = [p for p in spec.split("/")[3:] if "@" in p]
        return parts[0].strip("<>") if parts else None
    if "@" in spec and "/" not in spec and not re.search(r"\s", spec):
        return spec.strip("<>")
    return None


def _from_folder(path, spec):
    files = sorted(path.glob("*.patch"))
    for f in files:             # a patch file that is a link out of the folder is refused
        safety.inside(path, f.name, "patch file")
    if not files:
        raise UserError(f"folder '{spec}' has no *.patch files; {MISSING_MSG}")
    cover, mails = None, []
    for f in files:
        mail = _Mail.parse(f.read_text(errors="replace"))
        if mail.number == 0 or (cover is None and not mail.has_diff and "cover-letter" in f.name):
            cover = mail
        else:
            mails.append(mail)
    return _series(spec, cover, mails)


def _read_mbox(path):
    box = mailbox.mbox(str(path), create=False)
    mails = []
    try:
        for key in box.iterkeys():
            raw = box.get_bytes(key).decode("utf-8", "replace")
            mails.append(_Mail.parse(f"From {box.get_message(key).get_from()}\n{raw}"))
    finally:
        box.close()
    return mails


def _from_mbox(path, spec):
    mails = _read_mbox(path)
    if not mails:
        raise UserError(f"'{spec}' is not an mbox (no mails in it); {MISSING_MSG}")
    covers = [m for m in mails if m.number == 0 and m.message_id]
    start = covers[0] if covers else next((m for m in mails if m.message_id), None)
    found = _b4_local(path.resolve(), start.message_id) if start else None
    return _series(spec, *(found or _order(mails)))


def _order(mails):
    """Without b4: the mails that carry diffs, newest version only, in [PATCH K/N] order."""
    cover, numbered = None, []
    for pos, mail in enumerate(mails):
        if re.match(r"\s*(re|aw|fwd?):", mail.subject, re.I):
            continue
        if mail.number == 0:
            cover = cover or mail
        elif mail.has_diff:
            numbered.append((_subject_parts(mail.subject)[1] or 1, mail.number or 0, pos, mail))
    newest = max((v for v, *_ in numbered), default=1)
    if cover and (_subject_parts(cover.subject)[1] or 1) != newest:
        cover = None
    return cover, [m for v, _, _, m in sorted(numbered, key=lambda e: e[1:3]) if v == newest]


def _run_b4(args, cwd):
    """b4's CompletedProcess, or None when it took more than B4_TIMEOUT seconds."""
    tools.require("b4")
    try:
        return tools.run(["b4", "-n", *args], cwd=cwd, check=False, timeout=B4_TIMEOUT)
    except InfraError:
        return None


def _b4_result(outdir):
    """(cover, patches) from b4's OUTDIR/*.mbx and *.cover, or None when it wrote nothing usable."""
    mbx = sorted(outdir.glob("*.mbx"))
    if not mbx:
        return None
    mails = _read_mbox(mbx[0])
    covers = sorted(outdir.glob("*.cover"))
    cover = _Mail.parse(covers[0].read_text(errors="replace")) if covers else None
    totals = {_subject_parts(m.subject)[3] for m in mails}
    if not mails or totals - {None, len(mails)}:
        return None  # b4 found only part of the series
    return cover, mails


def _b4_local(path, msgid):
    if not tools.which("b4"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        # offline: only what is in the mbox counts, so the result never depends on the network
        proc = _run_b4(["--offline-mode", "am", "-m", str(path), msgid, "-o", "out"], tmp)
        return _b4_result(Path(tmp) / "out") if proc and proc.returncode == 0 else None


def _from_lore(msgid, spec):
    tools.require("b4")
    with tempfile.TemporaryDirectory() as tmp:
        proc = _run_b4(["am", msgid, "-o", "out"], tmp)
        found = _b4_result(Path(tmp) / "out") if proc and proc.returncode == 0 else None
        if not found:
            why = "timed out" if proc is None else \
                ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1][:300]
            raise UserError(f"could not fetch series {msgid} from the lore archive (lore.kernel.org "
                            f"could not be reached, or it has no such message: {why}); {MISSING_MSG}")
        return _series(spec, *found)


# --- applying ----------------------------------------------------------------------------------

@dataclass
class PatchResult:
    index: int
    title: str
    status: str        # "applied", "applied with offset", "applied with fuzz", "failed", "not tried"
    detail: str = ""


@dataclass
class ApplyReport:
    series: Series
    results: list[PatchResult]
    ok: bool

    def table(self):
        rows = [("#", "patch", "status", "detail")]
        for r in self.results:
            title = r.title if len(r.title) <= 60 else r.title[:57] + "..."
            rows.append((str(r.index), title, r.status, r.detail))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(f"{a:>{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip()
                         for a, b, c, d in rows)


def _dry_run(tree, body):
    """GNU patch's view of one patch: (returncode, offsets, fuzz, failures) as 'file: hunk' texts."""
    proc = tools.run(["patch", "-p1", "--dry-run", "-f"], cwd=tree, input=body, check=False)
    offsets, fuzz, failed, current = [], [], [], "?"
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.match(r"(?:checking|patching) file '?(.+?)'?$", line)
        if m:
            current = m[1]
        elif re.match(r"Hunk #\d+ succeeded .*with fuzz", line):
            fuzz.append(f"{current}: {line[0].lower()}{line[1:].rstrip('.')}")
        elif re.match(r"Hunk #\d+ succeeded .*offset", line):
            offsets.append(f"{current}: {line[0].lower()}{line[1:].rstrip('.')}")
        elif re.match(r"Hunk #\d+ FAILED", line):
            failed.append(f"{current}: {line[0].lower()}{line[1:].rstrip('.')}")
        elif "can't find file" in line or "No file to patch" in line:
            failed.append(f"{current}: file not found")
    return proc.returncode, offsets, fuzz, failed


def _apply_one(tree, patch):
    """Apply one patch as a commit; return its PatchResult."""
    body = _body(patch.text)
    code, offsets, fuzz, failed = _dry_run(tree, body)
    am = git(tree, *_AM, "-q", input=patch.text, check=False)
    if am.returncode == 0:
        status = "applied with offset" if offsets else "applied"
        return PatchResult(patch.index, patch.title, status, "; ".join(offsets))
    if code == 0 and fuzz:
        # git am does not fuzz; GNU patch does, and git am then commits it with the mail's metadata.
        done = tools.run(["patch", "-p1", "-f", "-s", "--no-backup-if-mismatch"], cwd=tree,
                         input=body, check=False)
        if done.returncode == 0 and git(tree, "add", "-A", "-f", check=False).returncode == 0 and \
                git(tree, *_AM, "--continue", check=False).returncode == 0:
            return PatchResult(patch.index, patch.title, "applied with fuzz", "; ".join(fuzz + offsets))
    git(tree, "am", "--abort", check=False)
    detail = "; ".join(failed) or \
        ((am.stderr or am.stdout).strip().splitlines() or ["git am failed"])[0][:200]
    return PatchResult(patch.index, patch.title, "failed", detail)


def _drop(source, tree):
    """Remove a worktree of source, registered or not."""
    if tree.exists():
        git(source.path, "worktree", "remove", "--force", "--force", str(tree), check=False)
        shutil.rmtree(tree, ignore_errors=True)
    git(source.path, "worktree", "prune", check=False)


def worktree(source, tree, commit):
    """A git worktree of source at `tree`, checked out (forcibly, detached) at commit; one that is
    there already is reused."""
    if (tree / ".git").exists() and \
            git(tree, "checkout", "-q", "-f", "--detach", commit, check=False).returncode == 0:
        return
    _drop(source, tree)
    tree.parent.mkdir(parents=True, exist_ok=True)
    add = git(source.path, "worktree", "add", "-q", "--detach", str(tree), commit, check=False)
    if add.returncode != 0:
        raise InfraError(f"git worktree add {tree} of {source.path} failed: {add.stderr.strip()}")


def prefix_tree(source, series, k, tree, commit):
    """The tree at `tree` as patches 1..k of the series applied to source: its id is the one every
    way of reaching those patches gives (k = all of them: the patched tree's, the same cache entry)."""
    ids = patch_ids(series)[:k]
    whole = k == len(series.patches)
    return sources.SourceTree(id=f"{source.id}+{cache.digest('series', ids)[:8]}", path=tree,
                              spec=f"{source.spec} + {series.spec}" + ("" if whole else f" (patches 1-{k})"),
                              version=sources.kernel_version(tree), commit=commit, upstream=source.upstream)


def _patched(tree, source, series, commit):
    return prefix_tree(source, series, len(series.patches), tree, commit)


def apply(series, source):
    """The source with the series applied, as (SourceTree-like tree, ApplyReport); cached."""
    trees = cache.root() / "trees"
    final = trees / f"{source.id}-{series.id}"
    saved = final.with_name(final.name + ".apply.json")
    trees.mkdir(parents=True, exist_ok=True)
    with cache.locked("tree", final.name):
        if saved.exists() and (final / ".git").exists():
            data = json.loads(saved.read_text())
            head = git(final, "rev-parse", "HEAD", check=False).stdout.strip()
            if head == data["commit"]:
                results = [PatchResult(**r) for r in data["results"]]
                return _patched(final, source, series, head), ApplyReport(series, results, True)
        saved.unlink(missing_ok=True)
        _drop(source, final)
        with cache.scratch(final.with_name(final.name + ".partial"), remove=lambda p: _drop(source, p),
                           make=False) as scratch:
            worktree(source, scratch, source.commit)
            results = []
            for patch in series.patches:
                if results and results[-1].status in ("failed", "not tried"):
                    results.append(PatchResult(patch.index, patch.title, "not tried"))
                else:
                    results.append(_apply_one(scratch, patch))
            report = ApplyReport(series, results, ok=all(r.status.startswith("applied") for r in results))
            if not report.ok:
                bad = next(r for r in results if r.status == "failed")
                err = UserError(f"patch {bad.index}/{len(results)} '{bad.title}' of series "
                                f"'{series.spec}' does not apply to {source.spec} ({source.id}): "
                                f"{bad.detail}", log_tail=report.table())
                err.report = report
                raise err
            commit = sources.git_out(scratch, "rev-parse", "HEAD")
            moved = git(source.path, "worktree", "move", str(scratch), str(final), check=False)
            if moved.returncode != 0:
                _drop(source, final)
                raise InfraError(f"git worktree move to {final} failed: {moved.stderr.strip()}")
        tmp = saved.with_name(saved.name + ".partial")
        tmp.write_text(json.dumps({"source": source.id, "series": series.id, "commit": commit,
                                   "results": [asdict(r) for r in results]}, indent=1) + "\n")
        tmp.rename(saved)
        return _patched(final, source, series, commit), report
