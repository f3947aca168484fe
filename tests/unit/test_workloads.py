import json
import subprocess

import pytest

from harness.measure import workloads
from harness.errors import BuildError, UserError


def test_registry_and_params():
    assert "fork-memory" in workloads.names()
    w = workloads.Workload.load("fork-memory")
    p = w.params({"mib": "64", "feature": "1"})
    assert p["mib"] == 64 and p["feature"] == 1 and p["repeat"] == 1
    assert w.argv(p)[:2] == ["python3", "/tmp/harness/workloads/fork-memory/driver.py"]
    assert "--feature" in w.argv(p)


def test_unknown_workload_and_parameter():
    with pytest.raises(UserError, match="unknown workload 'nope'.*fork-memory"):
        workloads.Workload.load("nope")
    with pytest.raises(UserError, match="no parameter 'size'"):
        workloads.Workload.load("fork-memory").params({"size": "1"})
    with pytest.raises(UserError, match="not a int"):
        workloads.Workload.load("fork-memory").params({"mib": "lots"})


def test_fork_memory_runs_on_the_host(cache_dir, tmp_path):
    """The driver and its C library, staged as for the guest, run here too (same Debian)."""
    w = workloads.Workload.load("fork-memory")
    staged = w.stage(tmp_path / "stage")
    out = subprocess.run(["python3", str(staged / "fork-memory" / "driver.py"), "--mib", "16",
                          "--repeat", "2"], capture_output=True, text=True, check=True).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2
    r = records[0]
    assert r["pages_touched"] == 16 * 256
    assert r["parent_vmrss_kb"] >= 16 * 1024
    # the child maps every page the parent touched, and each process needs 8 PTE pages (32 kB) for them
    assert r["child_vmrss_kb"] >= 16 * 1024
    assert r["parent_vmpte_kb"] >= 32 and r["child_vmpte_kb"] >= 32
    assert r["pagetables_delta_kb"] == r["pagetables_after_kb"] - r["pagetables_before_kb"]
    assert isinstance(r["fork_ns"], int) and 0 < r["fork_ns"] < 10**10
    assert [x["rep"] for x in records] == [0, 1] and r["child_exit_status"] == 0
    assert r["prctl_ret"] is None  # not asked for


def test_broken_c_is_a_build_error(cache_dir, tmp_path):
    (tmp_path / "bad.c").write_text("int f( {\n")
    w = workloads.Workload("bad", tmp_path, {"sources": ["bad.c"], "library": "libbad.so"})
    with pytest.raises(BuildError, match="does not compile") as err:
        w.library()
    assert "bad.c:1" in str(err.value)
