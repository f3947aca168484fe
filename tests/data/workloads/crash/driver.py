"""Crash the guest kernel (fault injection for the harness's tests)."""
import os

os.sync()
with open("/proc/sysrq-trigger", "w") as fh:
    fh.write("c")
