"""stress-fork and afl: manifests and params, the parsers of stress-ng's metrics and of AFL's
fuzzer_stats on real samples (captured on this host: stress-ng 0.15.06, AFL++ 4.04c, Debian 12),
the COW PTE proof logic, host-built artifacts, and the drivers run on this host when stress-ng /
afl++ are installed (skipped otherwise). Counts and fields only, no timings."""
import errno
import importlib.util
import json
import shutil
import subprocess

import pytest

from harness import paths
from harness.measure import workloads
from harness.errors import BuildError, UserError


def driver(name):
    """A workload's driver.py imported as a module (its parsers run on the host)."""
    spec = importlib.util.spec_from_file_location(f"driver_{name.replace('-', '_')}",
                                                  paths.WORKLOADS / name / "driver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# stress-ng --fork 1 --timeout 2s --metrics-brief --yaml FILE: its log (stderr) and the YAML.
STRESS_LOG = """\
stress-ng: info:  [18613] setting to a 2 second run per stressor
stress-ng: info:  [18613] dispatching hogs: 1 fork
stress-ng: metrc: [18613] stressor       bogo ops real time  usr time  sys time   bogo ops/s     bogo ops/s
stress-ng: metrc: [18613]                           (secs)    (secs)    (secs)   (real time) (usr+sys time)
stress-ng: metrc: [18613] fork               1062      2.00      0.22      0.20       530.91        2499.58
stress-ng: info:  [18613] successful run completed in 2.00s
"""
STRESS_YAML = """\
---
system-info:
      stress-ng-version: 0.15.06
      run-by: root
      date-yyyy-mm-dd: 2026:11:25
      time-hh-mm-ss: 20:42:39
      epoch-secs: 1795639359
      hostname: vm
      sysname: Linux
      release: 6.18.44-fc-v669
      version: '#1 SMP PREEMPT_DYNAMIC @0'
      machine: x86_64
      compiler: 'gcc 12.2.0'
      pagesize: 4096
      cpus: 2
      cpus-online: 2
      ticks-per-second: 100

metrics:
    - stressor: fork
      bogo-ops: 1062
      bogo-ops-per-second-usr-sys-time: 2499.582226
      bogo-ops-per-second-real-time: 530.907155
      wall-clock-time: 2.000350
      user-time: 0.224602
      system-time: 0.200269
      cpu-usage-per-instance: 21.239836
      max-rss: 2576

...
"""

# afl-fuzz -V 8 on toy_parser (fork server, deferred) and with AFL_NO_FORKSRV=1 (trimmed).
FUZZER_STATS = """\
start_time        : 1795639393
last_update       : 1795639401
run_time          : 8
fuzzer_pid        : 22983
cycles_done       : 0
cycles_wo_finds   : 0
execs_done        : 12215
execs_per_sec     : 1522.50
execs_ps_last_min : 0.00
corpus_count      : 17
corpus_favored    : 2
corpus_found      : 15
stability         : 100.00%
bitmap_cvg        : 44.83%
saved_crashes     : 0
saved_hangs       : 0
exec_timeout      : 20
slowest_exec_ms   : 0
edges_found       : 26
total_edges       : 58
afl_banner        : ./toy
afl_version       : ++4.04c
target_mode       : shmem_testcase deferred 
command_line      : afl-fuzz -i in -o out -V 8 -- ./toy
"""
FUZZER_STATS_NO_FSRV = """\
run_time          : 2
execs_done        : 583
execs_per_sec     : 290.63
afl_version       : ++4.04c
target_mode       : no_fsrv shmem_testcase deferred 
"""
# The end of afl-fuzz's log when it gives up (colours and charset switches included).
AFL_FATAL_LOG = ("    directory.\n\x0f\x1b)B\x1b[?25h\x1b[0m\x1b[1;91m\n[-]  SYSTEM ERROR : \x1b[0m"
                 "Unable to open '/nonexistent'\x1b[1;91m\n    Stop location : \x1b[0m"
                 "read_testcases(), src/afl-fuzz-init.c:706\n\x1b[1;91m       OS message : \x1b[0m"
                 "No such file or directory\n")


# ---- manifests and params ----

@pytest.mark.parametrize("name,metrics", [("stress-fork", {"ops_per_s", "ops", "elapsed_s"}),
                                          ("afl", {"execs_per_sec", "execs_done", "elapsed_s"})])
def test_manifests_load(name, metrics):
    assert name in workloads.names()
    w = workloads.Workload.load(name)
    assert w.name == name and (w.dir / w.manifest["driver"]).exists()
    assert metrics <= set(w.manifest["metrics"])
    assert w.params()["feature"] == 0
    argv = w.argv(w.params({"feature": "1", "seconds": "3"}))
    assert argv[:2] == ["python3", f"/tmp/harness/workloads/{name}/driver.py"]
    assert argv[argv.index("--feature") + 1] == "1" and argv[argv.index("--seconds") + 1] == "3"
    with pytest.raises(UserError, match="no parameter 'bogus'"):
        w.params({"bogus": "1"})


@pytest.mark.parametrize("name,rate", [("stress-fork", "ops_per_s"), ("afl", "execs_per_sec")])
def test_seconds_is_a_group_axis_not_a_metric(name, rate):
    import pandas as pd
    from harness.analysis import stats
    df = pd.DataFrame([{"seconds": 10, "elapsed_s": 10.02, rate: 500.0, "feature_state": "off"},
                       {"seconds": 60, "elapsed_s": 60.1, rate: 480.0, "feature_state": "off"}])
    assert "seconds" in stats.param_columns(df, name) and "elapsed_s" in stats.metrics(df, name)


def test_params_typed():
    sf = workloads.Workload.load("stress-fork").params({"workers": "2", "seconds": "5"})
    assert sf == {"seconds": 5, "workers": 2, "feature": 0}
    afl = workloads.Workload.load("afl").params({"heap_mib": "8"})
    assert afl == {"seconds": 30, "heap_mib": 8, "feature": 0, "exec_timeout_ms": 0}
    with pytest.raises(UserError, match="not a int"):
        workloads.Workload.load("afl").params({"seconds": "long"})
    with pytest.raises(UserError, match="has no parameter 'emulate'"):    # nothing is emulated
        workloads.Workload.load("afl").params({"emulate": "all"})


def test_afl_needs_sysvipc_and_file_locking_and_preloads_nothing():
    afl = workloads.Workload.load("afl")
    assert afl.kernel_config == ["CONFIG_SYSVIPC", "CONFIG_FILE_LOCKING"]
    assert "sources" not in afl.manifest and "library" not in afl.manifest
    assert sorted(p.name for p in afl.dir.iterdir() if p.suffix == ".c") == ["toy_parser.c"]
    text = (afl.dir / "driver.py").read_text()
    assert "PRELOAD" not in text.replace('"LD_PRELOAD", "AFL_PRELOAD", ', "")


def test_afl_driver_names_what_the_kernel_lacks(tmp_path, monkeypatch):
    d = driver("afl")
    monkeypatch.setattr(d.os.path, "exists", lambda p: p != "/proc/sysvipc")
    assert [o for o, _ in d.kernel_lacks()] == ["CONFIG_SYSVIPC"]
    monkeypatch.setattr(d.os.path, "exists", lambda p: False)
    assert [o for o, _ in d.kernel_lacks()] == ["CONFIG_SYSVIPC", "CONFIG_FILE_LOCKING"]


def test_afl_manifest_artifacts():
    arts = {a["file"]: a for a in workloads.Workload.load("afl").manifest["artifacts"]}
    assert set(arts) == {"toy_parser", "afl-fuzz"}
    assert all(a["package"] == "afl++" for a in arts.values())
    assert arts["toy_parser"]["command"][0] == "afl-cc" and "{out}" in arts["toy_parser"]["command"]


# ---- stress-ng metrics ----

def test_stress_yaml_and_brief_agree():
    d = driver("stress-fork")
    yaml, brief = d.parse_yaml(STRESS_YAML)["fork"], d.parse_brief(STRESS_LOG)["fork"]
    assert yaml["bogo-ops"] == brief["bogo-ops"] == 1062
    assert yaml["bogo-ops-per-second-real-time"] == pytest.approx(530.907155)
    assert brief["bogo-ops-per-second-real-time"] == pytest.approx(530.91)
    assert list(d.parse_yaml(STRESS_YAML)) == ["fork"]   # system-info is not a stressor
    fields = d.metric_fields(yaml)
    assert fields["ops"] == 1062 and fields["elapsed_s"] == pytest.approx(2.00035)
    assert fields["ops_per_s"] == pytest.approx(530.907155)
    assert fields["usr_s"] == pytest.approx(0.224602) and fields["sys_s"] == pytest.approx(0.200269)
    assert d.metric_fields(brief)["ops_per_s"] == pytest.approx(530.91)


def test_stress_parsers_find_nothing_in_noise():
    d = driver("stress-fork")
    assert d.parse_yaml("") == {} and d.parse_brief("stress-ng: info:  [1] dispatching hogs: 1 fork\n") == {}


def test_stress_proof():
    d = driver("stress-fork")
    assert d.proof(False, {}) is None
    on = {"prctl_ret": 0, "prctl_again_ret": -1, "prctl_again_errno": errno.EINVAL}
    assert d.proof(True, on) == "active"
    assert d.proof(True, {"prctl_ret": -1, "prctl_errno": errno.EINVAL}) == "not proven"   # 6.1
    assert d.proof(True, {**on, "prctl_again_ret": 0, "prctl_again_errno": 0}) == "not proven"


# ---- AFL's fuzzer_stats ----

def test_fuzzer_stats():
    d = driver("afl")
    stats = d.parse_fuzzer_stats(FUZZER_STATS)
    assert stats["execs_done"] == 12215 and stats["execs_per_sec"] == pytest.approx(1522.5)
    assert stats["bitmap_cvg"] == pytest.approx(44.83) and stats["stability"] == 100.0
    assert stats["command_line"] == "afl-fuzz -i in -o out -V 8 -- ./toy"
    fields = d.stats_fields(stats)
    assert fields["forkserver"] is True and fields["elapsed_s"] == 8
    assert fields["execs_per_sec"] == pytest.approx(1522.5) and fields["execs_done"] == 12215
    assert fields["afl_version"] == "++4.04c" and fields["afl_exec_timeout_ms"] == 20
    no_fsrv = d.stats_fields(d.parse_fuzzer_stats(FUZZER_STATS_NO_FSRV))
    assert no_fsrv["forkserver"] is False and no_fsrv["execs_done"] == 583


def test_afl_proof_lines():
    d = driver("afl")
    assert d.proof_fields(False, [])["feature_proof"] is None
    assert d.proof_fields(True, [])["feature_proof"] == "not proven"
    on = {"pid": 7, "prctl_ret": 0, "prctl_errno": 0, "prctl_again_ret": -1,
          "prctl_again_errno": errno.EINVAL}
    f = d.proof_fields(True, [on])
    assert f["feature_proof"] == "active" and f["forkserver_pid"] == 7 and f["forkservers_proved"] == 1
    refused = {"pid": 8, "prctl_ret": -1, "prctl_errno": errno.EINVAL, "prctl_again_ret": None,
               "prctl_again_errno": None}
    f = d.proof_fields(True, [refused])
    assert f["feature_proof"] == "not proven" and f["prctl_errno"] == errno.EINVAL
    # a restarted fork server that did not get COW PTE spoils the proof
    assert d.proof_fields(True, [on, {**on, "prctl_again_ret": 0, "prctl_again_errno": 0}])[
        "feature_proof"] == "not proven"


def test_afl_fork_counters():
    d = driver("afl")
    line = {"counters_pid": 9, "parent_vmpte_kb": 1100, "child_vmpte_kb": 1096,
            "pagetables_before_kb": 3000, "pagetables_after_kb": 4096}
    assert d.counter_fields([line, {**line, "pagetables_after_kb": 3010}]) == {
        "parent_vmpte_kb": 1100, "child_vmpte_kb": 1096, "pagetables_delta_kb": 1096}
    unread = {"parent_vmpte_kb": None, "child_vmpte_kb": None, "pagetables_delta_kb": None}
    assert d.counter_fields([]) == unread
    assert d.counter_fields([{**line, "pagetables_after_kb": -1, "child_vmpte_kb": -1}]) == {
        **unread, "parent_vmpte_kb": 1100}


def test_afl_complaints():
    got = driver("afl").afl_complaints(AFL_FATAL_LOG)
    assert got == ["[-]  SYSTEM ERROR : Unable to open '/nonexistent'",
                   "Stop location : read_testcases(), src/afl-fuzz-init.c:706",
                   "OS message : No such file or directory"]


# ---- host-built artifacts (harness/measure/workloads.py) ----

def test_artifacts_built_cached_and_staged(cache_dir, tmp_path):
    (tmp_path / "data.txt").write_text("hello\n")
    manifest = {"driver": "driver.py", "artifacts": [
        {"file": "copy.txt", "command": ["cp", "data.txt", "{out}"], "inputs": ["data.txt"]}]}
    (tmp_path / "driver.py").write_text("")
    w = workloads.Workload("arty", tmp_path, manifest)
    first = w.artifacts()[0]
    assert first.read_text() == "hello\n"
    assert w.artifacts()[0] == first                       # cached
    (tmp_path / "data.txt").write_text("changed\n")
    assert w.artifacts()[0] != first                       # inputs are part of the key
    assert w.artifacts()[0].read_text() == "changed\n"


def test_artifact_without_its_tool_names_the_package(cache_dir, tmp_path):
    manifest = {"artifacts": [{"file": "x", "command": ["no-such-compiler-xyz", "{out}"],
                               "package": "some-deb"}]}
    with pytest.raises(BuildError, match="no-such-compiler-xyz.*Debian package: some-deb"):
        workloads.Workload("arty", tmp_path, manifest).artifacts()
    manifest = {"artifacts": [{"file": "x", "command": ["false"]}]}
    with pytest.raises(BuildError, match="building x failed"):
        workloads.Workload("arty", tmp_path, manifest).artifacts()


# ---- the drivers on this host (same Debian as the guest) ----

def run(tmp_path, name, *args):
    staged = workloads.Workload.load(name).stage(tmp_path / "stage")
    proc = subprocess.run(["python3", str(staged / name / "driver.py"), *args],
                          capture_output=True, text=True, timeout=300)
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, (records, proc.stderr)
    assert len(records) == 1 and records[0]["type"] == "record" and records[0]["workload"] == name
    return records[0]


needs_stress_ng = pytest.mark.skipif(not shutil.which("stress-ng"), reason="stress-ng not installed")
needs_afl = pytest.mark.skipif(not (shutil.which("afl-cc") and shutil.which("afl-fuzz")),
                               reason="afl++ not installed")


@needs_stress_ng
@pytest.mark.parametrize("cow_pte", [0, 1])
def test_stress_fork_runs_on_the_host(cache_dir, tmp_path, cow_pte):
    r = run(tmp_path, "stress-fork", "--seconds", "1", "--workers", "1", "--feature", str(cow_pte))
    assert r["ops"] > 0 and r["ops_per_s"] > 0 and r["elapsed_s"] > 0.5 and r["seconds"] == 1
    assert r["metrics_source"] == "yaml" and r["stress_ng_version"]
    assert r["feature_requested"] is bool(cow_pte)
    if cow_pte:
        # On Linux >= 6.3 (this host) 65 is PR_SET_MDWE: never proof of COW PTE, whatever it returns
        assert isinstance(r["prctl_ret"], int) and r["feature_proof"] == "not proven"
    else:
        assert r["prctl_ret"] is None and r["feature_proof"] is None


def test_stress_fork_bad_params(tmp_path):
    staged = workloads.Workload.load("stress-fork").stage(tmp_path / "stage")
    proc = subprocess.run(["python3", str(staged / "stress-fork" / "driver.py"), "--workers", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"] == "params"


@needs_afl
@pytest.mark.parametrize("cow_pte", [0, 1])
def test_afl_runs_on_the_host(cache_dir, tmp_path, cow_pte):
    r = run(tmp_path, "afl", "--seconds", "3", "--heap-mib", "8", "--feature", str(cow_pte))
    assert r["execs_done"] > 0 and r["execs_per_sec"] > 0 and r["forkserver"] is True
    assert r["afl_version"] and r["work_fs"]
    assert r["forkserver_vmrss_kb"] is None or r["forkserver_vmrss_kb"] >= 8 * 1024
    # afl-fuzz's coverage map is the kernel's own SysV shared memory (seen when sampled)
    assert (r["sysv_shm_segments"] is None) is (r["forkserver_vmrss_kb"] is None)
    assert r["sysv_shm_segments"] is None or r["sysv_shm_segments"] >= 1
    # the target's measured fork of its fork server: 8 MiB of touched 4 KiB pages are 4 PTE
    # tables (16 kB) at least in the server and, copied, in the child
    assert r["parent_vmpte_kb"] >= 16 and r["child_vmpte_kb"] >= 16
    assert r["pagetables_delta_kb"] is not None
    if cow_pte:
        assert r["forkservers_proved"] >= 1 and r["forkserver_pid"] > 0
        # 65 is PR_SET_MDWE on Linux >= 6.3 and unknown before: on a host without the series
        # the second prctl never fails with EINVAL after a first that succeeded
        assert r["feature_proof"] == "not proven"
    else:
        assert r["feature_proof"] is None and r["forkservers_proved"] is None
