"""The last resort: an exception no part of the harness expected.

It becomes one line on the terminal that says where the full traceback was saved, and exit code
70 (EX_SOFTWARE in sysexits.h), which no command uses for a verdict: nightly's 1 (a regression)
and verify's 1 (a section failed) keep their meaning. The traceback goes to
<results>/crashes/crash-<UTC time>-<pid>.txt, or to the system's temporary folder when the
results folder cannot be written; credentials in URLs are removed from it.
"""
import datetime
import os
import sys
import tempfile
import traceback
from pathlib import Path

from harness import paths, safety

EXIT_CODE = 70


def save(exc):
    """Write exc's traceback (and the command line) to a new file; returns its path, or None."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    text = safety.redact("harness " + " ".join(sys.argv[1:]) + "\n\n"
                         + "".join(traceback.format_exception(exc)))
    for folder in (paths.results() / "crashes", Path(tempfile.gettempdir())):
        path = folder / f"crash-{stamp}-{os.getpid()}.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def report(exc):
    """One line for the terminal about exc, with the traceback's file."""
    path = save(exc)
    where = f"traceback saved to {path}" if path else "the traceback could not be saved"
    return safety.redact(f"internal error: {type(exc).__name__}: {exc} ({where}; please report it)")
