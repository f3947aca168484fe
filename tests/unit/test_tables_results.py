import json
import os
import re
import subprocess

from harness import paths
from harness.analysis import tables
from harness.results import RunStore

RECORD = {"parent_vmrss_kb": 1049688, "child_vmrss_kb": 1048688, "parent_vmpte_kb": 2096,
          "child_vmpte_kb": 2096, "pagetables_delta_kb": 2100, "fork_ns": 10_000_000}


def test_fork_memory_table_layout(tmp_path):
    table, extra = tables.fork_memory([RECORD, dict(RECORD, fork_ns=12_000_000)])
    text = tables.render_fork_memory(table, extra)
    lines = text.splitlines()
    assert lines[0].split() == ["parent", "child"]
    assert lines[1].split() == ["VmRSS:", "1049688", "kB", "1048688", "kB"]
    assert lines[2].split() == ["VmPTE:", "2096", "kB", "2096", "kB"]
    assert "PageTables delta at fork: 2100 kB" in text
    assert "11.000 ms (median of 2)" in text
    tables.save_fork_memory(table, extra, tmp_path)
    assert "VmPTE" in (tmp_path / "fork-memory.md").read_text()
    assert (tmp_path / "fork-memory.csv").read_text().startswith("metric,parent,child,unit\nVmRSS,1049688,1048688,kB")


def test_run_store_writes_as_it_goes(tmp_path):
    store = RunStore("r1", root=tmp_path)
    append = store.appender("stock", "fork-memory")
    append({"a": 1})
    # on disk before anything else happens
    assert json.loads((tmp_path / "r1" / "stock" / "fork-memory.jsonl").read_text()) == {"a": 1}
    store.update_kernel("stock", status="ok")
    meta = json.loads((tmp_path / "r1" / "metadata.json").read_text())
    assert meta["kernels"]["stock"]["status"] == "ok"
    # the checkout's own commit (never the "unknown" fallback: the tests run in a git checkout)
    head = subprocess.run(["git", "-C", str(paths.ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert re.fullmatch(re.escape(head) + "(-dirty)?", meta["harness_sha"]), meta["harness_sha"]
    assert meta["host"]["cpus"] == os.cpu_count()
    # reopening the run keeps what was there
    assert RunStore("r1", root=tmp_path).records("stock", "fork-memory") == [{"a": 1}]


def test_resume_sets_aside_the_cut_boot_and_keeps_the_finished_one(tmp_path):
    import json as _json
    from harness.results import RunStore
    store = RunStore("r", root=tmp_path)
    append = store.appender("a", "bench")
    for boot in (1, 2):
        store.set_boot("a", boot, {"status": "ok" if boot == 1 else "interrupted"})
        store.add_task("a", {"task": "1:bench", "boot": boot})
        append({"boot": boot, "x": 1})
    (store.boot_dir("a", 2) / "console.log").write_text("boot 2\n")
    again = RunStore("r", root=tmp_path)
    again.start_kernel("a", kept={1})
    again.reset_boot("a", 3)                     # never started: nothing moves
    assert len(again.records("a", "bench")) == 2
    again.reset_boot("a", 2)
    assert [r["boot"] for r in again.records("a", "bench")] == [1]
    aside = tmp_path / "r" / "a.attempt-1"
    assert _json.loads((aside / "bench.jsonl").read_text())["boot"] == 2
    assert (aside / "boot-2" / "console.log").exists()
    assert list(again.metadata["kernels"]["a"]["boots"]) == ["1"]
    assert [t["boot"] for t in again.tasks("a")] == [1]
