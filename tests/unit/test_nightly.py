import json
import shutil
import xml.etree.ElementTree as ET
from argparse import Namespace

import numpy as np
import pytest

from harness.ci import history, merge, nightly
from harness.analysis import report, stats
from harness.errors import UserError
from tests.unit import runs

SIZES = (1, 16)
REPS = 10
KERNELS = ("stock", "patched")


def experiment(tmp_path):
    path = tmp_path / "nightly-fake.toml"
    path.write_text('name = "nightly-fake"\nsource = "x"\n[[kernels]]\nlabel = "stock"\n'
                    '[[kernels]]\nlabel = "patched"\npatched = true\n'
                    '[[workloads]]\nname = "bench"\n')
    return {"name": "nightly-fake", "path": str(path), "accel": "auto", "memory_mib": 1024, "cpus": 2,
            "kernels": [{"label": k, "source": "/src/linux", "fragments": ["guest-base"],
                         "series": "s.mbox" if k == "patched" else None} for k in KERNELS],
            "workloads": [{"name": "bench", "params": {}}]}


def kernel_meta(label, failed=False):
    info = {"release": "6.1.0" + ("+" if label == "patched" else ""), "source": {"spec": "/src/linux"},
            "patches": ["p1"] if label == "patched" else [], "status": "ok", "boot_seconds": 2.0,
            "tasks": [{"task": "1:bench", "workload": "bench", "params": {}, "status": "ok",
                       "records": REPS * len(SIZES)}]}
    if failed:
        info.update(status="failed", error="build failed: make exited 2", error_type="BuildError",
                    tasks=[])
    return info


def make_night(root, run_id, day, accel="tcg", kernels=KERNELS, worse=None, failed=()):
    """A fake night: kernels x sizes x REPS records of bench (fork_ns, rss_kb, ops_per_s); worse:
    {(kernel, size, metric): factor}; failed: kernels whose build failed (no records)."""
    root.mkdir(parents=True, exist_ok=True)
    worse = worse or {}
    noise = np.linspace(0.98, 1.02, REPS)
    records = {}
    for k in kernels:
        if k in failed:
            continue
        rows = records[(k, "bench")] = []
        for s in SIZES:
            for i in range(REPS):
                rec = {"size_mib": s, "rep": i, "cow_pte": "off", "task": "1:bench",
                       "fork_ns": 1e6 * s * noise[i], "rss_kb": 1000.0 * s + i,
                       "ops_per_s": 500.0 * noise[::-1][i]}
                for metric in ("fork_ns", "rss_kb", "ops_per_s"):
                    rec[metric] *= worse.get((k, s, metric), 1.0)
                rows.append(rec)
    return runs.build(
        root, run_id, {k: kernel_meta(k, k in failed) for k in kernels}, records,
        started=f"2026-01-{day:02d}T02:00:00+00:00", finished=f"2026-01-{day:02d}T03:00:00+00:00",
        accel=accel, harness_sha=f"sha{day}", host={"cpu": "Fake CPU", "cpus": 2, "hostname": run_id},
        command="harness run --experiment nightly-fake",
        experiment={**experiment(root), "kernels": [k for k in experiment(root)["kernels"]
                                                    if k["label"] in kernels]},
        failed=sorted(failed))


def night(run, hist, **kw):
    return nightly.Nightly(run=run, history=hist, resamples=200, **kw).execute()


