"""fork-latency driver (runs in the guest): fork() latency against the parent's mapped size.

For each size: map N MiB anonymous private memory, touch every page, then `warmup` forks
(recorded, "warmup": true) and `reps` timed forks; each child _exits at once and is reaped
outside the timed region. The first timed fork of each size holds its child alive while the
driver reads the parent's and the child's VmPTE and /proc/meminfo PageTables before and after
it: the COW PTE evidence that harness/measure/activity.py judges (same field names as fork-memory).
With feature=1, prctl(PR_SET_COW_PTE) is called once, just before the process's first fork
(a warmup fork of the first size when warmup > 0); COW PTE then stays on for every later fork.

One JSON record per fork. Bad parameters: an error record and exit code 2; a failed mmap,
madvise or fork: an error record and exit code 4.
"""
import ctypes
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import guestlib  # noqa: E402
from guestlib import bad, fail  # noqa: E402


def parse_sizes(text):
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        bad(f"sizes_mib '{text}' is not a comma-separated list of integers")
    if any(s < 0 for s in sizes):
        bad(f"sizes_mib '{text}' has a negative size")
    return sizes


def load():
    lib = guestlib.load_fork_library("libfork_latency.so")
    lib.flat_forks.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]
    return lib


def forks(lib, n):
    """n timed forks (children exit at once); their fork() times in ns."""
    ns = (ctypes.c_int64 * max(n, 1))()
    rc = lib.flat_forks(n, ns)
    if rc != 0:
        fail("fork", "fork failed", -rc)
    return list(ns[:n])


def main():
    ap = guestlib.params_parser()
    ap.add_argument("--sizes-mib", default="0,1,2,4,8,16,32,64,128,256,512,1024")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    sizes = parse_sizes(args.sizes_mib)
    if args.reps < 1:
        bad(f"reps must be at least 1 (got {args.reps})")
    if args.warmup < 0:
        bad(f"warmup must not be negative (got {args.warmup})")

    clock = guestlib.refuse_unless_clock_ok()
    lib = load()
    config = guestlib.kernel_config()
    prctl = guestlib.switch_on(args, False)
    prctl_again_done = False    # a second prctl after the first COW PTE fork, recorded once
    first_fork = True

    for size_mib in sizes:
        buf, size, pages = guestlib.map_touched(lib, size_mib, args.thp)
        if args.feature and first_fork:
            prctl = guestlib.switch_on(args, True)

        common = {
            "type": "record", "workload": "fork-latency", "size_mib": size_mib, "thp": args.thp,
            "pages_touched": pages, "feature_requested": bool(args.feature),
            **guestlib.clock_fields(clock),
        }
        warm = forks(lib, args.warmup)
        first_fork = first_fork and not warm
        held_ns, evidence = guestlib.held_fork_evidence(lib)
        evidence.update({"feature_config": guestlib.feature_config(config, args), **prctl})
        if args.feature and not prctl_again_done:
            evidence.update(guestlib.switch_again(args, True))
            prctl_again_done = True
        first_fork = False
        rest = forks(lib, args.reps - 1)
        if size:
            lib.fu_unmap(buf, size)

        for rep, ns in enumerate(warm):
            guestlib.emit({**common, "rep": rep, "warmup": True, "held_child": False, "fork_ns": ns})
        guestlib.emit({**common, "rep": 0, "warmup": False, "held_child": True, "fork_ns": held_ns,
                       **evidence})
        for rep, ns in enumerate(rest, 1):
            guestlib.emit({**common, "rep": rep, "warmup": False, "held_child": False, "fork_ns": ns})


if __name__ == "__main__":
    main()
