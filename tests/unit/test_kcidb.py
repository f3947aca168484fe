"""harness export --format kcidb: the KCIDB document of a run, validated against kcidb-io's schema."""
import json

import pytest
from kcidb_io import schema

from harness import cli
from harness.ci import kcidb
from tests.unit.test_nightly import make_night, night

SERIES = {"spec": "s.mbox", "id": "3e31a418", "version": 4, "title": "Introduce COW PTE",
          "base": "v6.2-rc7", "message_id": "cover-1@example.org",
          "patches": [{"index": 1, "title": "mm: one", "id": "p1", "message_id": "patch-2@example.org"},
                      {"index": 2, "title": "mm: two", "id": "p2", "message_id": "patch-3@example.org"}],
          "apply": [{"index": 1, "status": "applied", "detail": ""}]}


def with_series_and_selftest(run):
    """Give the fake night's patched kernel a series, a build key, two boots and a cow selftest."""
    meta = json.loads((run / "metadata.json").read_text())
    info = meta["kernels"]["patched"]
    info.update(series=SERIES, build_key="ea18e1509e1c8075", source={"id": "6.1.0-abc+3e31a418",
                "spec": "/src/linux + s.mbox", "version": "6.1.0"},
                boots={"1": {"status": "ok", "boot_seconds": 2.0},
                       "2": {"status": "failed", "error": "guest panic: Kernel panic - not syncing"}})
    info["tasks"].append({"task": "selftest:cow", "workload": "selftest-cow", "status": "ok"})
    meta["kernels"]["stock"]["build_key"] = "f14df1e4d066c567"
    (run / "metadata.json").write_text(json.dumps(meta))
    results = [{"way": "plain", "cases": [
                   {"case": "Basic COW after fork() with base page", "result": "pass", "number": 1},
                   {"case": "vmsplice() + unmap in child", "result": "fail", "number": 2},
                   {"case": "R/O longterm GUP pin", "result": "skip", "number": 3, "directive": "SKIP"}]},
               {"way": "cow-pte", "cases": [], "error": "COW PTE not turned on: prctl: EINVAL"}]
    (run / "patched" / "selftest-cow.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    (run / "patched" / "build.log").write_text("  CC mm/memory.o\n")
    return run


def test_a_night_writes_a_valid_kcidb_document_beside_junit(tmp_path):
    run = make_night(tmp_path, "n1", 1, failed=("patched",))
    night(run, tmp_path / "history.sqlite")
    doc = json.loads((run / "kcidb.json").read_text())
    schema.LATEST.validate(doc)
    assert doc["version"] == {"major": schema.LATEST.major, "minor": schema.LATEST.minor}
    builds = {b["misc"]["labels"][0]: b for b in doc["builds"]}
    assert builds["stock"]["status"] == "PASS" and builds["patched"]["status"] == "FAIL"
    assert "make exited 2" in builds["patched"]["log_excerpt"]
    figures = [t for t in doc["tests"] if t["status"] == "DONE"]
    assert {t["path"] for t in figures} == {"harness.bench.fork_ns", "harness.bench.rss_kb",
                                            "harness.bench.ops_per_s"}
    fork = next(t for t in figures if t["path"] == "harness.bench.fork_ns"
                and t["misc"]["params"] == "size_mib=16")
    assert fork["number"] == {"value": pytest.approx(16e6, rel=0.01), "unit": "ns"}
    assert all(t["id"].startswith("kernel_harness:n1:") for t in doc["tests"])


def test_series_boots_tasks_selftests_and_verdicts(tmp_path):
    run = with_series_and_selftest(make_night(tmp_path, "n1", 1))
    doc = kcidb.document(run, origin="my_ci", artifacts_url="https://ci.example.org/jobs/7/run/")
    schema.LATEST.validate(doc)
    ids = [o["id"] for kind in ("checkouts", "builds", "tests") for o in doc[kind]]
    assert len(ids) == len(set(ids)) and all(i.startswith("my_ci:") for i in ids)
    patched = next(c for c in doc["checkouts"] if "series" in c["misc"])
    assert patched["message_id"] == "cover-1@example.org" and patched["valid"] is True
    assert patched["misc"]["series"]["patch_message_ids"] == ["patch-2@example.org", "patch-3@example.org"]
    build = next(b for b in doc["builds"] if b["id"] == "my_ci:build:ea18e1509e1c8075")
    assert build["checkout_id"] == patched["id"]
    assert build["log_url"] == "https://ci.example.org/jobs/7/run/patched/build.log"
    tests = {(t["path"], t["status"]) for t in doc["tests"] if t["build_id"] == build["id"]}
    assert {("boot", "PASS"), ("boot", "FAIL"), ("harness.bench", "PASS"), ("kselftest.cow", "PASS"),
            ("kselftest.cow.Basic_COW_after_fork_with_base_page", "PASS"),
            ("kselftest.cow.vmsplice_unmap_in_child", "FAIL"),
            ("kselftest.cow.R_O_longterm_GUP_pin", "SKIP"),
            ("kselftest_cow_pte.cow", "ERROR")} <= tests
    panic = next(t for t in doc["tests"] if t["path"] == "boot" and t["status"] == "FAIL")
    assert "Kernel panic" in panic["log_excerpt"]
    slower = next(t for t in doc["tests"] if t["path"] == "harness.bench.fork_ns"
                  and t["misc"]["condition"] == "patched: fork" and t["misc"]["params"] == "size_mib=1")
    assert slower["misc"]["baseline"] == "stock: fork" and "verdict" in slower["misc"]


def test_export_command_prints_the_document_and_refuses_a_bad_origin(tmp_path, capsys):
    run = make_night(tmp_path, "n1", 1)
    assert cli.main(["export", "--format", "kcidb", str(run)]) == 0
    schema.LATEST.validate(json.loads(capsys.readouterr().out))
    assert cli.main(["export", str(run), "--origin", "My CI"]) == 2
    assert "origin is lower-case" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "nothing")]) == 2
    assert cli.main(["export", str(run), "-o", str(tmp_path / "k.json")]) == 0
    schema.LATEST.validate(json.loads((tmp_path / "k.json").read_text()))
