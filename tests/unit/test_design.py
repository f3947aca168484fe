"""The default design of reproduce, nightly and calibrate, and the stopping rule's headline metrics."""
import json
import tomllib

import numpy as np
import pytest

from harness import paths, schedule
from harness.analysis import stats
from harness.cli.flags import several_boots
from harness.experiment import DESIGN_BOOTS, DESIGN_UNTIL, MAX_BOOTS, Experiment


def test_the_default_design_boots_on_until_the_intervals_are_narrow():
    exp = several_boots(Experiment(kernels=[]))
    assert (exp.boots, exp.until, exp.max_boots) == (DESIGN_BOOTS, DESIGN_UNTIL, None)
    plan = schedule.plan(exp)
    assert (plan.boots, plan.until, plan.max_boots) == (5, 0.025, MAX_BOOTS)
    assert "more (up to 40) until every headline interval is within ±2.5%" in plan.describe()


def test_a_count_of_ones_own_is_fixed_and_an_until_of_ones_own_is_kept():
    fixed = several_boots(Experiment(kernels=[], boots=3))
    assert (fixed.boots, fixed.until) == (3, None) and not schedule.plan(fixed).until
    own = several_boots(Experiment(kernels=[], until=0.01, max_boots=12))
    assert (own.boots, own.until, schedule.plan(own).max_boots) == (5, 0.01, 12)


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
