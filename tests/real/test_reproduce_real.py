"""`harness reproduce` on CI's reduced matrix: the benchmark suite on two real kernels, statistics,
plots and the report, through the same path as the COW PTE reproduction."""
import json

import pytest

from harness import cli

pytestmark = pytest.mark.slow


def test_reproduce_reduced_matrix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    assert cli.main(["reproduce", "--experiment", "test-series-bench"]) == 0
    out = capsys.readouterr().out
    assert "coefficient of variation per metric" in out
    assert "fork-latency" in out and "CV=" in out
    (run,) = tmp_path.iterdir()
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["design"]["slots"] == ["stock#1", "patched#1", "patched#2", "stock#2", "stock#3", "patched#3"]
    for label in ("stock", "patched"):
        assert sorted(meta["kernels"][label]["boots"]) == ["1", "2", "3"]
        assert (run / label / "boot-3" / "console.log").exists()
        boots = {json.loads(r)["boot"] for r in (run / label / "fork-latency.jsonl").read_text().splitlines()}
        assert boots == {1, 2, 3}
    for label in ("stock", "patched"):
        for workload in ("fork-memory", "fork-latency", "fault-latency", "fork-server"):
            records = (run / label / f"{workload}.jsonl").read_text().splitlines()
            assert records, f"{label} {workload}"
            # prctl(65) on 6.1 without the series: every record that asked for COW PTE is judged
            asked = [json.loads(r) for r in records if json.loads(r).get("cow_pte_requested")
                     and "pagetables_delta_kb" in json.loads(r)]
            assert asked and all(r["cow_pte"] == "inactive" for r in asked)
    md = (run / "report.md").read_text()
    for section in ("fork-latency", "fault-latency", "fork-server", "fork-memory", "Claims"):
        assert section in md
    assert "no significant difference" in md or "slower" in md or "faster" in md
    assert "COW PTE fork" not in md           # nothing here was COW PTE: never reported as such
    assert "| 3/3 " in md and "boots being the units of replication" in md
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert sorted(p.name for p in (run / "plots").glob("*.png"))
