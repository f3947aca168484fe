"""The last resort: an exception no part of the harness expected.

It becomes one line on the terminal that says where the full traceback was saved, and exit code
70 (EX_SOFTWARE in sysexits.h), which no command uses for a verdict: nightly's 1 (a regression)
and verify's 1 (a section failed) keep their meaning. The traceback goes to
<results>/crashes/crash-<UTC time>-<pid>-<random>.txt, or, when the results folder cannot be
written, to a folder of this user's only: <tmp>/harness-crashes-<uid>, made 0700 and used only when
it is a real folder (not a link) owned by this user with no access for others. The file is new
(never an existing file or link followed), mode 0600; credentials in URLs are removed from it.
"""
import datetime
import os
import secrets
import stat
import sys
import tempfile
import traceback
from pathlib import Path

from harness import paths, safety

EXIT_CODE = 70


def private_folder():
    """<tmp>/harness-crashes-<uid>: made 0700 without following links; None when what is there
    is a link, someone else's, or open to others."""
    folder = Path(tempfile.gettempdir()) / f"harness-crashes-{os.getuid()}"
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return folder


def results_folder():
    folder = paths.results() / "crashes"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def save(exc):
    """Write exc's traceback (and the command line) to a new file; returns its path, or None."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    text = safety.redact("harness " + " ".join(sys.argv[1:]) + "\n\n"
                         + "".join(traceback.format_exception(exc)))
    for where in (results_folder, private_folder):
        folder = where()
        if folder is None:
            continue
        path = folder / f"crash-{stamp}-{os.getpid()}-{secrets.token_hex(4)}.txt"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return None


def report(exc):
    """One line for the terminal about exc, with the traceback's file."""
    path = save(exc)
    where = f"traceback saved to {path}" if path else "the traceback could not be saved"
    return safety.redact(f"internal error: {type(exc).__name__}: {exc} ({where}; please report it)")
