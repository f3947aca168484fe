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
# scheme://userinfo@host: the userinfo runs to the authority's last '@' (a password may hold '@'
# or ':'; RFC 3986 wants '/', '?' and '#' in it percent-encoded, and a quoted one is kept whole)
USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s'\"]*@")
# ... and a password holding a raw '/', '?' or '#' (not a URL any more, but pasted as one): user,
# ':' and anything up to an '@', unless what follows the ':' is a port (digits, then the path)
RAW_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s:@'\"]*:(?![0-9]+(?:[/?#\s'\"]|$))"
                          r"[^\s@'\"]*@")
# a secret in a query string (?token=..., &private_token=..., &password=...)
SECRET_QUERY = re.compile(r"(?i)([?&](?:[a-z_-]*token|password|passwd|secret|sig|signature|"
                          r"auth|api[_-]?key|access[_-]?key)=)[^&#\s'\"]+")


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


def inside_problem(base, name):
    """True when base / name, resolved, is outside base."""
    base = Path(base).resolve()
    target = (base / name).resolve()
    return target != base and not target.is_relative_to(base)


def extract(archive, dest, strip=0):
    """Unpack a tar archive (a path or an open TarFile) into dest with the "data" rules: owners
    are dropped (files belong to whoever unpacks them, root included), set-uid/set-gid/sticky
    bits and write permission for group and others are cleared, and a member that is absolute,
    leaves dest, is a device or a pipe, or a link pointing outside dest is refused (UserError,
    exit 2, naming the member). strip: leading path components removed from every name (tar's
    --strip-components).

    Members are unpacked one at a time, each checked just before against the tree as unpacked so
    far, with its links resolved: a chain of links (sub -> ., sub/up -> .., up/up2/F) cannot lead
    out however its names look. This holds on Debian 12's Python 3.11.2, which has no tarfile
    filter; where Python has one (3.11.4 on) its "data" filter is applied as well."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tar = archive if isinstance(archive, tarfile.TarFile) else tarfile.open(archive)
    try:
        for member in tar:
            if strip:
                parts = Path(member.name).parts[strip:]
                if not parts:
                    continue
                member.name = str(Path(*parts))
                if member.islnk():
                    member.linkname = str(Path(*Path(member.linkname).parts[strip:]))
            member = data_member(member, dest)
            try:
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, dest, set_attrs=not member.issym(), filter="data")
                else:
                    tar.extract(member, dest, set_attrs=not member.issym())
            except tarfile.TarError as exc:     # the filter's FilterError, or a broken member
                raise UserError(f"archive member {member.name!r}: {exc}; refused") from None
    finally:
        if tar is not archive:
            tar.close()


def data_member(member, dest):
    """member made safe to unpack into dest as it is now (the rules of tarfile.data_filter), or a
    UserError naming it."""
    name = member.name
    if Path(name).is_absolute():
        raise UserError(f"archive member {name!r} has an absolute name; refused")
    inside(dest, name, "archive member")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UserError(f"archive member {name!r} is a device or pipe; refused")
    if member.issym():
        if Path(member.linkname).is_absolute():
            raise UserError(f"archive member {name!r} links to the absolute path {member.linkname!r}; refused")
        parent = (Path(dest) / name).parent.resolve()       # the links unpacked so far, followed
        target = parent.relative_to(Path(dest).resolve()) / member.linkname
        if inside_problem(dest, target):
            raise UserError(f"archive member {name!r} links to {member.linkname!r}, which leads "
                            f"outside the tree; refused")
    elif member.islnk():
        if inside_problem(dest, member.linkname):
            raise UserError(f"archive member {name!r} is a hard link to {member.linkname!r}, "
                            f"which leads outside the tree; refused")
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
    text = RAW_PASSWORD.sub(r"\1", USERINFO.sub(r"\1", str(text)))
    return SECRET_QUERY.sub(r"\1REDACTED", text)


def split_credentials(url):
    """(url without its userinfo, user, password): the one place a URL's credentials are taken
    out, for a download that sends them as a header instead (percent-escapes decoded)."""
    from urllib.parse import unquote
    m = USERINFO.match(url)
    if not m:
        return url, None, None
    info = url[len(m.group(1)):m.end() - 1]
    user, _, password = info.partition(":")
    return m.group(1) + url[m.end():], unquote(user), unquote(password)


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
