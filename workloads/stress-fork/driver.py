"""stress-fork driver (runs in the guest): stress-ng's fork stressor, its metrics as records.

stress-ng runs `workers` fork workers for `seconds` and writes its metrics as YAML (--yaml) and
as the --metrics-brief table in its log; the YAML is parsed, the table is the fallback. A record's
`seconds` is that parameter (a group axis: runs of 10 s and 60 s are never pooled); stress-ng's
measured wall-clock time is `elapsed_s`.

stress-ng is started by a launcher: a child forked from this driver that execs stress-ng, its
output going to a log file (never to this driver's stdout, the record channel). With feature=1
the launcher first calls prctl(PR_SET_COW_PTE), forks one throwaway child that exits at once (the
fork that turns COW PTE on: the prctl only marks the process READY, and READY does not survive
exec), calls the prctl again, and writes those facts to a pipe before the exec; COW PTE, once on,
survives exec and is inherited by stress-ng's workers and their children. feature_proof is
"active" only when the first prctl returned 0 and the second failed with EINVAL (the 6.2-based
series' answer once COW PTE is on). stress-ng runs either way; the facts are recorded.

One JSON record per stressor line (one: fork). Bad parameters: an error record and exit code 2;
stress-ng missing, failing or printing no metrics: an error record and exit code 4.
"""
import errno as errnos
import json
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import guestlib  # noqa: E402
from guestlib import bad  # noqa: E402

BRIEF = re.compile(r"^stress-ng: (?:metrc|info):\s+\[\d+\]\s+(?P<stressor>[a-z][\w-]*)\s+"
                   r"(?P<ops>\d+)\s+(?P<real>[\d.]+)\s+(?P<usr>[\d.]+)\s+(?P<sys>[\d.]+)\s+"
                   r"(?P<rate>[\d.]+)\s+(?P<rate_cpu>[\d.]+)\s*$", re.M)


