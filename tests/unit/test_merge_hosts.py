"""harness merge over a fleet: partial runs of the same kernels (each a cell: some workloads on every
kernel) from two hosts become one run whose records say which host measured them."""
import json

import pytest

from harness import experiment
from harness.ci import merge
from harness.analysis import stats
from harness.errors import UserError
from tests.unit import runs

EXPERIMENT = """name = "fleet-fake"
source = "/src/linux"
series = "s.mbox"

[[kernels]]
label = "stock"

[[kernels]]
label = "patched"
patched = true

[[workloads]]
name = "fork-memory"
params = { mib = [16, 32], cow_pte = [0, 1] }
"""
HOSTS = {"run-a": "runner-a", "run-b": "runner-b"}
CELLS = {"run-a": "fork-memory.mib=16", "run-b": "fork-memory.mib=32"}


def partial(root, run_id, failed=(), **meta_extra):
    """A partial run of one cell on host HOSTS[run_id]: both kernels, fork-memory records (one
    already carrying the host the pipeline writes from now on), a console log per kernel."""
    exp = experiment.load(root / "fleet-fake.toml").only([CELLS[run_id]])
    kernels, records = {}, {}
    for k in exp.kernels:
        tasks, recs = [], []
        records[(k.label, "fork-memory")] = recs
        for n, w in enumerate(exp.workloads, 1):
            tasks.append({"task": f"{n}:fork-memory", "workload": "fork-memory", "params": w.params,
                          "status": "failed" if k.label in failed else "ok", "records": 1})
            rec = {"type": "record", "mib": w.params["mib"], "cow_pte_requested": bool(w.params["cow_pte"]),
                   "cow_pte": "off", "fork_ns": 1e6 * w.params["mib"], "task": f"{n}:fork-memory",
                   "kernel": k.label}
            if n == 2:                      # the pipeline writes the host (None: unknown)
                rec["host"] = HOSTS[run_id] if k.label == "stock" else None
            recs.append(rec)
        kernels[k.label] = {"status": "failed" if k.label in failed else "ok", "release": "6.1.0",
                            "config_sha": "c0ffee", "boot_seconds": 2.0 if run_id == "run-a" else 3.0,
                            "tasks": tasks}
    run = runs.build(root, run_id, kernels, records, started="2026-01-01T02:00:00+00:00",
                     finished="2026-01-01T03:00:00+00:00", qemu=f"QEMU 7.2 on {HOSTS[run_id]}",
                     host={"hostname": HOSTS[run_id], "cpu": f"CPU of {HOSTS[run_id]}", "cpus": 2,
                           "kernel": "6.1.0-host"},
                     harness_sha="sha", command=exp.command_line(), experiment=exp.to_dict(),
                     failed=sorted(failed), **meta_extra)
    for k in exp.kernels:
        (run / k.label / "console.log").write_text(f"booted on {HOSTS[run_id]}\n")
        (run / k.label / "kernel.json").write_text('{"release": "6.1.0"}\n')
    return run


@pytest.fixture
def root(tmp_path):
    (tmp_path / "fleet-fake.toml").write_text(EXPERIMENT)
    return tmp_path


def lines(run, label):
    return [json.loads(line) for line in (run / label / "fork-memory.jsonl").read_text().splitlines()]


