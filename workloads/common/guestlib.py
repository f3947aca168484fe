"""Guest-side helpers shared by the workload drivers (stdlib only; runs inside the guest).

prctl is called through ctypes, the kernel's counters are read from /proc, and the clock is
checked before anything is timed: a tick-based clock (jiffies) moves in 4 ms steps, and a figure
measured with it is refused, not stored.

The fork workloads also share their driver plumbing here: the parameter parser whose errors are an
error record (exit 2), fail() for a failed system call (exit 4), the ctypes side of
forkutil.c (map and touch, the held fork) and the COW PTE evidence read around a held fork.
"""
import argparse
import ctypes
import json
import os
import sys
import time

PR_SET_COW_PTE = 65          # from the COW PTE series; PR_SET_MDWE on upstream Linux >= 6.3
MAX_CLOCK_STEP_NS = 20000    # a clock read that moves in steps coarser than 20 us cannot time a fork
THP = {"default": -1, "nohuge": 0, "huge": 1}   # --thp: the fu_advise argument; -1: no madvise

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


def stat_refresh():
    """Fold the per-CPU vmstat deltas into the global counters (root): without it /proc/meminfo
    PageTables lags by up to a per-CPU threshold on every CPU (a plain 16 MiB fork read +0 kB in
    one boot, +52 kB in others). True when it was done."""
    try:
        with open("/proc/sys/vm/stat_refresh", "w") as fh:
            fh.write("1")
        return True
    except OSError:
        return False


def meminfo(refresh=False):
    """/proc/meminfo in kB; refresh: fold the per-CPU deltas first (stat_refresh)."""
    if refresh:
        stat_refresh()
    values = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0])
    return values


def clock_problem(clocksource, step_ns):
    """Why this clock cannot time a workload, or None when it can. step_ns: the median step of
    CLOCK_MONOTONIC between reads in a row (read_step_ns)."""
    if clocksource == "jiffies":
        return "the clocksource is jiffies (tick-based, 4 ms steps)"
    if step_ns == 0:
        return "CLOCK_MONOTONIC mostly returns the same value twice in a row (a tick-based clock)"
    if step_ns > MAX_CLOCK_STEP_NS:
        return f"CLOCK_MONOTONIC moves in steps of {step_ns} ns (coarser than {MAX_CLOCK_STEP_NS} ns)"
    return None


