"""The default design of reproduce, nightly and calibrate, and the stopping rule's headline metrics."""
import json
import tomllib

import numpy as np
import pytest

from harness import paths, schedule
from harness.analysis import stats
from harness.cli.flags import several_boots
from harness.experiment import DESIGN_BOOTS, DESIGN_UNTIL, DESIGN_VARIANTS, MAX_BOOTS, Experiment


def test_the_default_design_boots_on_until_the_intervals_are_narrow():
    exp = several_boots(Experiment(kernels=[]))
    boots = max(DESIGN_BOOTS, 2 * DESIGN_VARIANTS)       # two boots per layout variant at least
    assert (exp.boots, exp.until, exp.max_boots, exp.variants) == (boots, DESIGN_UNTIL, None, DESIGN_VARIANTS)
    plan = schedule.plan(exp)
    assert (plan.boots, plan.until, plan.max_boots) == (boots, 0.025, MAX_BOOTS)
    assert "more (up to 40) until every headline interval is within ±2.5%" in plan.describe()


def test_a_count_of_ones_own_is_fixed_and_an_until_of_ones_own_is_kept():
    fixed = several_boots(Experiment(kernels=[], boots=3))
    assert (fixed.boots, fixed.until) == (3, None) and not schedule.plan(fixed).until
    own = several_boots(Experiment(kernels=[], until=0.01, max_boots=12, variants=2))
    assert (own.boots, own.until, schedule.plan(own).max_boots) == (5, 0.01, 12)


def test_icount_gets_no_layout_variants():
    """icount counts instructions: placement does not change them, so the design builds one."""
    assert several_boots(Experiment(kernels=[], timing="icount")).variants is None


@pytest.mark.parametrize("manifest", sorted(paths.WORKLOADS.glob("*/manifest.toml")), ids=lambda p: p.parent.name)
def test_every_headline_is_a_declared_metric(manifest):
    data = tomllib.loads(manifest.read_text())
    if "metrics" not in data:
        return
    assert data.get("headline"), f"{manifest}: no headline metrics"
    assert set(data["headline"]) <= set(data["metrics"])
    assert stats.headline(manifest.parent.name) == data["headline"]


def fault_run(tmp_path, mean_sd, max_sd, boots=6, reps=5):
    """Two kernels' fault-latency records: mean/median with a between-boot spread of mean_sd,
    max_ns with max_sd."""
    rng = np.random.default_rng(3)
    for label in ("a", "b"):
        (tmp_path / label).mkdir(parents=True)
        with open(tmp_path / label / "fault-latency.jsonl", "w") as out:
            for boot in range(1, boots + 1):
                shift, wild = rng.normal(0, mean_sd), rng.normal(0, max_sd)
                for rep in range(reps):
                    mean = 1000 * np.exp(shift + rng.normal(0, 0.001))
                    out.write(json.dumps({"mean_ns": mean, "median_ns": mean * 0.9,
                                          "max_ns": 50000 * np.exp(wild + rng.normal(0, 0.3)),
                                          "mib": 128, "pattern": "seq", "side": "child",
                                          "thp": "nohuge", "cow_pte": "off", "boot": boot,
                                          "round": rep}) + "\n")
    (tmp_path / "metadata.json").write_text(json.dumps(
        {"run_id": "fake", "timing": "real", "accel": "tcg", "kernels": {"a": {}, "b": {}}}))
    return tmp_path


def test_the_stopping_rule_waits_for_headline_intervals_only(tmp_path):
    # max_ns swings by a factor of two between boots: its interval never narrows, and the rule
    # must not wait for it; mean and median (the headline) are within a fraction of a per cent
    narrow = stats.widest_interval(fault_run(tmp_path / "narrow", 0.002, 0.7))
    assert 0 < narrow < 0.01
    metas, df = stats.load_runs([tmp_path / "narrow"])
    comp = stats.compare(df, "fault-latency", metas=metas, method="none", resamples=200)
    wide = comp[comp["metric"] == "max_ns"].iloc[0]
    assert (wide["ci_high"] - wide["ci_low"]) / 2 / wide["ratio"] > 0.1
    # and a headline metric that does spread keeps the rounds going
    assert stats.widest_interval(fault_run(tmp_path / "wide", 0.05, 0.7)) > 0.03


def two_kernel_run(tmp_path, order="alternating", boots=4, effect=0.05, drift=0.10):
    """fork-latency records of kernels a and b booted in rounds with a shared drift."""
    rng = np.random.default_rng(5)
    lines = {"a": [], "b": []}
    for boot in range(1, boots + 1):
        shift = rng.normal(0, drift)
        for label, k in (("a", 1.0), ("b", 1 + effect)):
            for rep in range(5):
                lines[label].append({"fork_ns": 1e6 * k * np.exp(shift + rng.normal(0, 0.002)),
                                     "size_mib": 64, "thp": "nohuge", "cow_pte": "off",
                                     "boot": boot, "rep": rep, "warmup": False})
    for label, recs in lines.items():
        (tmp_path / label).mkdir(parents=True)
        (tmp_path / label / "fork-latency.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (tmp_path / "metadata.json").write_text(json.dumps(
        {"run_id": "fake", "timing": "real", "accel": "tcg", "kernels": {"a": {}, "b": {}},
         "design": {"boots": boots, "order": order}}))
    return tmp_path


