"""Watching a guest from the outside: its serial console and QEMU's own messages.

A thread follows both log files as QEMU writes them and remembers the first fatal sign: a kernel
panic on the console, or QEMU reporting that the accelerator gave up (after "KVM internal error"
QEMU pauses the guest instead of exiting, so only the message tells).
"""
import re
import threading
import time
from pathlib import Path

# Fatal signs on the guest's serial console ...
CONSOLE_FATAL = [
    (re.compile(r"Kernel panic - not syncing.*"), "kernel panic"),
]
# ... and in QEMU's own output.
QEMU_FATAL = [
    (re.compile(r"KVM internal error.*"), "KVM internal error (QEMU pauses the guest)"),
    (re.compile(r"emulation failure.*"), "KVM emulation failure"),
]


# Signs on the console that the guest's clock cannot time anything finely: the clocksource that
# clock_gettime() reads fell back to the tick (4 ms steps; an unstable TSC alone is not that when
# another counter such as kvm-clock takes over). Timer trouble alone (no local APIC
# timer, so no high-resolution timers: "could not switch to one-shot mode") does not matter here:
# timing reads the clock, it never sleeps on a timer.
CLOCK_TROUBLE = [
    (re.compile(r"Switched to clocksource (refined-)?jiffies"), "jiffies clocksource"),
]


def scan(text, patterns=CONSOLE_FATAL):
    """The first fatal sign in text as (kind, line), or None."""
    for line in text.splitlines():
        for pattern, kind in patterns:
            m = pattern.search(line)
            if m:
                return kind, m.group(0).strip()
    return None


def tail(path, lines=30):
    path = Path(path)
    if not path.exists():
        return ""
    data = path.read_bytes()[-64 * 1024:].decode(errors="replace")
    return "\n".join(data.splitlines()[-lines:])


# Milestones of a boot on the console, timed by the watcher (Machine.boot_phases).
BOOT_MARKS = {
    "console": re.compile(r"."),
    "init": re.compile(r"Run \S+ as init process"),
}


class Watcher:
    def __init__(self, console, qemu, interval=0.02, marks=None):
        self.patterns = {Path(console): CONSOLE_FATAL, Path(qemu): QEMU_FATAL}
        self.paths = list(self.patterns)
        self.console = Path(console)
        self.interval = interval
        self.marks = dict(marks or {})   # name -> pattern searched in console lines
        self.seen_at = {}                # name -> time.monotonic() when first read
        self.fatal = None            # (kind, line) once seen
        self.seen = threading.Event()
        self._stop = threading.Event()
        self._offsets = {p: 0 for p in self.paths}
        self._partial = {p: "" for p in self.paths}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.poll()

    def poll(self):
        with self._lock:
            self._poll()

    def _poll(self):
        for path in self.paths:
            if not path.exists():
                continue
            with open(path, "rb") as fh:
                fh.seek(self._offsets[path])
                chunk = fh.read()
            if not chunk:
                continue
            self._offsets[path] += len(chunk)
            text = self._partial[path] + chunk.decode(errors="replace")
            complete, _, self._partial[path] = text.rpartition("\n")
            if path == self.console:
                self._mark(complete)
            found = scan(complete, self.patterns[path])
            if found and self.fatal is None:
                self.fatal = found
                self.seen.set()

    def _mark(self, text):
        now = time.monotonic()
        for name, pattern in self.marks.items():
            if name not in self.seen_at and pattern.search(text):
                self.seen_at[name] = now

    def _loop(self):
        while not self._stop.is_set():
            self.poll()
            time.sleep(self.interval)
