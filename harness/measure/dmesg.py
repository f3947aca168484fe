"""Reading the guest kernel's log after a workload: what a mm reviewer would not let pass."""
import re

PATTERNS = [
    ("BUG", re.compile(r"\bBUG[: ]")),
    ("WARNING", re.compile(r"\bWARNING: ")),
    ("Oops", re.compile(r"\bOops\b")),
    ("bad rss-counter", re.compile(r"Bad rss-counter")),
    ("bad page map", re.compile(r"Bad page map")),
    ("bad page state", re.compile(r"Bad page state")),
    ("lockdep", re.compile(r"possible (circular|recursive) locking|inconsistent lock state|"
                           r"suspicious RCU usage|lock held when returning")),
    ("page table check", re.compile(r"page_table_check")),
    ("hung task", re.compile(r"blocked for more than \d+ seconds")),
]

# /proc/sys/kernel/tainted bits (Documentation/admin-guide/tainted-kernels.rst)
TAINTS = {0: "P proprietary module", 1: "F forced module load", 2: "S unsafe SMP", 3: "R forced rmmod",
          4: "M machine check", 5: "B bad page", 6: "U user request", 7: "D died (oops/BUG)",
          8: "A ACPI table override", 9: "W warning", 10: "C staging", 11: "I firmware bug",
          12: "O out-of-tree module", 13: "E unsigned module", 14: "L soft lockup", 15: "K live patch",
          16: "X auxiliary", 17: "T randstruct", 18: "N test"}


def scan(text):
    """[(kind, line)] for every line of a kernel log that matches a pattern."""
    hits = []
    for line in text.splitlines():
        for kind, pattern in PATTERNS:
            if pattern.search(line):
                hits.append((kind, line.strip()))
                break
    return hits


def taint_flags(value):
    value = int(value)
    return [name for bit, name in TAINTS.items() if value & (1 << bit)]


def check(machine):
    """Read and clear the guest's kernel log; return (log text, hits, taint flags)."""
    _, log, _ = machine.run(["dmesg", "--read-clear"])
    _, tainted, _ = machine.run(["cat", "/proc/sys/kernel/tainted"])
    return log, scan(log), taint_flags(tainted.strip() or 0)
