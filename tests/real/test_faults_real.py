"""Faults injected for real into a running guest: each is detected, logged with the serial console,
its task marked failed (or crashed, when the guest died: the kernel is then booted again for the
next task), the run goes on, and no QEMU process is left behind.

The kernel is guest-base + selftests (that fragment has CONFIG_MAGIC_SYSRQ for the crash).
"""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import experiment, paths
from harness.errors import InfraError
from harness.guest.factory import Guests
from harness.measure import selftests
from harness.pipeline import Run
from harness.results import RunStore

pytestmark = pytest.mark.slow
FAULTS = paths.ROOT / "tests" / "data" / "workloads"


def make_experiment(tmp_path, workloads, kernels=("a", "b"), stall_s=30):
    lines = ['source = "debian:linux-source-6.1"', "[guest]", 'accel = "tcg"', "memory_mib = 1024",
             f"stall_s = {stall_s}"]
    for label in kernels:
        lines += ["[[kernels]]", f'label = "{label}"', 'fragments = ["guest-base", "selftests"]']
    for name, params in workloads:
        lines += ["[[workloads]]", f'name = "{name}"']
        if params:
            lines.append("params = { " + ", ".join(f"{k} = {v}" for k, v in params.items()) + " }")
    path = tmp_path / "faults.toml"
    path.write_text("\n".join(lines) + "\n")
    return experiment.load(path)


def qemus_under(folder):
    """PIDs of QEMU processes whose command line mentions folder (zombies included)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            # QEMU itself, not its supervisor (harness.supervise), whose arguments name it too
            if "qemu-system" in Path(cmd.split("\0")[0]).name and str(folder) in cmd:
                found.append(int(proc.name))
    return found


def run(tmp_path, exp):
    store = RunStore("faults", root=tmp_path / "results")
    return Run(exp, store=store).execute(), store


def metadata(store):
    return json.loads((store.dir / "metadata.json").read_text())


# Stand-ins for two catalog selftests, so a real guest dies inside a selftest on cue: the first
# announces a case the kselftest way and crashes the kernel in it; the second passes.
CRASHING_TEST = """#!/bin/sh
echo 'TAP version 13'
echo '1..2'
echo '# [RUN] a case that passes'
echo 'ok 1 passes'
echo '# [RUN] the case that crashes the kernel'
sleep 1
echo c > /proc/sysrq-trigger
"""
PASSING_TEST = "#!/bin/sh\necho 'TAP version 13'\necho '1..1'\necho 'ok 1 after the reboot'\n"


def test_guest_kernel_panic_mid_run_boots_it_again(tmp_path, monkeypatch):
    """A panic in a workload task and one in a selftest: each is recorded as crashed with the
    console's oops, the kernel is booted again, and the tasks and selftests after it still run."""
    scripts = {"cow": CRASHING_TEST, "mremap_test": PASSING_TEST}
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    monkeypatch.setattr(selftests, "build_test", lambda name, *a, **k: tmp_path / name)
    exp = make_experiment(tmp_path, [("fork-memory", {"mib": 64}), (str(FAULTS / "crash"), {}),
                                     ("fork-memory", {"mib": 64})], kernels=("a",))
    exp = dataclasses.replace(exp, selftests=list(scripts))
    r, store = run(tmp_path, exp)
    assert r.exit_code == 5
    k = metadata(store)["kernels"]["a"]
    assert k["status"] == "failed" and k["error_type"] == "GuestPanic"
    assert [t["status"] for t in k["tasks"]] == ["ok", "crashed", "ok", "crashed", "ok"]
    crash = k["tasks"][1]
    assert "sysrq: Trigger a crash" in crash["console"] and "Kernel panic" in crash["console"]
    assert "sysrq: Trigger a crash" in k["error"]   # the kernel's first death, with its evidence
    assert len(store.records("a", "fork-memory")) == 2          # the one after the crash ran
    assert [x["after"] for x in k["boots"]["1"]["reboots"]] == ["2:crash", "selftest:cow"]
    assert "Kernel panic" in (store.dir / "a" / "console.log").read_text()
    assert "Kernel panic" in (store.dir / "a" / "after-death-1" / "console.log").read_text()
    died, passed = r.selftest_results
    assert died["crashed_in"] == "the case that crashes the kernel" and died["cases"][0]["result"] == "pass"
    assert k["tasks"][3]["crashed"] == [{"way": "plain", "case": "the case that crashes the kernel"}]
    assert "# [RUN] the case that crashes the kernel" in (store.dir / "a" / "selftest-cow-plain.tap").read_text()
    assert passed["test"] == "mremap_test" and [c["result"] for c in passed["cases"]] == ["pass"]
    assert qemus_under(store.dir) == []


def test_workload_that_never_returns(tmp_path):
    exp = make_experiment(tmp_path, [(str(FAULTS / "hang"), {})], kernels=("a",))
    r, store = run(tmp_path, exp)
    k = metadata(store)["kernels"]["a"]
    assert k["status"] == "failed" and k["error_type"] == "GuestTimeout"
    assert "did not finish in the guest within 20 s" in k["error"]
    host = metadata(store)["host"]["hostname"]
    assert store.records("a", "hang") == [{"type": "record", "workload": "hang", "started": True,
                                           "task": "1:hang", "kernel": "a", "timing": "real",
                                           "boot": 1, "host": host}]
    assert qemus_under(store.dir) == []


