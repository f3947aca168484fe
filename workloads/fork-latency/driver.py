"""fork-latency driver (runs in the guest): fork() latency against the parent's mapped size.

For each size: map N MiB anonymous private memory, touch every page, then `warmup` forks
(recorded, "warmup": true) and `reps` timed forks; each child _exits at once and is reaped
outside the timed region. The first timed fork of each size holds its child alive while the
driver reads the parent's and the child's VmPTE and /proc/meminfo PageTables before and after
it: the COW PTE evidence that harness/activity.py judges (same field names as fork-memory).
With cow_pte=1, prctl(PR_SET_COW_PTE) is called once, just before the process's first fork
(a warmup fork of the first size when warmup > 0); COW PTE then stays on for every later fork.

One JSON record per fork. Bad parameters: an error record and exit code 2; a failed mmap,
madvise or fork: an error record and exit code 4.
"""
import argparse
import ctypes
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import guestlib  # noqa: E402

THP = {"default": -1, "nohuge": 0, "huge": 1}


class Child(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_int64), ("release_fd", ctypes.c_int64), ("fork_ns", ctypes.c_int64)]


def bad(message):
    guestlib.emit({"type": "error", "error": "params", "message": message})
    sys.exit(2)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        bad(message)


def fail(what, message, errno):
    guestlib.emit({"type": "error", "error": what, "errno": errno,
                   "message": f"{message}: {os.strerror(errno)}"})
    sys.exit(4)


def parse_sizes(text):
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        bad(f"sizes_mib '{text}' is not a comma-separated list of integers")
    if any(s < 0 for s in sizes):
        bad(f"sizes_mib '{text}' has a negative size")
    return sizes


def load():
    lib = guestlib.load_library("libfork_latency.so")
    lib.flat_map.restype = ctypes.c_void_p
    lib.flat_map.argtypes = [ctypes.c_size_t]
    lib.flat_advise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.flat_touch.restype = ctypes.c_int64
    lib.flat_touch.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.flat_unmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.flat_forks.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
    lib.flat_fork_hold.argtypes = [ctypes.POINTER(Child)]
    lib.flat_release.argtypes = [ctypes.POINTER(Child)]
    return lib


def forks(lib, n):
    """n timed forks (children exit at once); their fork() times in ns."""
    ns = (ctypes.c_int64 * max(n, 1))()
    rc = lib.flat_forks(n, ns)
    if rc != 0:
        fail("fork", "fork failed", -rc)
    return list(ns[:n])


def held_fork(lib):
    """One timed fork whose child is held alive while the counters are read."""
    parent_before = guestlib.status()
    mem_before = guestlib.meminfo()
    child = Child()
    rc = lib.flat_fork_hold(ctypes.byref(child))
    if rc != 0:
        fail("fork", "fork failed", -rc)
    mem_after = guestlib.meminfo()
    parent = guestlib.status()
    kid = guestlib.status(child.pid)
    wait_status = lib.flat_release(ctypes.byref(child))
    return child.fork_ns, {
        "parent_vmrss_kb": parent["VmRSS"], "parent_vmpte_kb": parent["VmPTE"],
        "parent_vmpte_before_kb": parent_before["VmPTE"],
        "child_vmrss_kb": kid["VmRSS"], "child_vmpte_kb": kid["VmPTE"],
        "pagetables_before_kb": mem_before["PageTables"],
        "pagetables_after_kb": mem_after["PageTables"],
        "pagetables_delta_kb": mem_after["PageTables"] - mem_before["PageTables"],
        "anon_huge_kb": mem_before.get("AnonHugePages"),   # system-wide THP in use (meminfo)
        "child_exit_status": wait_status,
    }


def main():
    ap = Parser()
    ap.add_argument("--sizes-mib", default="0,1,2,4,8,16,32,64,128,256,512,1024")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cow-pte", type=int, choices=(0, 1), default=0)
    ap.add_argument("--thp", choices=sorted(THP), default="nohuge")
    args = ap.parse_args()
    sizes = parse_sizes(args.sizes_mib)
    if args.reps < 1:
        bad(f"reps must be at least 1 (got {args.reps})")
    if args.warmup < 0:
        bad(f"warmup must not be negative (got {args.warmup})")

    clock = guestlib.refuse_unless_clock_ok()
    lib = load()
    config = guestlib.kernel_config()
    prctl_ret = prctl_errno = None
    prctl_again = None          # (ret, errno) of a second prctl after the first COW PTE fork
    first_fork = True

    for size_mib in sizes:
        size = size_mib << 20
        buf = lib.flat_map(size) if size else None
        if size and not buf:
            fail("mmap", f"cannot map {size_mib} MiB", ctypes.get_errno())
        if size and THP[args.thp] >= 0:
            rc = lib.flat_advise(buf, size, THP[args.thp])
            if rc:
                fail("madvise", f"madvise for thp={args.thp} failed (CONFIG_ADVISE_SYSCALLS?)", -rc)
        pages = lib.flat_touch(buf, size) if size else 0
        if args.cow_pte and first_fork:
            prctl_ret, prctl_errno = guestlib.prctl(guestlib.PR_SET_COW_PTE)

        common = {
            "type": "record", "workload": "fork-latency", "size_mib": size_mib, "thp": args.thp,
            "pages_touched": pages, "cow_pte_requested": bool(args.cow_pte),
            "clocksource": clock["clocksource"], "clock_resolution_ns": clock["resolution_ns"],
        }
        warm = forks(lib, args.warmup)
        first_fork = first_fork and not warm
        held_ns, evidence = held_fork(lib)
        evidence.update({
            "config_cow_pte": config.get("CONFIG_COW_PTE", "n") if config else None,
            "prctl_ret": prctl_ret, "prctl_errno": prctl_errno,
        })
        if args.cow_pte and prctl_again is None:
            # The series answers EINVAL only once COW PTE is on for this process (6.2-based).
            prctl_again = guestlib.prctl(guestlib.PR_SET_COW_PTE)
            evidence.update({"prctl_again_ret": prctl_again[0], "prctl_again_errno": prctl_again[1]})
        first_fork = False
        rest = forks(lib, args.reps - 1)
        if size:
            lib.flat_unmap(buf, size)

        for rep, ns in enumerate(warm):
            guestlib.emit({**common, "rep": rep, "warmup": True, "held_child": False, "fork_ns": ns})
        guestlib.emit({**common, "rep": 0, "warmup": False, "held_child": True, "fork_ns": held_ns,
                       **evidence})
        for rep, ns in enumerate(rest, 1):
            guestlib.emit({**common, "rep": rep, "warmup": False, "held_child": False, "fork_ns": ns})


if __name__ == "__main__":
    main()
