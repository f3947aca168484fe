"""fault-latency driver (runs in the guest): write latency after a fork, per access.

Map `mib` MiB anonymous private memory, touch every page, optionally prctl(PR_SET_COW_PTE), then
fork once. The child is held alive while the driver reads VmPTE and /proc/meminfo PageTables
around the fork (COW PTE evidence, same field names as fork-memory). Then the chosen side writes,
in C: seq = one write to every page in order; random = random_writes writes to pages drawn by a
fixed-seed xorshift; `rounds` rounds. Each access is timed (clock, write, clock); C computes the
per-round mean, median and variance outside the timed accesses and leaves them in a small
MAP_SHARED buffer made before the fork (a mapping of its own, not the measured memory), through
which a writing child hands them to the parent. With side=parent the child stays alive (sharing
the memory) until the parent has written.

One JSON record per round. Bad parameters: an error record and exit code 2; a failed mmap,
madvise, fork or writer: an error record and exit code 4.
"""
import ctypes
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import guestlib  # noqa: E402
from guestlib import bad, fail  # noqa: E402

PATTERN = {"seq": 0, "random": 1}
DEFAULT_ROUNDS = {"seq": 1, "random": 100}
SEED = 88172645463325252   # xorshift64 start state (Marsaglia's), fixed: every run writes the same pages


class Config(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("bytes", ctypes.c_int64), ("pattern", ctypes.c_int64),
                ("writes", ctypes.c_int64), ("rounds", ctypes.c_int64), ("seed", ctypes.c_uint64)]


class Round(ctypes.Structure):
    _fields_ = [("accesses", ctypes.c_int64), ("mean_ns", ctypes.c_double),
                ("median_ns", ctypes.c_double), ("var_ns2", ctypes.c_double),
                ("min_ns", ctypes.c_int64), ("max_ns", ctypes.c_int64),
                ("minor_faults", ctypes.c_int64), ("elapsed_ns", ctypes.c_int64)]


class Header(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int64), ("rounds_done", ctypes.c_int64)]


def load():
    lib = guestlib.load_fork_library("libfault_latency.so")
    lib.fl_map_shared.restype = ctypes.c_void_p
    lib.fl_map_shared.argtypes = [ctypes.c_size_t]
    lib.fl_write.argtypes = [ctypes.POINTER(Config), ctypes.c_void_p]
    lib.fl_fork_hold.argtypes = [ctypes.POINTER(Config), ctypes.c_void_p, ctypes.c_int,
                                 ctypes.POINTER(guestlib.Child)]
    return lib


def main():
    ap = guestlib.params_parser()
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--pattern", choices=sorted(PATTERN), default="seq")
    ap.add_argument("--random-writes", type=int, default=1000000)
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--side", choices=("child", "parent"), default="child")
    args = ap.parse_args()
    if args.mib < 1:
        bad(f"mib must be at least 1 (got {args.mib})")
    if args.random_writes < 1:
        bad(f"random_writes must be at least 1 (got {args.random_writes})")
    if args.rounds < 0:
        bad(f"rounds must not be negative (got {args.rounds})")
    rounds = args.rounds or DEFAULT_ROUNDS[args.pattern]

    clock = guestlib.refuse_unless_clock_ok()
    lib = load()
    config = guestlib.kernel_config()

    shared_bytes = ctypes.sizeof(Header) + rounds * ctypes.sizeof(Round)
    shared = lib.fl_map_shared(shared_bytes)
    if not shared:
        fail("mmap", "cannot map the shared result buffer", ctypes.get_errno())
    header = Header.from_address(shared)
    results = (Round * rounds).from_address(shared + ctypes.sizeof(Header))
    header.status = -1

    buf, size, pages = guestlib.map_touched(lib, args.mib, args.thp)
    cfg = Config(buf, size, PATTERN[args.pattern], args.random_writes, rounds, SEED)

    prctl = guestlib.switch_on(args, args.feature)
    again = {}

    def while_held():
        again.update(guestlib.switch_again(args, args.feature))
        if args.side == "parent":
            lib.fl_write(ctypes.byref(cfg), shared)   # the child stays alive, sharing the memory

    fork_ns, evidence = guestlib.held_fork_evidence(
        lib, hold=lambda child: lib.fl_fork_hold(ctypes.byref(cfg), shared,
                                                 int(args.side == "child"), child),
        while_held=while_held)
    wait_status = evidence["child_exit_status"]
    if header.status != 0 or header.rounds_done != rounds:
        err = -header.status if header.status < 0 else 0
        fail("write", f"the {args.side} did not finish its writes (wait status {wait_status}, "
                      f"{header.rounds_done} of {rounds} rounds)", err or 5)
    lib.fu_unmap(buf, size)

    common = {
        "type": "record", "workload": "fault-latency", "mib": args.mib, "thp": args.thp,
        "pattern": args.pattern, "side": args.side, "rounds": rounds, "seed": SEED,
        "pages_touched": pages, "fork_ns": fork_ns,
        "feature_requested": bool(args.feature), **prctl, **again,
        "feature_config": guestlib.feature_config(config, args),
        **evidence, **guestlib.clock_fields(clock),
    }
    for number, r in enumerate(results):
        guestlib.emit({**common, "round": number, "accesses": r.accesses,
                       "mean_ns": r.mean_ns, "median_ns": r.median_ns, "std_ns": math.sqrt(r.var_ns2),
                       "min_ns": r.min_ns, "max_ns": r.max_ns, "minor_faults": r.minor_faults,
                       "round_elapsed_ns": r.elapsed_ns})


if __name__ == "__main__":
    main()
