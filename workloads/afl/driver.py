"""afl driver (runs in the guest): AFL++ fuzzing toy_parser through its fork server.

The seeds and AFL's output folder live on a tmpfs. afl-fuzz runs for `seconds` (-V) with the
settings a VM needs (AFL_SKIP_CPUFREQ, AFL_NO_AFFINITY, AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES: the
core_pattern is recorded, never changed). Halfway through, the fork server's VmPTE/VmRSS and
/proc/meminfo PageTables are read. The record's figures come from AFL's fuzzer_stats; its
`seconds` is the parameter (a group axis), AFL's measured run_time is `elapsed_s`.

feature=1: the target itself (toy_parser.c), in the fork server before it serves, calls the
profile's prctl (--feature-prctl/--feature-arg; default PR_SET_COW_PTE), forks one throwaway child and calls the prctl again; it writes those facts
to a file read here. feature_proof is "active" only when every fork server saw prctl return 0 and
the second prctl fail with EINVAL (the 6.2-based series' answer once COW PTE is on). The kernel's
own counters around one fork of the fork server (PageTables, VmPTE of server and child; read by
the target, HARNESS_FORK_COUNTERS) go in the record with or without COW PTE, and the harness
judges from them whether the tables were shared (harness/measure/activity.py), as for the other
workloads.
afl-fuzz needs System V shared memory (its coverage map) and flock (its output folder): the
manifest's kernel_config asks for CONFIG_SYSVIPC and CONFIG_FILE_LOCKING, which the harness adds to
the kernels that run afl. On a kernel without them (no /proc/sysvipc, no /proc/locks) the driver
refuses with an error record naming the option, before afl-fuzz starts.

One JSON record. Bad parameters: an error record and exit code 2; afl-fuzz failing or writing no
fuzzer_stats: an error record and exit code 4.
"""
import errno as errnos
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
import guestlib  # noqa: E402
from guestlib import bad  # noqa: E402

TARGET = "toy_parser"
SEEDS = {   # a small corpus of valid inputs: header "TOY1", then records (type, length, payload)
    "numbers": b"TOY1N\x03123N\x0242\x00\x00",
    "strings": b"TOY1S\x05a=bcdS\x03xyz\x00\x00",
    "list": b"TOY1L\x04\x00\x01\x00\x02C\x03ab\xc3\x00\x00",
}
INT_FIELDS = ("execs_done", "run_time", "corpus_count", "edges_found", "total_edges",
              "saved_crashes", "saved_hangs", "exec_timeout", "slowest_exec_ms", "cycles_done",
              "start_time", "last_update", "fuzzer_pid")
FLOAT_FIELDS = ("execs_per_sec", "execs_ps_last_min")
PERCENT_FIELDS = ("bitmap_cvg", "stability")


def parse_fuzzer_stats(text):
    """AFL's fuzzer_stats ("key : value" lines) as a dict; numbers typed, percentages as floats."""
    stats = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        try:
            if key in INT_FIELDS:
                value = int(value)
            elif key in FLOAT_FIELDS:
                value = float(value)
            elif key in PERCENT_FIELDS:
                value = float(value.rstrip("%"))
        except ValueError:
            pass
        stats[key] = value
    return stats


def stats_fields(stats):
    """The record's fields from parse_fuzzer_stats(). The fork server was used unless AFL says
    no_fsrv in target_mode (AFL_NO_FORKSRV)."""
    mode = stats.get("target_mode", "")
    return {
        "execs_per_sec": stats.get("execs_per_sec"), "execs_done": stats.get("execs_done"),
        "elapsed_s": stats.get("run_time"), "afl_version": stats.get("afl_version"),
        "target_mode": mode, "forkserver": "no_fsrv" not in mode.split(),
        "corpus_count": stats.get("corpus_count"), "edges_found": stats.get("edges_found"),
        "total_edges": stats.get("total_edges"), "bitmap_cvg": stats.get("bitmap_cvg"),
        "stability": stats.get("stability"), "saved_crashes": stats.get("saved_crashes"),
        "saved_hangs": stats.get("saved_hangs"), "afl_exec_timeout_ms": stats.get("exec_timeout"),
        "cycles_done": stats.get("cycles_done"),
    }


def proof_fields(requested, lines):
    """COW PTE evidence from the target's proof lines (one JSON object per fork server started).
    The first fork server's prctl facts go in the record; the proof needs every one of them."""
    if not requested:
        return {"prctl_ret": None, "prctl_errno": None, "prctl_again_ret": None,
                "prctl_again_errno": None, "feature_proof": None, "forkservers_proved": None,
                "forkserver_pid": None}
    first = lines[0] if lines else {}
    active = bool(lines) and all(
        p.get("prctl_ret") == 0 and p.get("prctl_again_ret") == -1
        and p.get("prctl_again_errno") == errnos.EINVAL for p in lines)
    return {"prctl_ret": first.get("prctl_ret"), "prctl_errno": first.get("prctl_errno"),
            "prctl_again_ret": first.get("prctl_again_ret"),
            "prctl_again_errno": first.get("prctl_again_errno"),
            "feature_proof": "active" if active else "not proven",
            "forkservers_proved": len(lines), "forkserver_pid": first.get("pid")}