def test_same_kernels_from_two_hosts_are_joined_and_keep_their_host(root):
    a, b = partial(root, "run-a"), partial(root, "run-b", failed=("patched",))
    merged = merge.merge([a, b], out=root / "merged").dir
    meta = json.loads((merged / "metadata.json").read_text())
    # the merged run's reproducer is the whole experiment, not one cell's
    again = experiment.load(merged / "experiment.toml")
    assert sorted(w.params["mib"] for w in again.workloads) == [16, 16, 32, 32] and again.cells is None
    assert [(k.label, k.series) for k in again.kernels] == [("stock", None), ("patched", "s.mbox")]
    # records of one file from two runs are appended, each with its run's host
    for label in ("stock", "patched"):
        recs = lines(merged, label)
        assert [(r["mib"], r["host"], r["from_run"]) for r in recs] == [
            (16, "runner-a", "run-a"), (16, "runner-a", "run-a"),
            (32, "runner-b", "run-b"), (32, "runner-b", "run-b")]
        # logs of one name are both kept; a file with the same content once
        assert (merged / label / "console.log").read_text() == "booted on runner-a\n"
        assert (merged / label / "console.run-b.log").read_text() == "booted on runner-b\n"
        assert not (merged / label / "kernel.run-b.json").exists()
    assert meta["hosts"] == {
        "runner-a": {"cpu": "CPU of runner-a", "cpus": 2, "kernel": "6.1.0-host", "qemu": "QEMU 7.2 on runner-a",
                     "accel": "tcg", "timing": "real", "runs": ["run-a"]},
        "runner-b": {"cpu": "CPU of runner-b", "cpus": 2, "kernel": "6.1.0-host", "qemu": "QEMU 7.2 on runner-b",
                     "accel": "tcg", "timing": "real", "runs": ["run-b"]}}
    # a kernel's facts: failed if it failed anywhere; every task, with its host; boots per run
    stock, patched = meta["kernels"]["stock"], meta["kernels"]["patched"]
    assert stock["status"] == "ok" and patched["status"] == "failed" and meta["failed"] == ["patched"]
    assert [(c["host"], c["params"]["mib"]) for c in patched["tasks"]] == \
        [("runner-a", 16), ("runner-a", 16), ("runner-b", 32), ("runner-b", 32)]
    assert {r: v["boot_seconds"] for r, v in stock["runs"].items()} == {"run-a": 2.0, "run-b": 3.0}
    # both cells together are the whole experiment again: its reproducer names no cell
    assert len(meta["experiment"]["workloads"]) == 4 and meta["experiment"]["cells"] is None
    assert "--cell" not in meta["command"] and "mib=32" in meta["command"]
    # stats sees every record, each host's apart
    _, df = stats.load_runs([merged])
    assert len(df) == 8 and set(df.groupby("host")["mib"].unique().map(tuple)) == {(16,), (32,)}


def test_one_cell_merged_is_still_that_cell(root):
    merged = merge.merge([partial(root, "run-b")], out=root / "merged").dir
    meta = json.loads((merged / "metadata.json").read_text())
    assert meta["experiment"]["cells"] == ["fork-memory.mib=32"]
    assert meta["command"].endswith("--cell fork-memory.mib=32")
    assert {r["host"] for r in lines(merged, "stock")} == {"runner-b"}


def test_a_run_without_timing_is_real_time_for_merge_and_stats(root):
    old = partial(root, "run-a")
    meta = json.loads((old / "metadata.json").read_text())
    del meta["timing"]                      # a run from before the harness wrote its timing mode
    (old / "metadata.json").write_text(json.dumps(meta))
    real = partial(root, "run-b")
    assert merge.merge([old, real], out=root / "m1").metadata["timing"] == "real"
    assert len(stats.load_runs([old, real])[1]) == 8
    icount = json.loads((real / "metadata.json").read_text())
    (real / "metadata.json").write_text(json.dumps({**icount, "timing": "icount"}))
    with pytest.raises(UserError, match="timing"):
        merge.merge([old, real], out=root / "m2")
    with pytest.raises(UserError, match="timing"):
        stats.load_runs([old, real])


def one_kernel_run(root, run_id, label, host, base_ns):
    """A partial run of the old kind: one kernel only, measured on `host`."""
    recs = [{"type": "record", "size_mib": 64, "rep": i, "boot": b, "fork_ns": base_ns + 10 * i + b,
             "cow_pte": "off", "task": "1:bench", "kernel": label}
            for b in (1, 2, 3) for i in range(8)]
    exp = {"name": "two-hosts", "kernels": [{"label": label, "source": "/src", "fragments": ["guest-base"],
                                             "series": None}],
           "workloads": [{"name": "bench", "params": {}}]}
    return runs.build(root, run_id, {label: {"tasks": [], **({"patches": ["p"]} if label == "patched" else {})}},
                      {(label, "bench"): recs}, started="2026-01-01T02:00:00+00:00",
                      host={"hostname": host, "cpu": f"CPU of {host}"}, experiment=exp)


def test_a_ratio_across_hosts_is_not_a_verdict(tmp_path):
    from harness.analysis import report
    a = one_kernel_run(tmp_path, "run-x", "stock", "runner-x", 1_000_000)
    b = one_kernel_run(tmp_path, "run-y", "patched", "runner-y", 1_500_000)
    merged = merge.merge([a, b], out=tmp_path / "merged")
    md_path, _ = report.write([merged.dir], resamples=50)
    md = md_path.read_text()
    assert "not comparable: measured on different hosts (runner-x vs runner-y)" in md
    assert "| slower" not in md
