"""An interrupted run (the harness killed with SIGKILL mid-run) continues with --resume, keeping
the kernels that finished; within 5 s the killed harness leaves no QEMU (nor its supervisor)
behind. Both kernels are the one the real tests share (guest-base + selftests): nothing is built
here."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.real.test_faults_real import qemus_under

pytestmark = pytest.mark.slow


def supervisors_of(folder):
    """PIDs of live harness supervisors whose command line mentions folder."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace") if proc.name.isdigit() else ""
            zombie = cmd and (proc / "stat").read_text().split(") ")[1][0] == "Z"
        except OSError:
            continue
        if "supervise.py" in cmd and str(folder) in cmd and not zombie:
            found.append(int(proc.name))
    return found


def test_killed_run_resumes(tmp_path):
    exp = tmp_path / "two.toml"
    exp.write_text('source = "debian:linux-source-6.1"\n[guest]\naccel = "tcg"\nmemory_mib = 1024\n'
                   '[[kernels]]\nlabel = "a"\nfragments = ["guest-base", "selftests"]\n'
                   '[[kernels]]\nlabel = "b"\nfragments = ["guest-base", "selftests"]\n'
                   '[[workloads]]\nname = "fork-memory"\nparams = { mib = 64, repeat = 30 }\n')
    results = tmp_path / "results"
    env = {**os.environ, "HARNESS_RESULTS": str(results)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--experiment", str(exp)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    run_dir = None
    while time.monotonic() < deadline:         # wait until a is done and b is measuring
        runs = list(results.glob("*/metadata.json"))
        if runs:
            run_dir = runs[0].parent
            meta = json.loads(runs[0].read_text())
            if meta["kernels"].get("a", {}).get("status") == "ok" and (run_dir / "b" / "fork-memory.jsonl").exists():
                break
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.2)
    else:
        raise AssertionError("kernel b never started")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    while (qemus_under(run_dir) or supervisors_of(run_dir)) and time.monotonic() - killed < 5:
        time.sleep(0.05)
    # within 5 s, QEMU and its supervisor died with the harness (harness.supervise)
    assert qemus_under(run_dir) == [] and supervisors_of(run_dir) == []
    a_records = (run_dir / "a" / "fork-memory.jsonl").read_text()

    done = subprocess.run([sys.executable, "-m", "harness", "run", "--resume", str(run_dir)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finished in an earlier attempt: kept" in done.stderr
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["kernels"]["a"]["status"] == meta["kernels"]["b"]["status"] == "ok"
    assert (run_dir / "a" / "fork-memory.jsonl").read_text() == a_records      # kept as it was
    assert len((run_dir / "b" / "fork-memory.jsonl").read_text().splitlines()) == 30
    assert list(Path(run_dir).glob("b.attempt-1"))                          # the cut attempt, set aside
