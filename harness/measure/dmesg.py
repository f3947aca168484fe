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

def scan(text):
    """[(kind, line)] for every line of a kernel log that matches a pattern."""
    hits = []
    for line in text.splitlines():
        for kind, pattern in PATTERNS:
            if pattern.search(line):
                hits.append((kind, line.strip()))
                break
    return hits


def check(target):
    """The target's kernel log since the last look, and what a reviewer would flag in it: its
    BUGs, WARNINGs, lockdep reports ..., and the taint flags set since the last look, as
    (log text, [(kind, line)])."""
    log = target.kernel_log()
    hits = scan(log)
    new = target.new_taints()
    return log, hits + ([("taint", ", ".join(new))] if new else [])
