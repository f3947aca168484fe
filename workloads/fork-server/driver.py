"""fork-server driver (runs in the guest): fork-server throughput, the fuzzer pattern.

Map and touch heap_mib MiB, optionally prctl(PR_SET_COW_PTE), then one fork whose child is held
alive while the driver reads VmPTE and /proc/meminfo PageTables around it (COW PTE evidence, same
field names as fork-memory; COW PTE, once on, stays on for every later fork, so the evidence is
copied into every round's record). Then `rounds` rounds, each in C: fork a child that writes
child_pages heap pages and _exits, reap it, repeat, for `seconds` or exactly `forks` forks.

One JSON record per round. Bad parameters: an error record and exit code 2; a failed mmap,
madvise or fork, or a child that did not exit 0: an error record and exit code 4.
"""
import argparse
import ctypes
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import guestlib  # noqa: E402

THP = {"default": -1, "nohuge": 0, "huge": 1}


class Stats(ctypes.Structure):
    _fields_ = [("forks", ctypes.c_int64), ("elapsed_ns", ctypes.c_int64),
                ("fork_ns_total", ctypes.c_int64), ("fork_ns_min", ctypes.c_int64),
                ("fork_ns_max", ctypes.c_int64), ("bad_children", ctypes.c_int64)]


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


def load():
    lib = guestlib.load_library("libfork_server.so")
    lib.fs_map.restype = ctypes.c_void_p
    lib.fs_map.argtypes = [ctypes.c_size_t]
    lib.fs_advise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.fs_touch.restype = ctypes.c_int64
    lib.fs_touch.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.fs_unmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.fs_run.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64, ctypes.c_int64,
                           ctypes.c_int64, ctypes.POINTER(Stats)]
    lib.fs_fork_hold.argtypes = [ctypes.POINTER(Child)]
    lib.fs_release.argtypes = [ctypes.POINTER(Child)]
    return lib


def main():
    ap = Parser()
    ap.add_argument("--heap-mib", type=int, default=256)
    ap.add_argument("--child-pages", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--forks", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cow-pte", type=int, choices=(0, 1), default=0)
    ap.add_argument("--thp", choices=sorted(THP), default="nohuge")
    args = ap.parse_args()
    if args.heap_mib < 0:
        bad(f"heap_mib must not be negative (got {args.heap_mib})")
    heap_pages = (args.heap_mib << 20) // os.sysconf("SC_PAGESIZE")
    if not 0 <= args.child_pages <= heap_pages:
        bad(f"child_pages must be between 0 and the heap's {heap_pages} pages (got {args.child_pages})")
    if args.forks < 0 or (args.forks == 0 and not args.seconds > 0):
        bad(f"need forks > 0 or seconds > 0 (got forks={args.forks}, seconds={args.seconds})")
    if args.rounds < 1:
        bad(f"rounds must be at least 1 (got {args.rounds})")

    clock = guestlib.refuse_unless_clock_ok()
    lib = load()
    config = guestlib.kernel_config()
    size = args.heap_mib << 20
    heap = lib.fs_map(size) if size else None
    if size and not heap:
        fail("mmap", f"cannot map {args.heap_mib} MiB", ctypes.get_errno())
    if size and THP[args.thp] >= 0:
        rc = lib.fs_advise(heap, size, THP[args.thp])
        if rc:
            fail("madvise", f"madvise for thp={args.thp} failed (CONFIG_ADVISE_SYSCALLS?)", -rc)
    pages = lib.fs_touch(heap, size) if size else 0

    prctl_ret = prctl_errno = again_ret = again_errno = None
    if args.cow_pte:
        prctl_ret, prctl_errno = guestlib.prctl(guestlib.PR_SET_COW_PTE)
    parent_before = guestlib.status()
    mem_before = guestlib.meminfo()
    child = Child()
    rc = lib.fs_fork_hold(ctypes.byref(child))
    if rc != 0:
        fail("fork", "fork failed", -rc)
    mem_after = guestlib.meminfo()
    parent = guestlib.status()
    kid = guestlib.status(child.pid)
    wait_status = lib.fs_release(ctypes.byref(child))
    if args.cow_pte:
        # The series answers EINVAL only once COW PTE is on for this process (6.2-based).
        again_ret, again_errno = guestlib.prctl(guestlib.PR_SET_COW_PTE)

    common = {
        "type": "record", "workload": "fork-server", "heap_mib": args.heap_mib, "thp": args.thp,
        "child_pages": args.child_pages, "pages_touched": pages,
        "cow_pte_requested": bool(args.cow_pte),
        "prctl_ret": prctl_ret, "prctl_errno": prctl_errno,
        "prctl_again_ret": again_ret, "prctl_again_errno": again_errno,
        "config_cow_pte": config.get("CONFIG_COW_PTE", "n") if config else None,
        "evidence_fork_ns": child.fork_ns,
        "parent_vmrss_kb": parent["VmRSS"], "parent_vmpte_kb": parent["VmPTE"],
        "parent_vmpte_before_kb": parent_before["VmPTE"],
        "child_vmrss_kb": kid["VmRSS"], "child_vmpte_kb": kid["VmPTE"],
        "pagetables_before_kb": mem_before["PageTables"],
        "pagetables_after_kb": mem_after["PageTables"],
        "pagetables_delta_kb": mem_after["PageTables"] - mem_before["PageTables"],
        "anon_huge_kb": mem_before.get("AnonHugePages"),   # system-wide THP in use (meminfo)
        "child_exit_status": wait_status,
        "clocksource": clock["clocksource"], "clock_resolution_ns": clock["resolution_ns"],
    }
    for number in range(args.rounds):
        st = Stats()
        rc = lib.fs_run(heap, size, args.child_pages, int(args.seconds * 1e9), args.forks,
                        ctypes.byref(st))
        if rc != 0:
            fail("fork", f"fork server failed after {st.forks} forks", -rc)
        if st.bad_children:
            fail("child", f"{st.bad_children} of {st.forks} children did not exit 0", 5)
        guestlib.emit({**common, "round": number, "forks": st.forks, "elapsed_ns": st.elapsed_ns,
                       "forks_per_s": st.forks / (st.elapsed_ns / 1e9) if st.elapsed_ns else None,
                       "fork_ns_mean": st.fork_ns_total / st.forks if st.forks else None,
                       "fork_ns_min": st.fork_ns_min, "fork_ns_max": st.fork_ns_max,
                       "seconds": args.seconds, "forks_requested": args.forks})
    if size:
        lib.fs_unmap(heap, size)


if __name__ == "__main__":
    main()
