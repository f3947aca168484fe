"""Guest-side helpers shared by the workload drivers (stdlib only; runs inside the guest).

prctl is called through ctypes, the kernel's counters are read from /proc, and the clock is
checked before anything is timed: a tick-based clock (jiffies) moves in 4 ms steps, and a figure
measured with it is refused, not stored.
"""
import ctypes
import json
import os
import sys
import time

PR_SET_COW_PTE = 65          # from the COW PTE series; PR_SET_MDWE on upstream Linux >= 6.3
MAX_CLOCK_RES_NS = 1000      # a clock coarser than 1 us cannot time a fork

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    """(return value, errno) of prctl(2); errno is 0 when the call succeeded."""
    ctypes.set_errno(0)
    ret = _libc.prctl(option, arg2, arg3, arg4, arg5)
    return ret, (ctypes.get_errno() if ret < 0 else 0)


def status(pid="self"):
    """The kB fields of /proc/PID/status (VmRSS, VmPTE, ...) as integers."""
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                values[key] = int(parts[0])
    return values


def meminfo():
    values = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0])
    return values


def clock_problem(clocksource, resolution_ns):
    """Why this clock cannot time a workload, or None when it can."""
    if clocksource == "jiffies":
        return "the clocksource is jiffies (tick-based, 4 ms steps)"
    if resolution_ns > MAX_CLOCK_RES_NS:
        return f"CLOCK_MONOTONIC resolution is {resolution_ns} ns (coarser than {MAX_CLOCK_RES_NS} ns)"
    return None


def clock_info():
    base = "/sys/devices/system/clocksource/clocksource0"
    with open(f"{base}/current_clocksource") as fh:
        current = fh.read().strip()
    with open(f"{base}/available_clocksource") as fh:
        available = fh.read().split()
    res_ns = round(time.clock_getres(time.CLOCK_MONOTONIC) * 1e9)
    return {"clocksource": current, "available": available, "resolution_ns": res_ns,
            "problem": clock_problem(current, res_ns)}


def emit(record):
    """One JSON record a line on stdout; the host stores each as it arrives."""
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def refuse_unless_clock_ok(wait_s=5.0):
    """The clock's facts, once it is fine to time with; an error record and exit 3 otherwise.

    Right after boot the kernel still runs on tsc-early (not valid for high-resolution timers) until
    its delayed TSC work switches to tsc, about a second later: wait that long before judging."""
    deadline = time.monotonic() + wait_s
    info = clock_info()
    while info["problem"] and info["clocksource"] != "jiffies" and time.monotonic() < deadline:
        time.sleep(0.05)
        info = clock_info()
    if info["problem"]:
        emit({"type": "error", "error": "clock", "message": f"refusing to time anything: {info['problem']}",
              "clock": info})
        sys.exit(3)
    return info


def kernel_config():
    """The running kernel's config from /proc/config.gz (IKCONFIG_PROC), or {} when absent."""
    import gzip
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            text = fh.read()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def load_library(name):
    return ctypes.CDLL(os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), name), use_errno=True)
