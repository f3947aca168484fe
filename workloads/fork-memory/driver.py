"""fork-memory driver (runs in the guest): memory figures of a fork of a process with N MiB mapped.

For each repetition: map N MiB anonymous private memory, touch every page, optionally turn COW PTE
on with prctl(PR_SET_COW_PTE) (before the first fork only: the flag then stays on for the
process), fork a child that waits in C, read the parent's and the child's VmRSS/VmPTE and
/proc/meminfo PageTables before and after the fork, release the child. One JSON record each.
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


def fail(what, message, errno):
    guestlib.emit({"type": "error", "error": what, "errno": errno,
                   "message": f"{message}: {os.strerror(errno)}"})
    sys.exit(4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--cow-pte", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--thp", choices=sorted(THP), default="nohuge")
    args = ap.parse_args()

    clock = guestlib.refuse_unless_clock_ok()
    lib = guestlib.load_library("libfork_memory.so")
    lib.fm_map.restype = ctypes.c_void_p
    lib.fm_map.argtypes = [ctypes.c_size_t]
    lib.fm_advise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.fm_touch.restype = ctypes.c_int64
    lib.fm_touch.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.fm_unmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.fm_fork_hold.argtypes = [ctypes.POINTER(Child)]
    lib.fm_release.argtypes = [ctypes.POINTER(Child)]
    config = guestlib.kernel_config()
    size = args.mib << 20

    for rep in range(args.repeat):
        buf = lib.fm_map(size) if size else None
        if size and not buf:
            fail("mmap", f"cannot map {args.mib} MiB", ctypes.get_errno())
        if size and THP[args.thp] >= 0:
            rc = lib.fm_advise(buf, size, THP[args.thp])
            if rc:
                fail("madvise", f"madvise for thp={args.thp} failed (CONFIG_ADVISE_SYSCALLS?)", -rc)
        pages = lib.fm_touch(buf, size) if size else 0
        prctl_ret = prctl_errno = again_ret = again_errno = None
        if args.cow_pte and rep == 0:
            prctl_ret, prctl_errno = guestlib.prctl(guestlib.PR_SET_COW_PTE)
        parent_before = guestlib.status()
        mem_before = guestlib.meminfo()
        child = Child()
        rc = lib.fm_fork_hold(ctypes.byref(child))
        if rc != 0:
            fail("fork", "fork failed", -rc)
        mem_after = guestlib.meminfo()
        parent = guestlib.status()
        kid = guestlib.status(child.pid)
        wait_status = lib.fm_release(ctypes.byref(child))
        if args.cow_pte and rep == 0:
            # The series answers EINVAL only once COW PTE is on for this process (6.2-based).
            again_ret, again_errno = guestlib.prctl(guestlib.PR_SET_COW_PTE)
        if size:
            lib.fm_unmap(buf, size)
        guestlib.emit({
            "type": "record", "workload": "fork-memory", "rep": rep,
            "mib": args.mib, "thp": args.thp, "pages_touched": pages,
            "cow_pte_requested": bool(args.cow_pte),
            "prctl_ret": prctl_ret, "prctl_errno": prctl_errno,
            "prctl_again_ret": again_ret, "prctl_again_errno": again_errno,
            "config_cow_pte": config.get("CONFIG_COW_PTE", "n") if config else None,
            "fork_ns": child.fork_ns,
            "parent_vmrss_kb": parent["VmRSS"], "parent_vmpte_kb": parent["VmPTE"],
            "parent_vmpte_before_kb": parent_before["VmPTE"],
            "child_vmrss_kb": kid["VmRSS"], "child_vmpte_kb": kid["VmPTE"],
            "pagetables_before_kb": mem_before["PageTables"],
            "pagetables_after_kb": mem_after["PageTables"],
            "pagetables_delta_kb": mem_after["PageTables"] - mem_before["PageTables"],
            "child_exit_status": wait_status,
            "clocksource": clock["clocksource"], "clock_resolution_ns": clock["resolution_ns"],
        })


if __name__ == "__main__":
    main()
