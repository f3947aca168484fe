"""Data that becomes paths, archives and URLs, made safe in one place.

- label(): a kernel label is a folder name: letters, digits and `._-` only, never `.` or `..`.
- inside(): a path built from data (a label, a name inside an archive) must stay inside its
  folder after resolving symbolic links and `..`.
- extract(): an archive unpacked with owners dropped and modes limited (Python's tarfile "data"
  filter: no links out, no devices, no set-uid bits, no absolute names).
- redact(): credentials in URLs (`https://user:token@host/...`) removed before anything is stored,
  printed or logged.
"""
import os
import re
import tarfile
from pathlib import Path

from harness.errors import UserError

LABEL = re.compile(r"[A-Za-z0-9._-]+")
LABEL_RULE = "letters, digits, '.', '_' and '-' only (not '.' or '..')"
# scheme://userinfo@ ; userinfo has no '/', '@' or whitespace
USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def label_problem(text):
    """Why text cannot be a kernel label, or None when it can."""
    if not isinstance(text, str) or not text:
        return f"must be a non-empty name, {LABEL_RULE}"
    if not LABEL.fullmatch(text) or text in (".", ".."):
        return LABEL_RULE
    return None


def label(text, where="label"):
    problem = label_problem(text)
    if problem:
        raise UserError(f"{where} {text!r}: {problem}")
    return text


def inside(base, name, what="path"):
    """base / name, resolved; a UserError when it would leave base."""
    base = Path(base).resolve()
    target = (base / name).resolve()
    if target != base and not target.is_relative_to(base):
        raise UserError(f"{what} {str(name)!r} leads outside {base}; refused")
    return target


def extract(archive, dest, strip=0):
    """Unpack a tar archive (a path or an open TarFile) into dest with the "data" rules: owners
    are dropped (files belong to whoever unpacks them, root included), set-uid/set-gid/sticky
    bits and write permission for group and others are cleared, and a member that is absolute,
    leaves dest, is a device or a pipe, or a link pointing outside dest is refused. strip: leading
    path components removed from every name (tar's --strip-components). Python's own
    filter="data" is used where this Python has it (3.11.4 on); Debian 12's 3.11.2 does not."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tar = archive if isinstance(archive, tarfile.TarFile) else tarfile.open(archive)
    try:
        members = []
        for member in tar:
            if strip:
                parts = Path(member.name).parts[strip:]
                if not parts:
                    continue
                member.name = str(Path(*parts))
                if member.islnk():
                    member.linkname = str(Path(*Path(member.linkname).parts[strip:]))
            members.append(data_member(member, dest))
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:
            tar.extractall(dest, members=members)
    finally:
        if tar is not archive:
            tar.close()


def data_member(member, dest):
    """member made safe to unpack into dest (the rules of tarfile.data_filter), or a UserError."""
    name = member.name
    if Path(name).is_absolute():
        raise UserError(f"archive member {name!r} has an absolute name; refused")
    where = inside(dest, name, "archive member")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UserError(f"archive member {name!r} is a device or pipe; refused")
    if member.issym():
        if Path(member.linkname).is_absolute():
            raise UserError(f"archive member {name!r} links to the absolute path {member.linkname!r}; refused")
        inside(dest, where.parent.relative_to(Path(dest).resolve()) / member.linkname, "link target")
    elif member.islnk():
        inside(dest, member.linkname, "link target")
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    if member.isreg() or member.islnk():
        member.mode = (member.mode & 0o755) | 0o600
    elif member.isdir():
        member.mode = (member.mode & 0o755) | 0o700
    return member


def redact(text):
    """text with the user and password of every URL in it removed."""
    if text is None:
        return None
    return USERINFO.sub(r"\1", str(text))


def each_leaf(value, leaf):
    """A JSON-like value (dicts, lists, tuples) with leaf() applied to every other value in it."""
    if isinstance(value, dict):
        return {k: each_leaf(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [each_leaf(v, leaf) for v in value]
    return leaf(value)


def redact_all(value):
    """A JSON-like value with every string in it redacted."""
    return each_leaf(value, lambda v: redact(v) if isinstance(v, str) else v)