def test_a_sequential_run_is_not_paired_and_a_failed_kernel_is_not_waited_for(tmp_path):
    rounds = two_kernel_run(tmp_path / "alternating")
    metas, df = stats.load_runs([rounds])
    paired = stats.compare(df, "fork-latency", metas=metas, base="a: fork").iloc[0]
    assert paired["rounds"] == 4 and paired["verdict"].direction == "slower"
    seq = two_kernel_run(tmp_path / "sequential", order="sequential")
    metas, df = stats.load_runs([seq])
    apart = stats.compare(df, "fork-latency", metas=metas, base="a: fork").iloc[0]
    assert apart["rounds"] == 0 and apart["unit_of_replication"] == "boot"
    # the stopping rule: a's and b's interval is what it waits for, unless b is out of the run
    assert stats.widest_interval(rounds) < 0.02
    assert stats.widest_interval(seq) > 0.05
    assert stats.widest_interval(seq, kernels=["a"]) == 0.0


def test_a_one_boot_interval_never_satisfies_the_rule(tmp_path):
    one = two_kernel_run(tmp_path, boots=1)
    assert stats.widest_interval(one) == float("inf")


def test_the_report_states_where_the_design_stopped():
    from harness.analysis.report import design_text
    from harness import stored
    text = design_text(stored.run_of({"design": {"boots": 5, "order": "alternating", "until": 0.025, "max_boots": 40,
                                                "stopped": "after 40 boots per kernel: max_boots (40) reached"}}))
    assert text == ("5 boot(s) per kernel, alternating, then rounds until every headline interval was "
                    "within ±2.5% (at most 40): stopped after 40 boots per kernel: max_boots (40) reached")


def judge(run_dir, done, left=2, max_boots=40, kernels=2, until=0.025):
    """The stopping rule on a run folder's data: the widest interval of the kernels still booting."""
    widest = stats.widest_interval(run_dir, kernels=["a", "b"][:left])
    return schedule.stop_reason(widest, until, done, max_boots, left, kernels)


def test_the_rule_stops_when_met_at_the_cap_or_with_one_kernel_left(tmp_path):
    narrow = two_kernel_run(tmp_path / "narrow")                     # paired: within ±2%
    assert judge(narrow, 4).startswith("every headline interval within ±2.5% (widest ±")
    wide = two_kernel_run(tmp_path / "wide", order="sequential")     # unpaired: ±10%
    assert judge(wide, 4) is None                                    # one more round
    assert judge(wide, 4, max_boots=4).startswith("max_boots (4) reached; widest headline interval ±")
    # b panicked: no comparison is left, so no interval is wide (the pure rule's own test below
    # shows the "fewer than two kernels" reason)
    assert judge(wide, 4, left=1) == "every headline interval within ±2.5% (widest ±0.00%)"


def test_the_stopping_rule_is_a_pure_function_of_its_figures():
    rule = schedule.stop_reason
    assert rule(0.02, 0.025, 5, 40, 2, 2) == "every headline interval within ±2.5% (widest ±2.00%)"
    assert rule(0.025, 0.025, 5, 40, 2, 2).startswith("every headline")      # the bound itself is met
    assert rule(0.03, 0.025, 5, 40, 2, 2) is None
    assert rule(0.03, 0.025, 40, 40, 2, 2) == "max_boots (40) reached; widest headline interval ±3.00%"
    assert rule(float("inf"), 0.025, 1, 40, 2, 2) is None                   # one boot: no interval yet
    assert rule(0.03, 0.025, 5, 40, 1, 2) == "fewer than two kernels left to compare"
    assert rule(0.03, 0.025, 5, 40, 1, 1) is None        # a one-kernel run waits for its own interval
    # the order of the reasons: met before capped before abandoned
    assert rule(0.01, 0.025, 40, 40, 1, 2).startswith("every headline")
    assert rule(0.03, 0.025, 40, 40, 1, 2).startswith("max_boots")


def test_resume_replays_the_rounds_on_disk_before_judging():
    skip = {("a", n) for n in range(1, 9)} | {("b", n) for n in range(1, 8)}
    assert schedule.replayed(skip, {"a": 1, "b": 1}, 7) and not schedule.replayed(skip, {"a": 1, "b": 1}, 8)
    assert schedule.replayed(skip, ["a"], 8)                 # b is out of the run: a's round counts
    assert not schedule.replayed(set(), {"a": 1}, 1)         # a fresh run replays nothing