def counter_fields(lines):
    """The counters read around the fork server's measured fork (the first fork server's), in the
    fields harness/measure/activity.py judges; None where they were not read."""
    first = lines[0] if lines else {}
    before, after = first.get("pagetables_before_kb", -1), first.get("pagetables_after_kb", -1)
    known = lambda v: v if isinstance(v, int) and v >= 0 else None
    return {"parent_vmpte_kb": known(first.get("parent_vmpte_kb")),
            "child_vmpte_kb": known(first.get("child_vmpte_kb")),
            "pagetables_delta_kb": after - before if known(before) is not None and known(after) is not None
            else None}


def fs_type(path):
    """The file system type of the mount holding path (from /proc/mounts)."""
    path = os.path.realpath(path)
    best, kind = "", None
    with open("/proc/mounts") as fh:
        for line in fh:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind


def work_dir():
    """A fresh folder on a tmpfs (/tmp in the guest, else /dev/shm) for seeds and AFL's output."""
    for base in ("/tmp", "/dev/shm"):
        if os.path.isdir(base) and fs_type(base) == "tmpfs":
            return tempfile.mkdtemp(prefix="harness-afl-", dir=base)
    return tempfile.mkdtemp(prefix="harness-afl-")


def read_text(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def children_of(pid):
    """Pids whose parent is pid (scanning /proc; CONFIG_PROC_CHILDREN is not needed)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_text(f"/proc/{entry}/stat")
            if stat and int(stat.rpartition(")")[2].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def sysv_segments(afl_pid):
    """The kernel's System V shared memory segments created by afl-fuzz (/proc/sysvipc/shm's
    cpid column): its coverage map and test case buffer."""
    rows = (read_text("/proc/sysvipc/shm") or "").splitlines()[1:]
    return sum(1 for row in rows if len(row.split()) > 5 and row.split()[4] == str(afl_pid))


def sample_forkserver(afl_pid):
    """The fork server's (afl-fuzz's child running the target) VmPTE/VmRSS and PageTables, and
    afl-fuzz's SysV shared memory segments."""
    for pid in children_of(afl_pid):
        if (read_text(f"/proc/{pid}/comm") or "").strip() == TARGET:
            try:
                st = guestlib.status(pid)
            except OSError:
                continue
            return {"forkserver_vmpte_kb": st.get("VmPTE"), "forkserver_vmrss_kb": st.get("VmRSS"),
                    "pagetables_kb": guestlib.meminfo().get("PageTables"),
                    "sysv_shm_segments": sysv_segments(afl_pid)}
    return dict(UNSAMPLED)


UNSAMPLED = {"forkserver_vmpte_kb": None, "forkserver_vmrss_kb": None, "pagetables_kb": None,
             "sysv_shm_segments": None}


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|[\x0e\x0f]")   # colours, charsets


def afl_complaints(log):
    """AFL's own error lines ([-] PROGRAM ABORT / SYSTEM ERROR, its location and the OS message)
    from its log, colours stripped."""
    lines = [ANSI.sub("", line).strip() for line in (log or "").splitlines()]
    return [line for line in lines
            if line.startswith(("[-]", "Location", "Stop location", "OS message"))]


def fail_run(message, log):
    """An error record (its message carries AFL's complaint, which is all the host shows) and
    exit code 4."""
    complaints = afl_complaints(log)
    if complaints:
        message += ": " + " | ".join(complaints[-4:])
    guestlib.emit({"type": "error", "error": "afl", "message": message,
                   "log_tail": "\n".join(ANSI.sub("", log or "").splitlines()[-25:])})
    sys.exit(4)


