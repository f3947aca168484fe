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


# Where a dying kernel starts to say why: the first of these lines begins the evidence of a death.
OOPS_START = re.compile(r"BUG: |Oops|general protection fault|kernel BUG at|Unable to handle|"
                        r"WARNING: |INFO: task .* blocked|watchdog: |sysrq: |Kernel panic - not syncing")
KERNEL_ADDRESS = re.compile(r"\b(?:0x)?(ffffffff[0-9a-f]{8})\b")


def read_since(path, offset=0):
    """The text of a console log from byte `offset` on ('' when there is none)."""
    path = Path(path)
    if not path.exists():
        return ""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


def excerpt(text, lines=40):
    """The first lines of what the kernel printed as it died: from the first oops/BUG/panic line
    (OOPS_START) on, `lines` of them, and the "Kernel panic" line when it comes later; the last
    `lines` lines when no such line is there (a hang)."""
    rows = text.replace("\r", "").splitlines()
    start = next((i for i, row in enumerate(rows) if OOPS_START.search(row)), None)
    if start is None:
        return "\n".join(rows[-lines:])
    out = rows[start:start + lines]
    panic = next((row for row in rows[start + lines:] if "Kernel panic - not syncing" in row), None)
    return "\n".join(out + (["[...]", panic] if panic else []))


def text_symbols(system_map):
    """[(address, name)] of the text symbols of a System.map, sorted by address."""
    found = []
    for line in Path(system_map).read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            found.append((int(parts[0], 16), parts[2]))
    return sorted(found)


def symbolise(text, system_map):
    """Kernel text addresses in text (a kernel without kallsyms prints them bare) followed by
    `name+0xoff/0xsize` from the kernel's System.map; text as it is without one."""
    if not system_map or not Path(system_map).exists():
        return text
    import bisect
    symbols = text_symbols(system_map)
    starts = [a for a, _ in symbols]

    def name(m):
        addr = int(m[1], 16)
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or i + 1 >= len(symbols):
            return m[0]
        start, sym = symbols[i]
        return f"{m[0]} ({sym}+{addr - start:#x}/{symbols[i + 1][0] - start:#x})"
    return KERNEL_ADDRESS.sub(name, text)


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
