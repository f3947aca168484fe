"""harness lava: jobs validated with LAVA's own schema (Debian's lava-common), and a recorded LAVA
results file imported into a run that `harness report` reads."""
import importlib.util
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from harness import cli, paths
from harness.ci import lava
from harness.errors import UserError
from harness.experiment import Experiment, KernelSpec, WorkloadSpec

DATA = Path(__file__).resolve().parents[1] / "data" / "lava"
KEYS = {"stock": "0d7d6a1c2b3e4f50", "cow-pte": "1e8e7b2d3c4f5061"}


@pytest.fixture
def exported(tmp_path, cache_dir):
    """A run of fork-memory (cow_pte=0 and 1) on two kernels whose builds are in the cache (a
    stand-in bzImage), exported as LAVA jobs."""
    exp = Experiment(kernels=[KernelSpec(label, "debian:linux-source-6.1", ["guest-base"])
                              for label in KEYS],
                     workloads=[WorkloadSpec("fork-memory", {"mib": 64, "feature": c}) for c in (0, 1)],
                     feature="cow-pte")
    run = tmp_path / "results" / "run1"
    run.mkdir(parents=True)
    kernels = {}
    for label, key in KEYS.items():
        build = cache_dir / "builds" / key
        build.mkdir(parents=True)
        (build / "bzImage").write_bytes(b"not a kernel, a stand-in")
        (build / "kernel.json").write_text(json.dumps({"key": key}))
        kernels[label] = {"build_key": key, "release": "6.1.192", "feature_config": "y"}
    (run / "metadata.json").write_text(json.dumps({"run_id": "run1", "experiment": exp.to_dict(),
                                                   "kernels": kernels, "accel": "tcg"}))
    out = tmp_path / "lava"
    jobs = lava.export(run, out, "https://artifacts.example.org/run1")
    return out, jobs


def test_one_job_per_kernel_and_workload_validated_by_lavas_schema(exported):
    out, jobs = exported
    assert sorted(p.name for p in jobs) == ["cow-pte--fork-memory.yaml", "stock--fork-memory.yaml"]
    job = yaml.safe_load(next(p for p in jobs if p.name.startswith("cow-pte")).read_text())
    lava.validate(job)
    deploy, boot, test = (a[next(iter(a))] for a in job["actions"])
    assert deploy["images"]["kernel"]["url"].endswith("/cow-pte/bzImage")
    assert deploy["images"]["rootfs"]["overlays"]["harness"]["path"] == lava.GUEST
    assert boot["method"] == "qemu"
    steps = [d["repository"]["run"]["steps"] for d in test["definitions"]]
    assert [d["name"] for d in test["definitions"]] == ["harness.cow-pte.fork-memory.p0",
                                                        "harness.cow-pte.fork-memory.p1"]
    assert "mount -t proc proc /proc" in steps[1][0] and "init=/bin/sh" in deploy["images"]["kernel"]["image_arg"]
    assert "--feature 1" in steps[1][-2] and "--mib 64" in steps[1][-2]
    assert "--feature-prctl 65" in steps[1][-2]            # the switch, from the profile
    assert "--unit child_vmpte_kb=kB" in steps[1][-1] and "lava_report.py" in steps[1][-1]
    with tarfile.open(out / "workloads" / "fork-memory.tar.gz") as tar:
        names = tar.getnames()
    assert {"common/guestlib.py", "common/lava_report.py", "fork-memory/driver.py",
            "fork-memory/libfork_memory.so"} <= set(names)
    assert (out / "cow-pte" / "bzImage").read_bytes() == b"not a kernel, a stand-in"


def test_lavas_schema_refuses_a_broken_job(exported):
    _, jobs = exported
    job = yaml.safe_load(jobs[0].read_text())
    job["actions"][1]["boot"]["method"] = "kexec-over-carrier-pigeon"
    with pytest.raises(UserError, match="does not validate"):
        lava.validate(job)
    del job["device_type"]
    with pytest.raises(UserError, match="device_type"):
        lava.validate(job)