def parse_args():
    ap = guestlib.params_parser()
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--heap-mib", type=int, default=64)
    ap.add_argument("--exec-timeout-ms", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (debugging)")
    args = ap.parse_args()
    if args.seconds < 1:
        bad(f"seconds must be at least 1 (got {args.seconds})")
    if args.heap_mib < 0 or args.exec_timeout_ms < 0:
        bad("heap_mib and exec_timeout_ms must not be negative")
    return args


def staged_files():
    """(afl-fuzz, the target): staged beside this driver, or on PATH."""
    afl_fuzz = os.path.join(HERE, "afl-fuzz")
    if not os.path.exists(afl_fuzz):
        afl_fuzz = shutil.which("afl-fuzz")
    target = os.path.join(HERE, TARGET)
    for path in (afl_fuzz, target):
        if not path or not os.path.exists(path):
            bad(f"missing {path or 'afl-fuzz'} (is the workload staged with its artifacts?)")
    return afl_fuzz, target


# What afl-fuzz needs from the kernel (the manifest's kernel_config) and how /proc shows it.
KERNEL_NEEDS = (("CONFIG_SYSVIPC", "/proc/sysvipc", "System V shared memory for its coverage map"),
                ("CONFIG_FILE_LOCKING", "/proc/locks", "flock() of its output folder"))


def kernel_lacks():
    """[(option, what for)] of KERNEL_NEEDS this kernel lacks."""
    return [(option, why) for option, proc, why in KERNEL_NEEDS if not os.path.exists(proc)]


def fuzz_env(args, files):
    """afl-fuzz's environment: the settings a VM needs and the files the target writes."""
    env = dict(os.environ, AFL_SKIP_CPUFREQ="1", AFL_NO_AFFINITY="1",
               AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES="1", AFL_NO_UI="1",
               AFL_FORKSRV_INIT_TMOUT="120000", TOY_HEAP_MIB=str(args.heap_mib))
    for key in ("LD_PRELOAD", "AFL_PRELOAD", "HARNESS_FEATURE_PROOF", "HARNESS_FEATURE_PRCTL",
                "HARNESS_FEATURE_ARG", "HARNESS_FORK_COUNTERS", "AFL_NO_FORKSRV"):
        env.pop(key, None)
    env.update(HARNESS_FORK_COUNTERS=files["counters"])
    if args.feature:
        env.update(HARNESS_FEATURE_PROOF=files["proof"], HARNESS_FEATURE_PRCTL=str(args.feature_prctl),
                   HARNESS_FEATURE_ARG=str(args.feature_arg))
    return env


def supervise(proc, seconds, started, log_path):
    """Wait for afl-fuzz, sampling its fork server once halfway; the sample."""
    sample = dict(UNSAMPLED)
    sample_at = started + seconds / 2
    deadline = started + seconds + 300   # calibration under TCG, slow start
    # asleep in wait() while afl-fuzz is measured: awake only to take the sample and at the end
    while proc.poll() is None:
        now = time.monotonic()
        if now > deadline:
            proc.kill()
            proc.wait()
            fail_run(f"afl-fuzz did not stop after {seconds} s (+300 s)", read_text(log_path))
        if sample["forkserver_vmpte_kb"] is None and now >= sample_at:
            sample = sample_forkserver(proc.pid)
            sample_at = now + 1   # not found yet (still calibrating): try again in a second
        wake = sample_at if sample["forkserver_vmpte_kb"] is None else deadline
        try:
            proc.wait(timeout=max(0.01, min(wake, deadline) - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    return sample


def json_lines(path):
    return [json.loads(line) for line in (read_text(path) or "").splitlines() if line.strip()]


def main():
    args = parse_args()
    afl_fuzz, target = staged_files()
    lacks = kernel_lacks()
    if lacks:
        guestlib.emit({"type": "error", "error": "kernel", "message": "this kernel lacks "
                       + "; ".join(f"{o} ({why})" for o, why in lacks) + ", which afl-fuzz needs: "
                       "build it with them (workloads/afl/manifest.toml kernel_config)"})
        sys.exit(4)
    clock = guestlib.refuse_unless_clock_ok()
    config = guestlib.kernel_config()
    core_pattern = read_text("/proc/sys/kernel/core_pattern")

    work = work_dir()
    files = {name: os.path.join(work, leaf) for name, leaf in (
        ("seeds", "in"), ("out", "out"), ("proof", "feature_proof"),
        ("counters", "fork_counters"), ("log", "afl-fuzz.log"))}
    os.makedirs(files["seeds"])
    for name, data in SEEDS.items():
        with open(os.path.join(files["seeds"], name), "wb") as fh:
            fh.write(data)
    env = fuzz_env(args, files)
    argv = [afl_fuzz, "-i", files["seeds"], "-o", files["out"], "-V", str(args.seconds)]
    if args.exec_timeout_ms:
        argv += ["-t", str(args.exec_timeout_ms)]
    argv += ["--", target]

    started = time.monotonic()
    with open(files["log"], "wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
        sample = supervise(proc, args.seconds, started, files["log"])
    wall = time.monotonic() - started
    log_text = read_text(files["log"])
    stats_text = read_text(os.path.join(files["out"], "default", "fuzzer_stats"))
    if proc.returncode != 0 or stats_text is None:
        fail_run(f"afl-fuzz exited with {proc.returncode}"
                 + ("" if stats_text else " and wrote no fuzzer_stats"), log_text)
    proofs, counters = json_lines(files["proof"]), json_lines(files["counters"])
    if args.feature and not proofs:
        print(f"afl driver: no COW PTE proof line from the fork server; log:\n{log_text}",
              file=sys.stderr)

    guestlib.emit({
        "type": "record", "workload": "afl", "seconds": args.seconds,
        "heap_mib": args.heap_mib, "wall_s": round(wall, 3), **stats_fields(parse_fuzzer_stats(stats_text)),
        **sample, "work_fs": fs_type(work),
        "core_pattern": (core_pattern or "").strip() or None,
        "feature_requested": bool(args.feature), **proof_fields(args.feature, proofs),
        **counter_fields(counters),
        "feature_config": guestlib.feature_config(config, args), **guestlib.clock_fields(clock),
    })
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
