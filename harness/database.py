"""SQLite for the history, safe with several writers (nightly jobs of a CI fleet sharing a file).

The database is in WAL mode (readers never block the writer), every connection waits up to
BUSY_TIMEOUT seconds for a lock, and a write that still finds the database locked is retried whole
(RETRIES times, with a growing pause). A file that is not a database, or a database that cannot be
opened, is one clear error instead of a traceback.
"""
import contextlib
import sqlite3
import time

from harness.errors import InfraError, UserError

BUSY_TIMEOUT = 60.0     # seconds a statement waits for another writer's lock
RETRIES = 5             # whole transactions tried again after "database is locked"


@contextlib.contextmanager
def connect(path):
    """A connection in WAL mode that commits on success and is closed afterwards."""
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise InfraError(f"cannot open the history database {path}: {exc}") from None
    db.row_factory = sqlite3.Row
    try:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            if locked(exc):
                raise
            raise UserError(f"{path} is not a usable history database ({exc}); move it away or "
                            f"name another with --history") from None
        with db:
            yield db
    finally:
        db.close()


def locked(exc):
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower()


def retry(write, path, retries=RETRIES, pause=1.0):
    """write() again while the database stays locked; its result."""
    for attempt in range(retries + 1):
        try:
            return write()
        except sqlite3.OperationalError as exc:
            if not locked(exc) or attempt == retries:
                if locked(exc):
                    raise InfraError(f"the history database {path} stayed locked by another writer "
                                     f"({retries + 1} tries of {BUSY_TIMEOUT:.0f} s)") from None
                raise
            time.sleep(pause * (attempt + 1))
