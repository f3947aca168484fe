"""Boots as units: the interval's coverage on simulated two-level data, Holm and BH against hand
computations, the variance split, the replication schedule and the practical threshold."""
import numpy as np
import pytest
from scipy import stats as sps

from harness.analysis import calibrate, inference, stats
from harness import schedule
from harness.errors import UserError
from harness.experiment import Experiment, KernelSpec


def test_holm_by_hand():
    # sorted 0.005 0.01 0.03 0.04 times 4 3 2 1 = 0.02 0.03 0.06 0.04, running max 0.02 0.03 0.06 0.06
    got = inference.holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert inference.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])        # capped at 1


def test_bh_by_hand():
    # sorted 0.005 0.01 0.03 0.04 times 4/rank = 0.02 0.02 0.04 0.04, running min from the top
    got = inference.bh([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert inference.bh([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05] * 5)
    p = np.random.default_rng(3).random(40) ** 3
    assert inference.bh(p) == pytest.approx(sps.false_discovery_control(p))


def test_nan_p_values_stay_out_of_the_family():
    got = inference.bh([0.01, np.nan, 0.04])
    assert np.isnan(got[1]) and got[0] == pytest.approx(0.02) and got[2] == pytest.approx(0.04)


def test_boot_interval_coverage_beside_the_per_repetition_bootstrap():
    """1000 simulations, 5 boots x 20 repetitions a kernel, boot sd = repetition sd = 2%."""
    new = calibrate.simulate(sims=1000, methods=("rounds", "boot"))
    old = calibrate.simulate(sims=200, resamples=200, methods=("repetition",))["repetition"]["coverage"]
    assert new["rounds"]["coverage"] >= 0.93 and new["boot"]["coverage"] >= 0.93
    assert old < 0.80          # the old interval ignores the boots: far too narrow


def test_boot_interval_finds_a_real_difference_and_its_size():
    rng = np.random.default_rng(5)
    base = [np.exp(rng.normal(o, 0.01, 20)) for o in rng.normal(0, 0.01, 6)]
    cand = [np.exp(rng.normal(o, 0.01, 20)) for o in rng.normal(np.log(1.10), 0.01, 6)]
    ratio, lo, hi, p = inference.boot_interval(base, cand)
    assert lo < 1.10 < hi and lo > 1.0 and p < 0.001 and ratio == pytest.approx(1.10, rel=0.03)


def test_identical_boots_give_a_zero_width_interval():
    same = [np.array([5.0, 5.0]), np.array([5.0, 5.0])]
    assert inference.boot_interval(same, same) == (1.0, 1.0, 1.0, 1.0)
    more = [b * 1.0001 for b in same]
    r, lo, hi, p = inference.boot_interval(same, more)
    assert p == 0.0 and lo == hi == pytest.approx(1.0001)


def test_variance_split():
    rng = np.random.default_rng(2)
    between = [np.exp(o + rng.normal(0, 0.001, 30)) for o in rng.normal(0, 0.05, 8)]
    within = [np.exp(rng.normal(0, 0.05, 30)) for _ in range(8)]
    assert inference.variance_split(between)["share"] > 0.9
    assert inference.variance_split(within)["share"] < 0.2
    assert np.isnan(inference.variance_split([np.ones(3)])["share"])     # one boot: unknown


def test_a_deterministic_tiny_difference_is_not_a_verdict():
    """icount: 0.01% more instructions, identical in every boot, is below the practical threshold."""
    base = [np.full(10, 1000.0)] * 3
    cand = [np.full(10, 1000.1)] * 3
    row = stats.compare_samples(base, cand, "ns")
    assert row["p_value"] == 0.0 and str(row["verdict"]).startswith("no practical difference")
    row = stats.compare_samples(base, [np.full(10, 1100.0)] * 3, "ns")
    assert row["verdict"].direction == "slower"


def test_one_boot_per_kernel_is_labelled():
    row = stats.compare_samples([1.0, 1.01, 1.02, 1.0], [2.0, 2.01, 2.02, 2.0], "ns")
    assert row["unit_of_replication"].startswith("repetition") and row["verdict"].direction == "slower" and row["verdict"].repetitions


def test_no_difference_says_how_large_a_difference_was_ruled_out():
    rng = np.random.default_rng(9)
    base = [rng.normal(100, 1, 20) for _ in range(5)]
    cand = [rng.normal(100, 1, 20) for _ in range(5)]
    row = stats.compare_samples(base, cand, "ns")
    assert str(row["verdict"]).startswith("no significant difference (none > ")
    assert stats.bound_of(row) < 0.02


def test_schedule_orders():
    assert schedule.rounds(["a", "b"], 2, "alternating", 0) == [(1, "a"), (1, "b"), (2, "b"), (2, "a")]
    assert schedule.rounds(["a", "b"], 2, "interleaved", 0) == [(1, "a"), (1, "b"), (2, "a"), (2, "b")]
    assert schedule.rounds(["a", "b"], 2, "sequential", 0) == [(1, "a"), (2, "a"), (1, "b"), (2, "b")]
    rand = schedule.rounds(list("abcd"), 6, "random", 42)
    assert rand == schedule.rounds(list("abcd"), 6, "random", 42)       # the seed repeats it
    assert [sorted(label for b, label in rand if b == k) for k in range(1, 7)] == [list("abcd")] * 6
    assert len({tuple(label for b, label in rand if b == k) for k in range(1, 7)}) > 1


def test_design_is_checked_and_travels_in_the_reproducer():
    with pytest.raises(UserError, match="boots"):
        Experiment(kernels=[], boots=0)
    with pytest.raises(UserError, match="order"):
        Experiment(kernels=[], order="shuffled")
    exp = Experiment(kernels=[KernelSpec("k", "/src")], boots=4, order="random", seed=7)
    line = exp.command_line()
    assert "--boots 4 --order random --seed 7" in line


def fake_records(host_a, host_b, boots=3):
    import pandas as pd
    rng = np.random.default_rng(4)
    rows = [{"kernel": k, "workload": "bench", "run_id": "r", "host": h, "boot": b, "rep": i,
             "fork_ns": float(rng.normal(1000 if k == "stock" else 1300, 10))}
            for k, h in (("stock", host_a), ("patched", host_b)) for b in range(1, boots + 1)
            for i in range(5)]
    return stats.add_conditions(pd.DataFrame(rows))


def test_kernels_measured_on_two_hosts_are_not_compared():
    apart = stats.compare(fake_records("runner1", "runner2"), "bench", base="stock: fork")
    assert len(apart) == 1 and str(apart.loc[0, "verdict"]).startswith("not comparable: measured on different hosts")
    assert np.isnan(apart.loc[0, "p_value"])
    together = stats.compare(fake_records("runner1", "runner1"), "bench", base="stock: fork")
    assert together.loc[0, "verdict"].direction == "slower" and together.loc[0, "boots_cand"] == 3


def test_rounds_past_the_plan_follow_the_order():
    p = schedule.Plan(["a", "b"], 2, "sequential", 0, until=0.01, max_boots=4)
    assert p.batch(0) == ([(1, "a"), (2, "a"), (1, "b"), (2, "b")], 2)
    assert p.batch(2) == ([(3, "a"), (3, "b")], 3)
    p = schedule.Plan(["a", "b"], 2, "alternating", 0)
    assert p.batch(1) == ([(2, "b"), (2, "a")], 2)
    with pytest.raises(UserError, match="until"):
        Experiment(kernels=[], until=2)


def test_boots_needed_for_power_matches_the_textbook(monkeypatch):
    monkeypatch.setattr(inference, "ROBUST_FROM", 10 ** 6)       # Welch's t at every size
    # two-sample t, two-sided alpha 0.05, power 0.8: d = 1 needs 17 per group, d = 0.5 needs 64,
    # d = 0.8 needs 26 (Cohen's power tables); d is the change over the sd of log boot medians
    d = np.log1p(0.05)
    assert inference.boots_for(d, 0.05) == 17
    assert inference.boots_for(2 * d, 0.05) == 64
    assert inference.boots_for(d / 0.8, 0.05) == 26
    assert inference.boots_for(1.0, 0.05, most=50) is None


@pytest.mark.parametrize("sd", [0.03, 0.05])       # 8 boots (Welch), 21 boots (Yuen)
def test_boots_needed_gives_the_power_it_promises(sd):
    rng = np.random.default_rng(3)
    effect = 0.05
    n = inference.boots_for(sd, effect)
    assert (n >= inference.ROBUST_FROM) == (sd == 0.05)
    seen = 0
    for _ in range(2000):
        base = [np.array([np.exp(v)]) for v in rng.normal(0, sd, n)]
        cand = [np.array([np.exp(v)]) for v in rng.normal(np.log1p(effect), sd, n)]
        seen += inference.boot_interval(base, cand)[3] < 0.05
    assert 0.76 <= seen / 2000 <= 0.9        # at least 80%, give or take; the next boot down falls short


def test_from_ten_boots_the_test_is_yuens_trimmed_t():
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 0.03, 12), rng.normal(np.log1p(0.05), 0.03, 12)
    a[3] += np.log(1.5)                      # one boot the host disturbed: 50% slower
    base = [np.array([np.exp(v)]) for v in a]
    cand = [np.array([np.exp(v)]) for v in b]
    ratio, low, high, p = inference.boot_interval(base, cand)
    assert p == pytest.approx(sps.ttest_ind(b, a, equal_var=False, trim=0.2).pvalue, rel=1e-9)
    assert p < 0.05 and 1 < low < 1.05 < high
    # Welch on the same boots: the one disturbed boot hides the change
    assert sps.ttest_ind(b, a, equal_var=False).pvalue > 0.05
    # below ten boots a side the test stays Welch's
    few = inference.boot_interval(base[:9], cand[:9])
    assert few[3] == pytest.approx(sps.ttest_ind(b[:9], a[:9], equal_var=False).pvalue, rel=1e-9)


def test_the_trimmed_interval_covers_on_two_level_data():
    result = calibrate.simulate(sims=400, boots=12, reps=10, boot_sd=0.03, rep_sd=0.05,
                                methods=("rounds", "boot"))
    assert result["boot"]["coverage"] >= 0.93 and result["rounds"]["coverage"] >= 0.93


def test_rounds_cover_and_narrow_under_a_shared_drift():
    """A drift of the host that both boots of a round share: the paired interval keeps its
    coverage and is narrower than the unpaired one, which the drift widens."""
    result = calibrate.simulate(sims=1000, boots=20, reps=10, boot_sd=0.01, rep_sd=0.02,
                                drift_sd=0.05, methods=("rounds", "boot"))
    assert result["rounds"]["coverage"] >= 0.93
    assert result["rounds"]["width"] < result["boot"]["width"] / 2
