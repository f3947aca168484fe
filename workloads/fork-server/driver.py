"""fork-server driver (runs in the guest): fork-server throughput, the fuzzer pattern.

Map and touch heap_mib MiB, optionally prctl(PR_SET_COW_PTE), then one fork whose child is held
alive while the driver reads VmPTE and /proc/meminfo PageTables around it (COW PTE evidence, same
field names as fork-memory; COW PTE, once on, stays on for every later fork, so the evidence is
copied into every round's record). Then `rounds` rounds, each in C: fork a child that writes
child_pages heap pages and _exits, reap it, repeat, for `seconds` or exactly `forks` forks.

One JSON record per round. Bad parameters: an error record and exit code 2; a failed mmap,
madvise or fork, or a child that did not exit 0: an error record and exit code 4.
"""
import ctypes
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import guestlib  # noqa: E402
from guestlib import bad, fail  # noqa: E402


class Stats(ctypes.Structure):
    _fields_ = [("forks", ctypes.c_int64), ("elapsed_ns", ctypes.c_int64),
                ("fork_ns_total", ctypes.c_int64), ("fork_ns_min", ctypes.c_int64),
                ("fork_ns_max", ctypes.c_int64), ("bad_children", ctypes.c_int64)]


def load():
    lib = guestlib.load_fork_library("libfork_server.so")
    lib.fs_run.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64, ctypes.c_int64,
                           ctypes.c_int64, ctypes.POINTER(Stats)]
    return lib


def main():
    ap = guestlib.params_parser()
    ap.add_argument("--heap-mib", type=int, default=256)
    ap.add_argument("--child-pages", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--forks", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
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
    heap, size, pages = guestlib.map_touched(lib, args.heap_mib, args.thp)

    prctl = guestlib.switch_on(args, args.feature)
    fork_ns, evidence = guestlib.held_fork_evidence(lib)
    again = guestlib.switch_again(args, args.feature)

    common = {
        "type": "record", "workload": "fork-server", "heap_mib": args.heap_mib, "thp": args.thp,
        "child_pages": args.child_pages, "pages_touched": pages,
        "feature_requested": bool(args.feature), **prctl, **again,
        "feature_config": guestlib.feature_config(config, args),
        "evidence_fork_ns": fork_ns, **evidence, **guestlib.clock_fields(clock),
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
        lib.fu_unmap(heap, size)


if __name__ == "__main__":
    main()
