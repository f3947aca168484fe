"""Which changed lines ran, end to end: `harness verify --kernels gcov` on the test series.

A small gcov kernel (the CI config, guest-base + selftests, with the series' two .c files
profiled) is built, booted, and runs fork-memory; its counts come back from the guest after the
boot and after the task. Patch 1's pr_notice in init/main.c runs at boot: the table must report
it executed; patch 2's sysctl is never read: the table must name it as never executed.
"""
import json

import pytest

from harness import cli, paths
from tests import results_doc

pytestmark = pytest.mark.slow
SERIES = str(paths.ROOT / "tests" / "data" / "test-series")


def test_gcov_kernel_reports_which_changed_lines_ran(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    code = cli.main(["verify", "--kernel-src", "debian:linux-source-6.1", "--series", SERIES,
                     "--feature", "none", "--no-bisect", "--kernels", "gcov", "--mib", "64"])
    out = capsys.readouterr().out
    assert code == 0, out
    (run,) = tmp_path.iterdir()
    kernel = json.loads((run / "gcov" / "kernel.json").read_text())
    assert kernel["gcov"]["files"] == ["init/main.c", "kernel/sysctl.c"]
    # counts per task: the boot and the workload, each stored on its own
    stored = sorted(p.name for p in (run / "gcov").glob("gcov-*.json"))
    assert stored == ["gcov-1-fork-memory.json", "gcov-boot.json"]
    table = json.loads((run / "line-coverage.json").read_text())
    one, two = table["patches"]
    # patch 1 adds one line, the pr_notice; it ran once, at boot, and not in the workload
    assert (one["lines"], one["executable"]) == (1, 1)
    assert one["executed"]["boot"] == 1 and one["executed"]["any"] == 1
    assert one["executed"]["workloads/plain"] == 0
    # patch 2's table entry is data, not code: nothing of it can run, and the table says so
    assert two["lines"] >= 9 and two["no_data"] == 0 and two["executable"] == 0
    assert table["never_executed"] == []
    assert [h["file"] for h in table["no_code"]] == ["kernel/sysctl.c"] * len(table["no_code"])
    assert "changed code with no line gcov counts" in out and "[2/2] sysctl: add" in out
    boot = json.loads((run / "gcov" / "gcov-boot.json").read_text())
    main = dict(map(tuple, boot["counts"]["init/main.c"]))
    assert sum(1 for c in main.values() if c) > 20        # init/main.c ran at boot
    assert "changed lines executed, per patch" in out
    assert "changed lines executed: 1/1 executable (gcov kernel)" in out
    # the gcov kernel's records are marked: timing comparisons leave them out
    rec = json.loads((run / "gcov" / "fork-memory.jsonl").read_text().splitlines()[0])
    assert rec["coverage"] == "gcov"
    assert results_doc.gaps(run) == []          # the new files and field are in docs/results.md
