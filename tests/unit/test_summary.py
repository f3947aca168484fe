"""Every run shows its result (#22): the headline table `harness run` ends with, for the workloads
that have no table of their own, from recorded records (the workloads' real manifests)."""
import json

import numpy as np
import pytest

from harness import paths
from harness.analysis import stats, summary, tables
from harness.measure.workloads import Workload
from tests.unit import runs

# per workload: (the records' parameters, headline metric -> a typical value); the patched kernel
# is 20% slower (or 20% less throughput) on the first headline metric
RECORDED = {
    "fork-latency": ({"size_mib": 64, "thp": "nohuge"}, {"fork_ns": 3.2e6}),
    "fault-latency": ({"mib": 512, "pattern": "seq", "side": "child", "thp": "nohuge"},
                      {"mean_ns": 950.0, "median_ns": 900.0}),
    "fork-server": ({"heap_mib": 256, "thp": "nohuge"}, {"forks_per_s": 310.0}),
    "stress-fork": ({"seconds": 10, "workers": 1}, {"ops_per_s": 4200.0}),
    "afl": ({"seconds": 30, "heap_mib": 64}, {"execs_per_sec": 850.0}),
}
KERNELS = ("stock", "patched")
BOOTS = 4


def records(workload, kernel, boot, rng):
    params, heads = RECORDED[workload]
    first = next(iter(heads))
    out = []
    for rep in range(5):
        rec = {**params, "rep": rep, "boot": boot, "cow_pte": "off"}
        for metric, value in heads.items():
            worse = 1.0
            if kernel == "patched" and metric == first:
                worse = 0.8 if metric.endswith(("_per_s", "_per_sec")) else 1.2
            rec[metric] = float(value * worse * rng.lognormal(0, 0.01))
        out.append(rec)
    return out


def make_run(root, kernels=KERNELS):
    rng = np.random.default_rng(7)
    return runs.build(root, "run", {k: {"patches": [] if k == "stock" else ["p1"]} for k in kernels},
                      {(kernel, workload): [r for boot in range(1, BOOTS + 1)
                                            for r in records(workload, kernel, boot, rng)]
                       for kernel in kernels for workload in RECORDED})


def test_every_workload_declares_a_table_that_run_prints():
    names = sorted(p.parent.name for p in paths.WORKLOADS.glob("*/manifest.toml"))
    assert set(RECORDED) <= set(names)
    for name in names:
        kind = Workload.load(name).manifest.get("table") if name != "selftests" else "selftests"
        assert kind, f"{name} names no table"
        if name in RECORDED:
            assert kind == tables.HEADLINE and tables.known(kind) is None


@pytest.mark.parametrize("workload", sorted(RECORDED))
def test_two_kernels_get_medians_spread_ratio_and_verdict(tmp_path, workload):
    run = make_run(tmp_path)
    printed = []
    out = summary.show(run, [workload], printed.append, resamples=300)[workload]
    heads = stats.headline(workload)
    assert list(out["metric"].unique()) == heads
    assert set(out["condition"]) == {"stock: " + stats.PLAIN, "patched: " + stats.PLAIN}
    for column in ("median", "IQR", "CV", "n", "boots", "ratio [95% CI]", "verdict"):
        assert column in out
    assert set(out["boots"]) == {BOOTS} and set(out["n"]) == {5 * BOOTS}
    stock = out[out["condition"].str.startswith("stock")]
    assert set(stock["ratio [95% CI]"]) == {"1 (baseline)"}
    first = out[(out["condition"].str.startswith("patched")) & (out["metric"] == heads[0])].iloc[0]
    ratio = float(first["ratio [95% CI]"].split()[0])
    assert ratio == pytest.approx(0.8 if heads[0].endswith(("_per_s", "_per_sec")) else 1.2, abs=0.02)
    assert first["verdict"] and first["verdict"] != "–"
    text = "\n".join(printed)
    assert text.startswith(f"{workload} (") and "1 (baseline)" in text and first["verdict"] in text
    assert (run / f"{workload}-summary.md").exists() and (run / f"{workload}-summary.csv").exists()


def test_one_kernel_gets_its_medians_and_spread(tmp_path):
    run = make_run(tmp_path, kernels=("stock",))
    printed = []
    out = summary.show(run, ["fork-latency"], printed.append, resamples=300)["fork-latency"]
    assert list(out["condition"]) == ["stock: " + stats.PLAIN]
    values = [json.loads(line)["fork_ns"] for line in (run / "stock" / "fork-latency.jsonl").read_text().splitlines()]
    row = out.iloc[0]
    assert (row["metric"], row["unit"], row["n"], row["boots"]) == ("fork_ns", "ms", 20, BOOTS)
    assert row["median"] == f"{np.median(values) / 1e6:.3g}" == "3.19"
    assert row["CV"] == f"{np.std(values, ddof=1) / np.mean(values):.1%}" == "0.8%"
    assert row["IQR"] == f"{np.subtract(*np.percentile(values, [75, 25])) / 1e6:.3g}" == "0.0336"
    assert "fork_ns" in printed[1]


def test_fork_memory_keeps_its_own_table_and_no_records_say_so(tmp_path):
    run = make_run(tmp_path)
    assert summary.show(run, ["fork-memory"], print) == {}
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metadata.json").write_text(json.dumps({"run_id": "e", "kernels": {"stock": {}}}))
    printed = []
    assert summary.show(empty, ["afl"], printed.append)["afl"].empty
    assert "(no measured records)" in printed