def later(seconds, fn):
    t = threading.Timer(seconds, fn)
    t.start()
    return t


def qemu_pid_when_busy(store, label):
    """Wait until the guest runs the hang workload; return its QEMU's pid."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if store.records(label, "hang"):
            (pid,) = qemus_under(store.dir)
            return pid
        time.sleep(0.2)
    raise AssertionError("the hang workload never started")


def test_guest_stopped_with_sigstop(tmp_path):
    exp = make_experiment(tmp_path, [(str(FAULTS / "hang"), {})], kernels=("a", "b"), stall_s=5)
    store = RunStore("faults", root=tmp_path / "results")
    stopped = []
    watcher = threading.Thread(target=lambda: stopped.append(os.kill(qemu_pid_when_busy(store, "a"),
                                                                     signal.SIGSTOP)))
    watcher.start()
    started = time.monotonic()
    Run(exp, store=store).execute()
    watcher.join()
    meta = metadata(store)
    a = meta["kernels"]["a"]
    assert a["error_type"] == "GuestTimeout" and "stopped answering" in a["error"]
    assert time.monotonic() - started < 200      # found by the probe, long before the 20 s x N timeouts
    assert meta["kernels"]["b"]["tasks"][0]["status"] == "crashed"  # b ran (and hung on its own)
    assert qemus_under(store.dir) == []


def test_ssh_connection_dropped_mid_workload(tmp_path):
    exp = make_experiment(tmp_path, [(str(FAULTS / "hang"), {}), ("fork-memory", {"mib": 64})],
                          kernels=("a",))
    store = RunStore("faults", root=tmp_path / "results")
    made = []

    class Watched(Guests):              # the run's guest factory, keeping the guests it made
        def machine(self, kernel, logdir):
            made.append(super().machine(kernel, logdir))
            return made[-1]

    def drop():
        qemu_pid_when_busy(store, "a")
        machine_socket = made[-1].channel.client.get_transport().sock
        machine_socket.shutdown(2)
    t = threading.Thread(target=drop)
    t.start()
    Run(exp, store=store, guests=Watched(exp, store)).execute()
    t.join()
    k = metadata(store)["kernels"]["a"]
    assert [c["status"] for c in k["tasks"]] == ["failed", "ok"]
    assert "SSH connection" in k["tasks"][0]["error"]
    assert len(store.records("a", "fork-memory")) == 1
    assert qemus_under(store.dir) == []


def test_qemu_killed(tmp_path):
    exp = make_experiment(tmp_path, [(str(FAULTS / "hang"), {})], kernels=("a", "b"))
    store = RunStore("faults", root=tmp_path / "results")
    t = threading.Thread(target=lambda: os.kill(qemu_pid_when_busy(store, "a"), signal.SIGKILL))
    t.start()
    r = Run(exp, store=store).execute()
    t.join()
    meta = metadata(store)
    assert "QEMU exited with code -9" in meta["kernels"]["a"]["error"]
    assert meta["kernels"]["b"]["tasks"]                 # the run went on to kernel b
    assert r.exit_code == 5
    assert qemus_under(store.dir) == []


def test_results_disk_full(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], check=True)
    try:
        exp = make_experiment(tmp_path, [("fork-memory", {"mib": 64, "repeat": 200})], kernels=("a",))
        store = RunStore("full", root=mnt)
        with pytest.raises(InfraError, match="results disk full"):
            Run(exp, store=store).execute()
        assert qemus_under(store.dir) == []
        # every line on disk is a whole record
        lines = (store.dir / "a" / "fork-memory.jsonl").read_text().splitlines()
        assert lines and all(json.loads(line)["type"] == "record" for line in lines)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_taint_fails_the_cell_that_set_it_only(tmp_path):
    exp = make_experiment(tmp_path, [(str(FAULTS / "taint"), {}), ("fork-memory", {"mib": 64})],
                          kernels=("a",))
    r, store = run(tmp_path, exp)
    tasks = metadata(store)["kernels"]["a"]["tasks"]
    assert [c["status"] for c in tasks] == ["failed", "ok"]   # the taint stays set: not judged twice
    assert ["taint", "W warning"] in tasks[0]["dmesg"]
    assert len(store.records("a", "fork-memory")) == 1
    assert qemus_under(store.dir) == []


def test_sigterm_stops_a_run_like_ctrl_c(tmp_path):
    make_experiment(tmp_path, [(str(FAULTS / "hang"), {})], kernels=("a", "b"))
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--experiment",
                             str(tmp_path / "faults.toml")],
                            env={**os.environ, "HARNESS_RESULTS": str(results)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(results.glob("*/a/hang.jsonl")) or not qemus_under(results):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)       # what a CI job's timeout sends
        assert proc.wait(60) == 130
    finally:
        proc.kill()
    (run_dir,) = results.iterdir()
    meta = json.loads((run_dir / "metadata.json").read_text())
    a = meta["kernels"]["a"]
    assert a["status"] == "interrupted" and [c["status"] for c in a["tasks"]] == ["interrupted"]
    assert meta["interrupted"]
    assert not meta["kernels"].get("b", {}).get("tasks")        # b never started
    assert (run_dir / "a" / "hang.jsonl").read_text().count('"started": true') == 1
    assert qemus_under(results) == []
