"""fork-latency, fault-latency and fork-server: manifests, and their drivers run on this host
(staged as for the guest; the host is the same Debian). Counts and fields only, no timings."""
import json
import subprocess

import pytest

from harness import feature
from harness.measure import activity, workloads

EVIDENCE = ["parent_vmpte_kb", "child_vmpte_kb", "pagetables_delta_kb", "feature_config",
            "prctl_ret", "prctl_errno", "feature_requested"]
NEW = ["fork-latency", "fault-latency", "fork-server"]


def run(tmp_path, name, *args):
    staged = workloads.Workload.load(name).stage(tmp_path / "stage")
    proc = subprocess.run(["python3", str(staged / name / "driver.py"), *args],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def ok(tmp_path, name, *args):
    code, records, err = run(tmp_path, name, *args)
    assert code == 0, (records, err)
    assert all(r["type"] == "record" and r["workload"] == name for r in records)
    return records


@pytest.mark.parametrize("name", NEW)
def test_manifest_params_and_metrics(name):
    w = workloads.Workload.load(name)
    assert name in workloads.names()
    assert w.manifest["metrics"] and all(isinstance(u, str) for u in w.manifest["metrics"].values())
    p = w.params({"feature": "1", "thp": "huge"})
    assert p["feature"] == 1 and p["thp"] == "huge"
    argv = w.argv(p)
    assert argv[1] == f"/tmp/harness/workloads/{name}/driver.py"
    assert "--feature" in argv and "--thp" in argv


def test_param_types():
    assert workloads.Workload.load("fork-latency").params({"sizes_mib": "0,64"})["sizes_mib"] == "0,64"
    assert workloads.Workload.load("fork-server").params({"seconds": "0.5"})["seconds"] == 0.5
    assert workloads.Workload.load("fault-latency").params({"pattern": "random"})["rounds"] == 0


def test_fork_latency_runs_on_the_host(cache_dir, tmp_path):
    records = ok(tmp_path, "fork-latency", "--sizes-mib", "0,4,8", "--reps", "3", "--warmup", "1")
    assert len(records) == 3 * (1 + 3)
    for size in (0, 4, 8):
        mine = [r for r in records if r["size_mib"] == size]
        assert [(r["rep"], r["warmup"]) for r in mine] == [(0, True), (0, False), (1, False), (2, False)]
        assert all(r["fork_ns"] > 0 and r["pages_touched"] == size * 256 for r in mine)
        held = [r for r in mine if r["held_child"]]
        assert len(held) == 1 and held[0]["rep"] == 0 and not held[0]["warmup"]
        assert all(k in held[0] for k in EVIDENCE) and held[0]["child_exit_status"] == 0
        assert held[0]["prctl_ret"] is None          # not asked for
        assert activity.judge(held[0], feature.load("cow-pte"))[0] == activity.OFF
        assert not any("pagetables_delta_kb" in r for r in mine if not r["held_child"])
    assert next(r for r in records if r["held_child"] and r["size_mib"] == 8)["parent_vmrss_kb"] >= 8 * 1024


def test_fork_latency_prctl_once(cache_dir, tmp_path):
    """prctl is called once; every evidence record carries its result, the recheck only the first."""
    records = ok(tmp_path, "fork-latency", "--sizes-mib", "1,2", "--reps", "1", "--warmup", "0",
                 "--feature", "1")
    assert len(records) == 2 and all(r["feature_requested"] for r in records)
    assert all(isinstance(r["prctl_ret"], int) for r in records)
    assert "prctl_again_ret" in records[0] and "prctl_again_ret" not in records[1]


def test_fault_latency_seq_child(cache_dir, tmp_path):
    records = ok(tmp_path, "fault-latency", "--mib", "8")
    assert len(records) == 1                          # rounds=0: one round for seq
    r = records[0]
    assert r["round"] == 0 and r["side"] == "child" and r["pattern"] == "seq"
    assert r["accesses"] == r["pages_touched"] == 8 * 256
    assert r["minor_faults"] >= r["accesses"]         # every first write after fork is a COW fault
    assert 0 < r["min_ns"] <= r["median_ns"] <= r["max_ns"] and r["min_ns"] <= r["mean_ns"] <= r["max_ns"]
    assert r["std_ns"] >= 0 and r["fork_ns"] > 0 and r["child_exit_status"] == 0
    assert all(k in r for k in EVIDENCE) and activity.judge(r, feature.load("cow-pte"))[0] == activity.OFF


def test_fault_latency_random_parent(cache_dir, tmp_path):
    records = ok(tmp_path, "fault-latency", "--mib", "8", "--pattern", "random", "--random-writes",
                 "5000", "--rounds", "3", "--side", "parent")
    assert [r["round"] for r in records] == [0, 1, 2]
    assert all(r["accesses"] == 5000 and r["side"] == "parent" and r["rounds"] == 3 for r in records)
    assert all(r["min_ns"] <= r["median_ns"] <= r["max_ns"] for r in records)
    # the first round after the fork: one COW fault per distinct page written; 5000 random writes
    # over 2048 pages hit 2048 (1 - e^(-5000/2048)) = 1870 of them (sd about 12)
    assert 1750 <= records[0]["minor_faults"] <= 2048 + 64


def test_fork_server_runs_on_the_host(cache_dir, tmp_path):
    records = ok(tmp_path, "fork-server", "--heap-mib", "8", "--forks", "20", "--rounds", "2")
    assert [r["round"] for r in records] == [0, 1]
    for r in records:
        assert r["forks"] == r["forks_requested"] == 20
        assert r["forks_per_s"] == pytest.approx(r["forks"] / (r["elapsed_ns"] / 1e9), rel=1e-9)
        assert r["elapsed_ns"] >= r["forks"] * r["fork_ns_min"]
        assert 0 < r["fork_ns_min"] <= r["fork_ns_mean"] <= r["fork_ns_max"]
        assert all(k in r for k in EVIDENCE) and r["pages_touched"] == 8 * 256
    timed = ok(tmp_path, "fork-server", "--heap-mib", "1", "--seconds", "0.2", "--rounds", "1")
    (r,) = timed                        # forks for 0.2 s: at least that long, the rate its own
    assert r["forks_requested"] == 0 and r["forks"] >= 1 and 0.2e9 <= r["elapsed_ns"] < 5e9
    assert r["forks_per_s"] == pytest.approx(r["forks"] / (r["elapsed_ns"] / 1e9), rel=1e-9)


@pytest.mark.parametrize("name,args", [
    ("fork-latency", ["--sizes-mib", "0,x"]),
    ("fork-latency", ["--sizes-mib", "4,-1"]),
    ("fork-latency", ["--reps", "0"]),
    ("fork-latency", ["--thp", "giant"]),
    ("fault-latency", ["--pattern", "zigzag"]),
    ("fault-latency", ["--mib", "0"]),
    ("fault-latency", ["--side", "both"]),
    ("fork-server", ["--heap-mib", "1", "--child-pages", "100000"]),
    ("fork-server", ["--seconds", "abc"]),
    ("fork-server", ["--seconds", "0"]),
])
def test_bad_input_is_an_error_record(cache_dir, tmp_path, name, args):
    code, records, _ = run(tmp_path, name, *args)
    assert code == 2
    assert len(records) == 1 and records[0]["type"] == "error" and records[0]["error"] == "params"