def test_the_guest_reporter_gives_every_figure_as_a_measurement():
    spec = importlib.util.spec_from_file_location("lava_report", paths.WORKLOADS / "common" / "lava_report.py")
    lava_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lava_report)
    cases = lava_report.cases([{"type": "record", "rep": 0, "fork_ns": 1200, "cow_pte_requested": True,
                                "thp": "nohuge", "prctl_ret": None, "note": "two words"},
                               {"type": "error", "message": "x"}], {"fork_ns": "ns"})
    assert cases == [("cow_pte_requested.0", "pass", 1, "bool"), ("fork_ns.0", "pass", 1200, "ns"),
                     ("thp.nohuge.0", "pass", None, None), ("error", "fail", None, None)]
    assert lava_report.cases([], {}) == [("records", "fail", None, None)]


def test_recorded_lava_results_become_a_run_that_report_reads(exported, tmp_path, capsys, monkeypatch):
    out, _ = exported
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "imported"))
    assert cli.main(["lava", "import", str(out), str(DATA / "fork-memory-results.yaml")]) == 0
    (run,) = (tmp_path / "imported").iterdir()
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["lava"]["failed_cases"] == []
    records = [json.loads(line) for line in (run / "stock" / "fork-memory.jsonl").read_text().splitlines()]
    # stock 6.1 refuses prctl(65): the COW PTE fork is judged again from the evidence, "inactive"
    assert [(r["feature_requested"], r["feature_state"]) for r in records] == [(False, "off"), (True, "inactive")]
    assert all(r["mib"] == 64 and r["feature_config"] == "n" and r["pagetables_delta_kb"] >= 128
               for r in records)
    assert records[1]["prctl_errno"] == 22 and records[0]["thp"] == "nohuge"
    capsys.readouterr()
    assert cli.main(["report", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "stock: COW PTE requested, inactive fork_ns" in printed
    table = (run / "report.md").read_text()
    assert any("COW PTE requested, inactive" in line and "pagetables_delta_kb" in line
               for line in table.splitlines())


def test_results_that_are_not_lavas_are_one_clear_error(exported, tmp_path):
    out, _ = exported
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: a mapping\n")
    with pytest.raises(UserError, match="not a LAVA results file"):
        lava.import_results(out, [bad])
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump([{"suite": "lava", "name": "job", "result": "pass"}]))
    with pytest.raises(UserError, match="no case of the harness's test definitions"):
        lava.import_results(out, [other])
    failed = tmp_path / "failed.json"
    failed.write_text(json.dumps([{"suite": "1_harness.stock.fork-memory.p0", "name": "error", "result": "1"}]))
    with pytest.raises(UserError, match="harness.stock.fork-memory.p0: error 1"):
        lava.import_results(out, [failed])
    with pytest.raises(UserError, match="harness-lava.json"):
        lava.import_results(tmp_path, [other])


def test_export_format_lava_is_the_same_export(exported, tmp_path, capsys):
    out, _ = exported
    run = tmp_path / "results" / "run1"
    again = tmp_path / "again"
    assert cli.main(["export", "--format", "lava", str(run), "--out", str(again),
                     "--artifacts-url", "https://artifacts.example.org/run1"]) == 0
    assert (again / "jobs" / "stock--fork-memory.yaml").read_text() == \
        (out / "jobs" / "stock--fork-memory.yaml").read_text()
    assert cli.main(["export", "--format", "lava", str(run)]) == 2
    assert "--out DIR" in capsys.readouterr().err


def test_a_run_whose_kernels_are_not_here_is_one_clear_error(exported, tmp_path, cache_dir):
    import shutil
    shutil.rmtree(cache_dir / "builds")
    with pytest.raises(UserError, match="none of its kernels is in this machine's cache"):
        lava.export(tmp_path / "results" / "run1", tmp_path / "nowhere")