def read_step_ns(reads=201):
    """The median step of CLOCK_MONOTONIC between two reads in a row: about the cost of a read
    with a cycle counter behind it (TSC, kvm-clock), 0 with a tick-based one. This is what timing
    depends on; clock_getres() reports the timer resolution instead, which is the tick when the
    kernel has no high-resolution timers (under TCG: see arch/x86_64.toml) while reads stay exact."""
    t = [time.clock_gettime_ns(time.CLOCK_MONOTONIC) for _ in range(reads)]
    steps = sorted(b - a for a, b in zip(t, t[1:]))
    return steps[len(steps) // 2]


def clock_info():
    base = "/sys/devices/system/clocksource/clocksource0"
    with open(f"{base}/current_clocksource") as fh:
        current = fh.read().strip()
    with open(f"{base}/available_clocksource") as fh:
        available = fh.read().split()
    step_ns = read_step_ns()
    return {"clocksource": current, "available": available, "step_ns": step_ns,
            "timer_resolution_ns": round(time.clock_getres(time.CLOCK_MONOTONIC) * 1e9),
            "problem": clock_problem(current, step_ns)}


def emit(record):
    """One JSON record a line on stdout; the host stores each as it arrives."""
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def refuse_unless_clock_ok(wait_s=5.0):
    """The clock's facts, once it is fine to time with; an error record and exit 3 otherwise.

    A clock that is not jiffies gets wait_s seconds to settle before it is judged."""
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


def bad(message):
    """Bad parameters: an error record and exit code 2."""
    emit({"type": "error", "error": "params", "message": message})
    sys.exit(2)


def fail(what, message, errno):
    """A failed system call (what: mmap, madvise, fork, ...): an error record and exit code 4."""
    emit({"type": "error", "error": what, "errno": errno,
          "message": f"{message}: {os.strerror(errno)}"})
    sys.exit(4)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        bad(message)


def params_parser(feature_choices=(0, 1)):
    """An argument parser whose errors are an error record and exit 2, with the options every
    fork workload has: --feature (int; limited to feature_choices unless None; non-zero asks for
    the feature), the switch the harness passes from the feature profile (--feature-prctl,
    --feature-arg, --feature-config; the defaults are the COW PTE series') and --thp."""
    ap = _Parser()
    ap.add_argument("--feature", type=int, choices=feature_choices, default=0)
    ap.add_argument("--feature-prctl", type=int, default=PR_SET_COW_PTE)
    ap.add_argument("--feature-arg", type=int, default=0)
    ap.add_argument("--feature-config", default="CONFIG_COW_PTE")
    ap.add_argument("--thp", choices=sorted(THP), default="nohuge")
    return ap


class Child(ctypes.Structure):
    """struct fu_child (forkutil.h): a held child."""
    _fields_ = [("pid", ctypes.c_int64), ("release_fd", ctypes.c_int64), ("fork_ns", ctypes.c_int64)]


def load_fork_library(name):
    """A workload library built with ../common/forkutil.c, its fu_* calls typed."""
    lib = load_library(name)
    lib.fu_map.restype = ctypes.c_void_p
    lib.fu_map.argtypes = [ctypes.c_size_t]
    lib.fu_advise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.fu_touch.restype = ctypes.c_int64
    lib.fu_touch.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.fu_unmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.fu_fork_hold.argtypes = [ctypes.POINTER(Child), ctypes.c_void_p, ctypes.c_void_p]
    lib.fu_release.argtypes = [ctypes.POINTER(Child)]
    return lib


def map_touched(lib, mib, thp):
    """mib MiB of anonymous private memory, madvised for thp (a THP key) and every page touched:
    (address, bytes, pages touched); (None, 0, 0) for 0 MiB. A failure is fail() (exit 4)."""
    size = mib << 20
    if not size:
        return None, 0, 0
    buf = lib.fu_map(size)
    if not buf:
        fail("mmap", f"cannot map {mib} MiB", ctypes.get_errno())
    if THP[thp] >= 0:
        rc = lib.fu_advise(buf, size, THP[thp])
        if rc:
            fail("madvise", f"madvise for thp={thp} failed (CONFIG_ADVISE_SYSCALLS?)", -rc)
    return buf, size, lib.fu_touch(buf, size)


def held_fork_evidence(lib, hold=None, while_held=None):
    """One timed fork whose child is held alive while the counters are read: the parent's VmPTE
    before, /proc/meminfo PageTables before and after, the parent's and the child's VmRSS/VmPTE.
    hold(child pointer) forks (default fu_fork_hold with nothing for the child to do after);
    while_held() runs after the reads, before the child is released and reaped.
    Returns (fork_ns, evidence); a failed fork is fail() (exit 4)."""
    parent_before = status()
    refreshed = stat_refresh()
    mem_before = meminfo()
    child = Child()
    rc = (hold or (lambda c: lib.fu_fork_hold(c, None, None)))(ctypes.byref(child))
    if rc != 0:
        fail("fork", "fork failed", -rc)
    mem_after = meminfo(refresh=refreshed)
    parent = status()
    kid = status(child.pid)
    if while_held:
        while_held()
    wait_status = lib.fu_release(ctypes.byref(child))
    return child.fork_ns, {
        "parent_vmrss_kb": parent["VmRSS"], "parent_vmpte_kb": parent["VmPTE"],
        "parent_vmpte_before_kb": parent_before["VmPTE"],
        "child_vmrss_kb": kid["VmRSS"], "child_vmpte_kb": kid["VmPTE"],
        "pagetables_before_kb": mem_before["PageTables"],
        "pagetables_after_kb": mem_after["PageTables"],
        "pagetables_delta_kb": mem_after["PageTables"] - mem_before["PageTables"],
        "pagetables_refreshed": refreshed,       # per-CPU vmstat deltas folded before both reads
        "anon_huge_kb": mem_before.get("AnonHugePages"),   # system-wide THP in use (meminfo)
        "child_exit_status": wait_status,
    }


def switch_on(args, asked):
    """The feature's prctl (args.feature_prctl, args.feature_arg) when asked: prctl_ret and
    prctl_errno, both None when not asked. Its return code proves nothing (the counters do)."""
    ret, errno = prctl(args.feature_prctl, args.feature_arg) if asked else (None, None)
    return {"prctl_ret": ret, "prctl_errno": errno}


def switch_again(args, asked):
    """The same prctl again after the first fork with the feature, when asked: prctl_again_ret and
    prctl_again_errno (None when not asked). The COW PTE series answers EINVAL only once the
    feature is on for this process (6.2-based)."""
    ret, errno = prctl(args.feature_prctl, args.feature_arg) if asked else (None, None)
    return {"prctl_again_ret": ret, "prctl_again_errno": errno}


def feature_config(config, args):
    """The record's feature_config: the option args.feature_config of kernel_config() ("n" when
    unset), or None when the kernel's config cannot be read or no option is named."""
    if not config or not args.feature_config:
        return None
    return config.get(args.feature_config, "n")


def clock_fields(clock):
    """The record's clock fields from refuse_unless_clock_ok()."""
    return {"clocksource": clock["clocksource"], "clock_step_ns": clock["step_ns"],
            "timer_resolution_ns": clock["timer_resolution_ns"]}
