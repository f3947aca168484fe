"""fork-memory driver (runs in the guest): memory figures of a fork of a process with N MiB mapped.

For each repetition: map N MiB anonymous private memory, touch every page, optionally turn COW PTE
on with prctl(PR_SET_COW_PTE) (before the first fork only: the flag then stays on for the
process), fork a child that waits in C, read the parent's and the child's VmRSS/VmPTE and
/proc/meminfo PageTables before and after the fork, release the child. One JSON record each.
The C library is ../common/forkutil.c alone.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import guestlib  # noqa: E402


def main():
    ap = guestlib.params_parser(feature_choices=None)   # any integer; non-zero turns COW PTE on
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    clock = guestlib.refuse_unless_clock_ok()
    lib = guestlib.load_fork_library("libfork_memory.so")
    config = guestlib.kernel_config()

    for rep in range(args.repeat):
        buf, size, pages = guestlib.map_touched(lib, args.mib, args.thp)
        first = bool(args.feature) and rep == 0
        prctl = guestlib.switch_on(args, first)
        fork_ns, evidence = guestlib.held_fork_evidence(lib)
        del evidence["anon_huge_kb"]                      # not part of fork-memory's records
        again = guestlib.switch_again(args, first)
        if size:
            lib.fu_unmap(buf, size)
        guestlib.emit({
            "type": "record", "workload": "fork-memory", "rep": rep,
            "mib": args.mib, "thp": args.thp, "pages_touched": pages,
            "feature_requested": bool(args.feature), **prctl, **again,
            "feature_config": guestlib.feature_config(config, args),
            "fork_ns": fork_ns, **evidence, **guestlib.clock_fields(clock),
        })


if __name__ == "__main__":
    main()