def _number(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text.strip("'\"")


def parse_yaml(text):
    """The `metrics:` list of stress-ng's --yaml file: {stressor: {key: value}} (no PyYAML in the
    guest; the file is flat: "    - stressor: NAME" then "      key: value" lines)."""
    metrics, current, inside = {}, None, False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = line.strip() == "metrics:"
            current = None
            continue
        if not inside:
            continue
        item = line.strip()
        if item.startswith("- stressor:"):
            current = metrics.setdefault(item.partition(":")[2].strip(), {})
        elif current is not None and ":" in item:
            key, _, value = item.partition(":")
            current[key.strip()] = _number(value.strip())
    return metrics


def parse_brief(text):
    """The --metrics-brief table of stress-ng's log: {stressor: {key: value}}, the same keys as
    parse_yaml() for the columns it has."""
    return {m["stressor"]: {"bogo-ops": int(m["ops"]), "wall-clock-time": float(m["real"]),
                            "user-time": float(m["usr"]), "system-time": float(m["sys"]),
                            "bogo-ops-per-second-real-time": float(m["rate"]),
                            "bogo-ops-per-second-usr-sys-time": float(m["rate_cpu"])}
            for m in BRIEF.finditer(text)}


def metric_fields(values):
    """The record's figures from one stressor's metrics (parse_yaml or parse_brief)."""
    return {"ops": values.get("bogo-ops"), "elapsed_s": values.get("wall-clock-time"),
            "ops_per_s": values.get("bogo-ops-per-second-real-time"),
            "ops_per_s_usr_sys": values.get("bogo-ops-per-second-usr-sys-time"),
            "usr_s": values.get("user-time"), "sys_s": values.get("system-time")}


def proof(requested, facts):
    """feature_proof from the launcher's facts: None when not requested."""
    if not requested:
        return None
    if facts.get("prctl_ret") == 0 and facts.get("prctl_again_ret") == -1 \
            and facts.get("prctl_again_errno") == errnos.EINVAL:
        return "active"
    return "not proven"


def launch(argv, log_path, switch):
    """Fork the launcher, which execs argv with its output in log_path (after the COW PTE steps
    when switch, the feature's (prctl option, arg), is given). Returns (facts, wait status): the prctl facts the launcher wrote to the pipe."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the launcher
        try:
            os.close(rfd)
            facts = {"prctl_ret": None, "prctl_errno": None, "prctl_again_ret": None,
                     "prctl_again_errno": None, "throwaway_status": None}
            if switch:
                ret, err = guestlib.prctl(switch[0], switch[1])
                facts.update(prctl_ret=ret, prctl_errno=err)
                if ret == 0:   # the fork that consumes READY; nothing is timed here
                    child = os.fork()
                    if child == 0:
                        os._exit(0)
                    facts["throwaway_status"] = os.waitpid(child, 0)[1]
                    again, again_err = guestlib.prctl(switch[0], switch[1])
                    facts.update(prctl_again_ret=again, prctl_again_errno=again_err)
            os.write(wfd, json.dumps(facts).encode())
            os.close(wfd)
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.execvp(argv[0], argv)
        except BaseException as exc:   # noqa: BLE001 - the launcher must never return
            try:
                os.write(2, f"stress-fork launcher: {exc}\n".encode())
            finally:
                os._exit(127)
    os.close(wfd)
    chunks = []
    while True:
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(rfd)
    status = os.waitpid(pid, 0)[1]
    facts = json.loads(b"".join(chunks) or b"{}")
    return facts, status


def main():
    ap = guestlib.params_parser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (debugging)")
    args = ap.parse_args()
    if args.seconds < 1:
        bad(f"seconds must be at least 1 (got {args.seconds})")
    if args.workers < 1:
        bad(f"workers must be at least 1 (got {args.workers})")
    stress_ng = shutil.which("stress-ng")
    if not stress_ng:
        guestlib.emit({"type": "error", "error": "stress-ng",
                       "message": "stress-ng is not installed (Debian package stress-ng)"})
        sys.exit(4)

    clock = guestlib.refuse_unless_clock_ok()
    config = guestlib.kernel_config()
    work = tempfile.mkdtemp(prefix="harness-stress-fork-")
    yaml_path, log_path = os.path.join(work, "metrics.yaml"), os.path.join(work, "stress-ng.log")
    argv = [stress_ng, "--fork", str(args.workers), "--timeout", f"{args.seconds}s",
            "--metrics-brief", "--yaml", yaml_path, "--temp-path", work]
    facts, status = launch(argv, log_path, (args.feature_prctl, args.feature_arg) if args.feature else None)
    code = os.waitstatus_to_exitcode(status)
    with open(log_path, errors="replace") as fh:
        log = fh.read()
    try:
        with open(yaml_path) as fh:
            yaml_text = fh.read()
    except OSError:
        yaml_text = ""
    metrics, source = parse_yaml(yaml_text), "yaml"
    if "fork" not in metrics:
        metrics, source = parse_brief(log), "metrics-brief"
    if code != 0 or "fork" not in metrics:
        guestlib.emit({"type": "error", "error": "stress-ng",
                       "message": f"stress-ng exited with {code}"
                                  + ("" if "fork" in metrics else " and printed no fork metrics"),
                       "log_tail": "\n".join(log.splitlines()[-20:])})
        sys.exit(4)
    version = re.search(r"stress-ng-version:\s*(\S+)", yaml_text) or \
        re.search(r"stress-ng, version (\S+)", log)
    guestlib.emit({
        "type": "record", "workload": "stress-fork", "stressor": "fork", "workers": args.workers,
        "seconds": args.seconds, **metric_fields(metrics["fork"]),
        "metrics_source": source, "stress_ng_version": version.group(1) if version else None,
        "feature_requested": bool(args.feature), "prctl_ret": facts.get("prctl_ret"),
        "prctl_errno": facts.get("prctl_errno"), "prctl_again_ret": facts.get("prctl_again_ret"),
        "prctl_again_errno": facts.get("prctl_again_errno"),
        "throwaway_status": facts.get("throwaway_status"),
        "feature_proof": proof(args.feature, facts),
        "feature_config": guestlib.feature_config(config, args), **guestlib.clock_fields(clock),
    })
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