def test_identical_nights_pass_and_a_worse_metric_regresses(tmp_path, capsys):
    hist = tmp_path / "history.sqlite"
    first = night(make_night(tmp_path, "n1", 1), hist)
    assert first.exit_code == 0
    assert all(r["status"] == "no history" for r in first.nights)
    second = night(make_night(tmp_path, "n2", 2), hist)
    assert second.exit_code == 0
    assert {r["status"] for r in second.nights} == {"ok"}
    assert all(r["ratio"] == pytest.approx(1.0) for r in second.nights)
    assert "# Nightly n2: OK (exit 0)" in capsys.readouterr().out

    third = night(make_night(tmp_path, "n3", 3, worse={("patched", 16, "fork_ns"): 1.3,
                                                       ("patched", 16, "ops_per_s"): 1.3}), hist)
    assert third.exit_code == 1
    [reg] = third.regressions
    assert (reg["kernel"], reg["metric"], reg["params"]) == ("patched", "fork_ns", "size_mib=16")
    assert reg["ratio"] == pytest.approx(1.3) and reg["ci_low"] > 1.05 and reg["p_value"] < 0.05
    assert reg["nights"] == 2 and reg["last_night"] == "n2"
    # a faster rate is an improvement, not a regression
    better = [r for r in third.nights if r["metric"] == "ops_per_s" and r["params"] == "size_mib=16"
              and r["kernel"] == "patched"]
    assert [r["status"] for r in better] == ["improved"]

    summary = (tmp_path / "n3" / "summary.md").read_text()
    assert "REGRESSION (exit 1)" in summary
    regressions = summary.split("## Regressions against previous nights")[1].split("##")[0]
    assert "fork_ns" in regressions and "1.300x" in regressions and "95% CI" in regressions
    assert "ops_per_s" not in regressions

    root = ET.parse(tmp_path / "n3" / "junit.xml").getroot()
    assert root.get("failures") == "1"
    assert [s.get("name") for s in root.iter("testsuite")] == ["stock", "patched"]
    failures = [(tc.get("name"), f.get("message")) for tc in root.iter("testcase")
                for f in tc.findall("failure")]
    assert len(failures) == 1 and failures[0][0].startswith("fork_ns patched: fork")
    assert "fork_ns" in failures[0][1] and "1.300x" in failures[0][1] and "CI" in failures[0][1]
    # the in-run comparison against stock is there too
    assert any(tc.get("classname") == "patched.baseline.bench" for tc in root.iter("testcase"))


def test_small_change_within_threshold_or_other_accelerator_is_not_a_regression(tmp_path):
    hist = tmp_path / "history.sqlite"
    night(make_night(tmp_path, "n1", 1), hist)
    slight = night(make_night(tmp_path, "n2", 2, worse={("stock", 1, "rss_kb"): 1.03}), hist)
    assert slight.exit_code == 0
    # a KVM night is never compared with TCG nights
    kvm = night(make_night(tmp_path, "n3", 3, accel="kvm", worse={("stock", 1, "fork_ns"): 2}), hist)
    assert kvm.exit_code == 0 and {r["status"] for r in kvm.nights} == {"no history"}


def test_regression_without_the_previous_nights_records_uses_the_threshold(tmp_path):
    hist = tmp_path / "history.sqlite"
    night(make_night(tmp_path, "n1", 1), hist)
    shutil.rmtree(tmp_path / "n1")
    worse = night(make_night(tmp_path, "n2", 2, worse={("stock", 1, "rss_kb"): 1.3}), hist)
    assert worse.exit_code == 1
    [reg] = worse.regressions
    assert reg["metric"] == "rss_kb" and np.isnan(reg["p_value"])


def test_failed_kernel_exits_5(tmp_path):
    hist = tmp_path / "history.sqlite"
    night(make_night(tmp_path, "n1", 1), hist)
    bad = night(make_night(tmp_path, "n2", 2, failed=("patched",)), hist)
    assert bad.exit_code == 5
    assert "FAILED (exit 5)" in (tmp_path / "n2" / "summary.md").read_text()
    root = ET.parse(tmp_path / "n2" / "junit.xml").getroot()
    [fail] = [f for f in root.iter("failure")]
    assert "build failed" in fail.get("message") and fail.get("type") == "BuildError"
    # a kernel missing from a run (a matrix cell that never delivered) fails it too
    partial = make_night(tmp_path, "n3", 3, kernels=("stock",))
    meta = json.loads((partial / "metadata.json").read_text())
    meta["experiment"] = experiment(tmp_path)
    (partial / "metadata.json").write_text(json.dumps(meta))
    assert night(partial, hist).failures == ["patched: did not run"]


def test_failed_task_exits_5(tmp_path):
    run = make_night(tmp_path, "n1", 1)
    meta = json.loads((run / "metadata.json").read_text())
    meta["kernels"]["stock"]["tasks"][0].update(status="failed", error="clock too coarse")
    meta["kernels"]["stock"]["status"] = "failed"
    (run / "metadata.json").write_text(json.dumps(meta))
    n = night(run, tmp_path / "h.sqlite")
    assert n.exit_code == 5 and n.failures == ["stock 1:bench: clock too coarse"]


def test_nightly_needs_one_source(tmp_path):
    with pytest.raises(UserError):
        nightly.Nightly(history=tmp_path / "h.sqlite")


def split(tmp_path):
    full = make_night(tmp_path / "full", "whole", 1)
    parts = []
    for label in KERNELS:
        part = make_night(tmp_path / "cells", f"cell-{label}", 1, kernels=(label,))
        parts.append(part)
    return full, parts


