"""Progress for a log rather than a terminal (CI): a line when a step starts and when it ends, and a
heartbeat line every HARNESS_HEARTBEAT seconds (30 by default) while it runs, saying what is
happening (the step's latest note, what its watcher reads, e.g. the build's current target, and
the run's boots so far). Under GitHub Actions (GITHUB_ACTIONS=true) and GitLab CI (GITLAB_CI set)
each outermost step is a collapsible group of the job's log; its end line stays outside it.
"""
import contextlib
import os
import re
import threading
import time

_lock = threading.RLock()
_open = []                   # the steps running, outermost first
_where = {"text": ""}       # what the whole run is at ("3 of 10 boots done"), set by ui.context


def interval():
    try:
        return max(0.1, float(os.environ.get("HARNESS_HEARTBEAT", "30")))
    except ValueError:
        return 30.0


def ci_system(env=None):
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI"):
        return "gitlab"
    return None


def group_start(title, name, system):
    if system == "github":
        return f"::group::{title}"
    if system == "gitlab":
        return f"\x1b[0Ksection_start:{int(time.time())}:{name}[collapsed=true]\r\x1b[0K{title}"
    return None


def group_end(name, system):
    if system == "github":
        return "::endgroup::"
    if system == "gitlab":
        return f"\x1b[0Ksection_end:{int(time.time())}:{name}\r\x1b[0K"
    return None


def clock(seconds):
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class Step:
    """One step of the log: start line, heartbeats from a thread, end line."""
    count = 0

    def __init__(self, message, write, system):
        Step.count += 1
        self.message, self.write, self.system = message, write, system
        self.name = f"step_{Step.count}_" + re.sub(r"[^a-zA-Z0-9_.-]+", "_", message)[:40]
        self.started = time.monotonic()
        self.note = None
        self.watcher = None
        self.grouped = False
        self.stop = threading.Event()

    def say(self, text):
        self.note = text

    def watch(self, fn):
        """fn() -> a short text of what is happening now (or None), read at every heartbeat."""
        self.watcher = fn

    def begin(self):
        with _lock:
            self.grouped = bool(self.system) and not _open
            start = group_start(f"▶ {self.message}", self.name, self.system) if self.grouped else None
            self.write(start or f"▶ {self.message}")
            _open.append(self)
        threading.Thread(target=self.beat, daemon=True, name=f"heartbeat {self.message}").start()

    def heartbeat_line(self):
        parts = [f"… {self.message}: {clock(time.monotonic() - self.started)}"]
        if self.note:
            parts.append(self.note)
        if self.watcher:
            try:
                seen = self.watcher()
            except Exception as exc:          # a watcher never stops the step it watches
                seen = f"(watch failed: {exc})"
            if seen:
                parts.append(seen)
        if _where["text"]:
            parts.append(_where["text"])
        return "; ".join(parts)

    def beat(self):
        while not self.stop.wait(interval()):
            with _lock:
                if _open and _open[-1] is self:     # the innermost step speaks for the others
                    self.write(self.heartbeat_line())

    def end(self, ok):
        self.stop.set()
        seconds = time.monotonic() - self.started
        mark = "✓" if ok else "✗"
        with _lock:
            if self in _open:
                _open.remove(self)
            if self.grouped:
                self.write(group_end(self.name, self.system))
            self.write(f"{mark} {self.message} ({seconds:.1f} s)"
                       + (f" — {self.note}" if ok and self.note else ""))


@contextlib.contextmanager
def step(message, write, system=None):
    """A step written as lines by write(text); yields its say(text)."""
    s = Step(message, write, system)
    s.begin()
    try:
        yield s.say
    except BaseException:
        s.end(False)
        raise
    s.end(True)


def set_context(text):
    _where["text"] = text or ""


def watch(fn):
    """fn() -> what is happening now, read by the innermost running step's heartbeats."""
    with _lock:
        if _open:
            _open[-1].watch(fn)
