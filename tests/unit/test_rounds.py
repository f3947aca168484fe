"""Boots paired in rounds: the design's blocks in the analysis (inference.paired_interval)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.stats import mstats

from harness.analysis import inference, stats


def pairs_from(base_medians, cand_medians):
    return [(np.array([b]), np.array([c])) for b, c in zip(base_medians, cand_medians)]


def test_few_rounds_give_the_paired_t_test():
    base = [10.0, 12.0, 9.0, 11.5, 10.4]
    cand = [10.6, 12.9, 9.4, 12.1, 11.0]
    ratio, lo, hi, p = inference.paired_interval(pairs_from(base, cand))
    d = np.log(cand) - np.log(base)
    assert p == pytest.approx(sps.ttest_rel(np.log(cand), np.log(base)).pvalue)
    assert ratio == pytest.approx(np.exp(d.mean()))
    half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert (lo, hi) == pytest.approx((np.exp(d.mean() - half), np.exp(d.mean() + half)))


def test_from_ten_rounds_the_trimmed_mean_of_the_log_ratios():
    rng = np.random.default_rng(7)
    base = np.exp(rng.normal(0, 0.1, 20))
    d = rng.normal(0.05, 0.02, 20)
    d[3] = 0.9                                   # one round the host disturbed
    ratio, lo, hi, p = inference.paired_interval(pairs_from(base, base * np.exp(d)))
    # Wilcox's trimmed-mean t: scipy's trimmed mean and its standard error, df = 20 - 2*4 - 1
    mean, se = sps.trim_mean(d, 0.2), mstats.trimmed_stde(d, limits=(0.2, 0.2))
    assert ratio == pytest.approx(np.exp(mean))
    assert p == pytest.approx(2 * sps.t.sf(mean / se, 11))
    assert np.log(hi) - np.log(lo) == pytest.approx(2 * sps.t.ppf(0.975, 11) * se)
    # the disturbed round does not widen it: a plain t over the rounds would be 5 times as wide
    plain = 2 * sps.t.ppf(0.975, 19) * d.std(ddof=1) / np.sqrt(20)
    assert 1.03 < lo and hi < 1.07 and np.log(hi / lo) < plain / 5


def test_deterministic_rounds_and_too_few_rounds():
    same = inference.paired_interval(pairs_from([5.0, 5.0], [5.0, 5.0]))
    assert same == (1.0, 1.0, 1.0, 1.0)
    assert inference.paired_interval(pairs_from([5.0], [6.0])) is None
    assert inference.paired_interval(pairs_from([0.0, 1.0], [1.0, 1.0])) is None   # goes unpaired


def drifting(effect, rounds=8, drift=0.10, noise=0.005, run_ids=("r", "r")):
    """Two kernels booted in rounds; each round shifts both by a common drift of the host."""
    rng = np.random.default_rng(11)
    rows = []
    for b in range(1, rounds + 1):
        shift = rng.normal(0, drift)
        for kernel, run_id in zip(("stock", "patched"), run_ids):
            level = 1000 * np.exp(shift) * (1 + effect if kernel == "patched" else 1)
            rows += [{"kernel": kernel, "workload": "bench", "run_id": run_id, "host": "h",
                      "boot": b, "rep": i, "fork_ns": float(level * np.exp(rng.normal(0, noise)))}
                     for i in range(5)]
    return stats.add_conditions(pd.DataFrame(rows))


def test_a_drift_both_kernels_share_leaves_the_comparison():
    # a 5% change under a 10% drift between rounds: seen through the rounds ...
    row = stats.compare(drifting(0.05), "bench", base="stock: fork").iloc[0]
    assert row["verdict"].direction == "slower" and row["unit_of_replication"] == "boot (paired in 8 rounds)"
    assert 1.04 < row["ci_low"] < row["ratio"] < row["ci_high"] < 1.06
    # ... not when the same boots do not pair (two runs: no common rounds), nor in an A/A
    apart = stats.compare(drifting(0.05, run_ids=("r1", "r2")), "bench", base="stock: fork").iloc[0]
    assert apart["unit_of_replication"] == "boot" and str(apart["verdict"]).startswith("no significant")
    same = stats.compare(drifting(0.0), "bench", base="stock: fork").iloc[0]
    assert str(same["verdict"]).startswith("no significant difference") and same["ci_low"] < 1 < same["ci_high"]


def test_rounds_are_the_boots_of_one_run_host_and_index():
    df = drifting(0.05, rounds=4)
    df = df[~((df["kernel"] == "patched") & (df["boot"] == 2))]         # a boot that failed
    b, c = (df[df["condition"] == f"{k}: fork"] for k in ("stock", "patched"))
    rounds = stats.boot_values(c, "fork_ns", rounds=True)
    assert sorted(rounds) == [("r", "h", 1), ("r", "h", 3), ("r", "h", 4)]
    assert len(stats.paired(*(stats.boot_values(x, "fork_ns", rounds=True) for x in (b, c)))) == 3
    other = c.assign(host="elsewhere")
    assert stats.paired(*(stats.boot_values(x, "fork_ns", rounds=True) for x in (b, other))) == []