def records(run, drop=("run_id",)):
    _, df = stats.load_run(run)
    df = df.drop(columns=list(drop))
    df = df[sorted(df.columns)]
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_merge_is_the_union(tmp_path):
    full, (stock, patched) = split(tmp_path)
    merged = merge.merge([patched, stock], out=tmp_path / "merged" / "m1")
    assert merged.dir == tmp_path / "merged" / "m1"
    meta = json.loads((merged.dir / "metadata.json").read_text())
    assert meta["merged_from"] == ["cell-patched", "cell-stock"]
    assert sorted(meta["kernels"]) == ["patched", "stock"]
    # in the experiment file's order (metadata.json is written with sorted keys, the list is kept)
    assert [k["label"] for k in meta["experiment"]["kernels"]] == ["stock", "patched"]
    assert set(meta["hosts"]) == {"cell-patched", "cell-stock"} and meta["accel"] == "tcg"
    assert "--kernel-src /src/linux" in meta["command"]
    # every record carries the host it was measured on (here each run's hostname is its id)
    hosts = records(merged.dir)
    assert set(zip(hosts["kernel"], hosts["host"])) == {("stock", "cell-stock"), ("patched", "cell-patched")}
    assert records(merged.dir, drop=("run_id", "host", "from_run")).equals(records(full))
    # stats and report read it like a local run
    metas, df = stats.load_runs([merged.dir])
    assert stats.stock_kernel(metas, df) == "stock"
    assert len(stats.compare(df, "bench", resamples=50, metas=metas)) == 3 * len(SIZES)
    md, _ = report.write([merged.dir], resamples=50)
    assert "| patched" in md.read_text()
    # a new folder is refused when it has something in it
    with pytest.raises(UserError, match="not empty"):
        merge.merge([stock, patched], out=merged.dir)
    # and a merged run goes through a night like any other
    assert night(merged.dir, tmp_path / "h.sqlite").exit_code == 0


def test_merge_refuses_mixed_accelerators(tmp_path):
    _, (stock, patched) = split(tmp_path)
    kvm = make_night(tmp_path / "kvm", "cell-kvm", 1, accel="kvm", kernels=("patched",))
    with pytest.raises(UserError, match="different accelerators.*cell-kvm"):
        merge.merge([stock, kvm], out=tmp_path / "m1")
    with pytest.raises(UserError, match="named twice"):
        merge.merge([stock, stock], out=tmp_path / "m2")
    meta = json.loads((patched / "metadata.json").read_text())
    (patched / "metadata.json").write_text(json.dumps({**meta, "timing": "tsc-scaled"}))
    with pytest.raises(UserError, match="timing"):
        merge.merge([stock, patched], out=tmp_path / "m3")
    (patched / "metadata.json").write_text(json.dumps({**meta, "experiment": {"name": "other"}}))
    with pytest.raises(UserError, match="different experiments"):
        merge.merge([stock, patched], out=tmp_path / "m4")
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m4").exists()


def test_history_round_trip(tmp_path, capsys):
    store = history.History(tmp_path / "h.sqlite")
    late = make_night(tmp_path, "n2", 2, worse={("stock", 1, "fork_ns"): 1.1})
    early = make_night(tmp_path, "n1", 1)
    n = store.record(late)
    assert n == len(KERNELS) * len(SIZES) * 3
    assert store.record(late) == n and store.record(early) == n
    assert list(store.runs()["run_id"]) == ["n1", "n2"]
    assert len(store.query("1 = 1", [])) == 2 * n               # recording again added nothing
    s = store.series("fork_ns", "bench", condition="fork", kernel="stock")
    assert list(s["run_id"]) == ["n1", "n1", "n2", "n2"]          # oldest night first
    one = s[s["params"] == '{"size_mib": 1}']
    assert list(one["median"]) == [pytest.approx(1e6), pytest.approx(1.1e6)]
    row = one.iloc[1]
    assert (row["accel"], row["timing"], row["harness_sha"], row["release"]) == ("tcg", "real", "sha2", "6.1.0")
    assert store.series("fork_ns", condition="stock: fork")["run_id"].tolist() == list(s["run_id"])
    assert json.loads(store.series("fork_ns", kernel="patched").iloc[0]["patches"]) == ["p1"]
    assert list(store.previous(row.to_dict())["run_id"]) == ["n1"]
    png = store.plot("fork_ns", tmp_path / "plot" / "fork.png", workload="bench")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UserError, match="no history"):
        store.plot("nothing", tmp_path / "x.png")
    args = Namespace(history=store.path, metric="fork_ns", workload="bench", kernel="stock",
                     condition=None, plot=None)
    assert history.main(args) == 0 and "n2" in capsys.readouterr().out
