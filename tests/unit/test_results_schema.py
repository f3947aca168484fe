"""The run folder's schema: the resolved experiment a run keeps, and the typed verdict."""
import math

import pytest

from harness import experiment as ex
from harness.analysis import stats, verdict


def three_kernels():
    """verify's shape: three kernels, each with its own series and fragments, one on another source."""
    return ex.Experiment(
        kernels=[ex.KernelSpec("stock", "debian:linux-source-6.1", ["guest-base"]),
                 ex.KernelSpec("y", "debian:linux-source-6.1", ["guest-base", "selftests"], "/s/series-a"),
                 ex.KernelSpec("n", "/src/other", ["guest-base", "kasan"], "/s/series-b", base="defconfig")],
        workloads=[ex.WorkloadSpec("fork-latency", {"size_mib": 64, "thp": "nohuge"}),
                   ex.WorkloadSpec("fork-memory")],
        name="three", boots=3, claims=[{"workload": "fork-latency", "metric": "fork_ns", "value": 1.5}])


def test_the_resolved_experiment_keeps_every_kernels_series_and_fragments(tmp_path):
    exp = three_kernels()
    path = tmp_path / "experiment.toml"
    path.write_text(ex.resolved(exp))
    back = ex.load(path)
    assert back.kernels == exp.kernels          # the command line keeps only the first's series
    assert back.workloads == exp.workloads and back.claims == exp.claims and back.boots == 3
    assert ex.resolved(back) == ex.resolved(exp)
    # a --series given on the command line goes to the patched kernels only
    again = ex.load(path, series="/s/other")
    assert [k.series for k in again.kernels] == [None, "/s/other", "/s/other"]


def test_a_verdict_is_a_value_and_its_words_are_made_at_the_edge():
    slower = verdict.Verdict("slower", ratio=1.2, low=1.1, high=1.3, boots=5)
    assert slower.called and slower.sized and str(slower) == "slower"
    once = verdict.Verdict("faster", ratio=0.8, repetitions=True, noisy_cv=0.12)
    assert once.called and once.prose() == "faster [1 boot] (noisy: CV 12%)"
    unjudged = verdict.Verdict("not judged", ratio=1.1, level="1 layout", repetitions=True)
    assert not unjudged.called and unjudged.prose().startswith("not judged [1 layout]: ratio 1.100; ")
    assert verdict.Verdict("no significant difference", bound=0.031).prose() == \
        "no significant difference (none > 3.1%)"
    assert not verdict.Verdict("not enough data").sized
    with pytest.raises(ValueError):
        verdict.Verdict("faster-ish")
    with pytest.raises(ValueError):
        verdict.Verdict("not judged")           # which level was not measured?


def test_compare_samples_gives_the_evidence_with_the_verdict():
    base = [[100.0, 101, 99, 100], [100.0, 102, 98, 100], [101.0, 100, 99, 100]]
    cand = [[120.0, 121, 119, 120], [121.0, 120, 122, 120], [119.0, 120, 121, 120]]
    row = stats.compare_samples(base, cand, "ns", resamples=200)
    v = row["verdict"]
    assert v.direction == "slower" and v.boots == 3 and not v.repetitions and v.layouts == 0
    assert v.ratio == pytest.approx(row["ratio"]) and v.low == row["ci_low"] and v.high == row["ci_high"]
    assert v.low < v.ratio < v.high and not math.isnan(v.low)


def test_the_doc_check_catches_a_field_written_and_not_documented_and_one_missing(tmp_path):
    from harness import stored
    from tests import results_doc
    from tests.unit import runs
    rec = {"type": "record", "boot": 1, "task": "1:fork-memory", "kernel": "stock", "workload": "fork-memory",
           "host": "h", "timing": "real", "mib": 64, "fork_ns": 1000, "child_vmpte_kb": 4}
    run = runs.build(tmp_path, "r1", {"stock": {"boots": {"1": {"status": "ok"}}}},
                     {("stock", "fork-memory"): [rec, {**rec, "surprise_kb": 3}]})
    problems = results_doc.gaps(run)
    assert "stock/fork-memory.jsonl:2: field surprise_kb is written but not documented" in problems
    assert not any(p.startswith("stock/fork-memory.jsonl:1") for p in problems)
    # documented as always written, and not there: the fake run has no design, image, qemu, ...
    assert "metadata.json: field design is documented as always written but missing" in problems
    assert "kernels.stock.boots.1: field boot_seconds is documented as always written but missing" in problems
    (run / "stock" / "notes.txt").write_text("?")
    assert "stock/notes.txt: a file the doc does not describe" in results_doc.gaps(run)
    # the typed reader: its mode computed in one place
    meta = stored.run(run)
    assert meta.run_id == "r1" and meta.mode == ("tcg", "real") and stored.mode(meta.data) == meta.mode
    assert meta.kernels["stock"].ok and meta.kernels["stock"].boots == {1: {"status": "ok"}}
    assert stored.mode({"timing": "icount"}) == (None, None) and stored.timing({}) == "real"
