"""Inference with boots as the unit of replication, and error control over a family of tests.

A kernel's measurements have levels: the boot (page placement, which host cores the vCPUs land on,
TCG's translation cache) and the repetitions inside one boot. The repetitions of one boot are not
independent draws of the kernel: a bootstrap over them alone reports an interval as if the
boot-to-boot variation did not exist (Kalibera and Jones, ISMM 2013). Here a kernel's sample is a
list of boots, each an array of repetitions, and:

- where the boots pair up in rounds (one boot of each kernel, neighbours in time: the design's
  blocks), the ratio, interval and p come from the rounds' log ratios (`paired_interval`): the
  host's drift, shared by both kernels of a round, drops out of the comparison;
- otherwise the ratio of two kernels is the ratio of the geometric means of their per-boot
  medians, and its 95% interval and p value come from Welch's t on the log per-boot medians (boots as units;
  on the raw medians, the interval divided by the baseline's mean, where a value can be zero);
  from ROBUST_FROM boots on each side Yuen's trimmed t instead (20% of the boots trimmed at each
  end, the trimmed means' difference, winsorised variances): a boot whose whole run was disturbed
  by the host (seen here: a boot 50% slower than its kernel's others) no longer widens every
  interval; with fewer boots trimming leaves too few to estimate a variance, and Welch stays;
  with one boot on one side the other side's boot variance stands for both; with one boot on
  each side there is no boot-level variance to use and the interval is a bootstrap over
  repetitions, labelled so by the caller;
- `hierarchical_bootstrap` resamples boots, then repetitions inside each chosen boot (the
  two-level bootstrap), and `sample_bootstrap` resamples repetitions only (what this harness used
  to do); `harness calibrate --simulate` compares the three intervals' coverage on simulated
  two-level data;
- `adjust` turns a family's p values into Holm (family-wise error) or Benjamini-Hochberg (false
  discovery rate) adjusted ones.
"""
import numpy as np


METHODS = ("bh", "holm", "none")
ROBUST_FROM = 10      # boots per side from which the boot-level test is Yuen's trimmed t
TRIM = 0.2            # the share of boots trimmed at each end by Yuen's test
TRIMMED_EFFICIENCY = 0.9    # a 20%-trimmed mean's efficiency with 10-30 boots, normal data (0.94 asymptotically)


def as_boots(boots):
    """A list of non-empty float arrays (one per boot)."""
    out = [np.asarray(b, float) for b in boots]
    return [b[~np.isnan(b)] for b in out if np.count_nonzero(~np.isnan(b))]


def cliffs_delta(base, cand):
    """P(cand > base) - P(cand < base), in [-1, 1]: also the rank-biserial correlation."""
    return float(np.sign(np.subtract.outer(cand, base)).mean())


def cv(x):
    mean = np.mean(x)
    return float(np.std(x, ddof=1) / mean) if len(x) > 1 and mean else 0.0


def boot_medians(boots):
    return np.array([np.median(b) for b in boots])


def variance_split(boots):
    """How the variance of log values splits between boots and within a boot (one-way
    random-effects ANOVA): {"between": var, "within": var, "share": between / total}; the share
    is NaN with fewer than two boots or no within-boot spread to compare with."""
    boots = [np.log(b[b > 0]) for b in as_boots(boots)]
    boots = [b for b in boots if len(b)]
    nan = {"between": np.nan, "within": np.nan, "share": np.nan}
    if len(boots) < 2:
        return nan
    sizes = np.array([len(b) for b in boots], float)
    total = sizes.sum()
    if total <= len(boots):
        # one value per boot: all of the variance is between boots
        between = float(np.var([b[0] for b in boots], ddof=1))
        return {"between": between, "within": np.nan, "share": 1.0 if between > 0 else np.nan}
    grand = np.concatenate(boots).mean()
    msb = sum(n * (b.mean() - grand) ** 2 for n, b in zip(sizes, boots)) / (len(boots) - 1)
    msw = sum(((b - b.mean()) ** 2).sum() for b in boots) / (total - len(boots))
    n0 = (total - (sizes ** 2).sum() / total) / (len(boots) - 1)
    between = max(0.0, (msb - msw) / n0)
    whole = between + msw
    return {"between": float(between), "within": float(msw),
            "share": float(between / whole) if whole > 0 else np.nan}


def boot_interval(base, cand, alpha=0.05):
    """(ratio, low, high, p) from the log per-boot medians, or None when both sides have one boot.

    ratio = exp(mean log median(cand boot) - mean log median(base boot)); the interval is Welch's
    t interval of that difference, and p its two-sided test. Identical boots on both sides (a
    deterministic mode) give a zero-width interval: p is 1 when the ratio is exactly 1, else 0."""
    mb, mc = boot_medians(base), boot_medians(cand)
    nb, nc = len(mb), len(mc)
    if min(nb, nc) < 1 or max(nb, nc) < 2:
        return None
    if not ((mb > 0).all() and (mc > 0).all()):
        return _raw_interval(mb, mc, alpha)
    lb, lc = np.log(mb), np.log(mc)
    diff, se2, dof = _yuen(lb, lc) if min(nb, nc) >= ROBUST_FROM else _welch(lb, lc)
    return _log_interval(diff, se2, dof, alpha)


def paired_interval(pairs, alpha=0.05):
    """(ratio, low, high, p) over rounds: `pairs` holds, per round (the boots of one run, host
    and boot index: neighbours in time), (base boot, candidate boot). The rounds are the blocks
    of the design, so the host's drift from round to round, which both kernels of a round share,
    leaves the comparison: d = log median(cand) - log median(base) per round, Student's t on d
    (df n - 1), and from ROBUST_FROM rounds the 20%-trimmed mean of d with its winsorised
    variance (Wilcox's trimmed-mean t; df h - 1 on the h kept). ratio = exp(mean or trimmed mean of d).
    None when fewer than two rounds or a median is not positive (the caller goes unpaired)."""
    d = log_ratios(pairs)
    if d is None or len(d) < 2:
        return None
    n = len(d)
    if n >= ROBUST_FROM:          # Wilcox's trimmed-mean t: s_w / ((1 - 2 trim) sqrt(n)), df h - 1
        diff, winvar, kept = _trimmed(d)
        se2, dof = winvar / ((1 - 2 * TRIM) ** 2 * n), kept - 1
    else:
        diff, se2, dof = d.mean(), d.var(ddof=1) / n, n - 1
    return _log_interval(diff, se2, dof, alpha)


def log_ratios(pairs):
    """Per round, log median(candidate boot) - log median(base boot); None when a median is not
    positive (a log ratio then has no meaning)."""
    mb, mc = boot_medians([b for b, _ in pairs]), boot_medians([c for _, c in pairs])
    if not ((mb > 0).all() and (mc > 0).all()):
        return None
    return np.log(mc) - np.log(mb)


def _log_interval(diff, se2, dof, alpha):
    """(ratio, low, high, p) of a difference of logs with its squared standard error; a zero
    standard error (a deterministic mode) gives a zero-width interval, p 1 at exactly no change."""
    if se2 <= 0:
        r = float(np.exp(diff))
        return r, r, r, 1.0 if abs(diff) < 1e-12 else 0.0
    t, p = _t_and_p(diff, se2, dof, alpha)
    se = np.sqrt(se2)
    return float(np.exp(diff)), float(np.exp(diff - t * se)), float(np.exp(diff + t * se)), p


def _trimmed(x, trim=TRIM):
    """(trimmed mean, winsorised variance, values kept)."""
    x = np.sort(x)
    n, g = len(x), int(np.floor(trim * len(x)))
    wins = np.clip(x, x[g], x[n - g - 1])
    return x[g:n - g].mean(), wins.var(ddof=1), n - 2 * g


def _welch(lb, lc):
    """(difference of means, its squared standard error, degrees of freedom). With one value on
    one side the other side's variance stands for both."""
    nb, nc = len(lb), len(lc)
    diff = lc.mean() - lb.mean()
    if min(nb, nc) >= 2:
        vb, vc = lb.var(ddof=1) / nb, lc.var(ddof=1) / nc
        se2 = vb + vc
        dof = se2 ** 2 / ((vb ** 2 / (nb - 1)) + (vc ** 2 / (nc - 1))) if se2 > 0 else nb + nc - 2
        return diff, se2, dof
    many = lb if nb > 1 else lc
    return diff, many.var(ddof=1) * (1 / nb + 1 / nc), len(many) - 1


def _yuen(lb, lc, trim=TRIM):
    """Yuen's test: (difference of the trimmed means, its squared standard error from the
    winsorised variances, Welch-Satterthwaite degrees of freedom on the kept counts)."""
    (mb, vb, hb), (mc, vc, hc) = _trimmed(lb, trim), _trimmed(lc, trim)
    db = (len(lb) - 1) * vb / (hb * (hb - 1))
    dc = (len(lc) - 1) * vc / (hc * (hc - 1))
    se2 = db + dc
    dof = se2 ** 2 / (db ** 2 / (hb - 1) + dc ** 2 / (hc - 1)) if se2 > 0 else hb + hc - 2
    return mc - mb, se2, dof


def _t_and_p(diff, se2, dof, alpha):
    # scipy.special, not scipy.stats (a third of a report's time was importing scipy.stats): t.ppf
    # is special.stdtrit and t.sf special.stdtr, the functions scipy.stats calls, so the same
    # numbers; imported here, so that the plots' process never loads scipy
    from scipy import special
    se = np.sqrt(se2)
    return special.stdtrit(dof, 1 - alpha / 2), float(2 * special.stdtr(dof, -abs(diff) / se))


def boots_for(sd, effect, power=0.8, alpha=0.05, most=500, paired=False):
    """The fewest boots per kernel with which the boot-level test (as boot_interval makes it, equal
    boots and spread on both sides) sees a change of `effect` (a fraction) with the given power,
    when per-boot log medians have standard deviation `sd`; None beyond `most`. From ROBUST_FROM
    boots the test is the trimmed one: the trimmed mean's efficiency under normal data (0.9 at 20%
    trimming) widens its standard error, and only the kept boots give degrees of freedom. paired:
    the test over rounds (paired_interval), `sd` being that of the rounds' log ratios."""
    from scipy import stats as sps          # the noncentral t: for calibrate only
    delta = abs(np.log1p(effect))
    if sd <= 0:
        return 2
    for n in range(2, most + 1):
        kept, spread = n, sd
        if n >= ROBUST_FROM:
            kept, spread = n - 2 * int(np.floor(TRIM * n)), sd / np.sqrt(TRIMMED_EFFICIENCY)
        dof = kept - 1 if paired else 2 * kept - 2
        crit = sps.t.ppf(1 - alpha / 2, dof)
        shift = delta / (spread * (np.sqrt(1 / n) if paired else np.sqrt(2 / n)))
        # the far tail (the change seen with the wrong sign) can come out NaN: it is ~0 there
        far = np.nan_to_num(sps.nct.cdf(-crit, dof, shift))
        if sps.nct.sf(crit, dof, shift) + far >= power:
            return n
    return None


def _raw_interval(mb, mc, alpha):
    """boot_interval for values that can be zero (page-table growth with a feature that shares tables): Welch's t on
    the raw per-boot medians, the interval divided by the baseline's mean."""
    base = mb.mean()
    if base == 0:
        return None
    diff, se2, dof = _welch(mb, mc)
    ratio = float(mc.mean() / base)
    if se2 <= 0:
        return ratio, ratio, ratio, 1.0 if diff == 0 else 0.0
    t, p = _t_and_p(diff, se2, dof, alpha)
    half = t * np.sqrt(se2) / abs(base)
    return ratio, ratio - half, ratio + half, p


def _padded(boots):
    width = max(len(b) for b in boots)
    data = np.full((len(boots), width), np.nan)
    for i, b in enumerate(boots):
        data[i, :len(b)] = b
    return data, np.array([len(b) for b in boots])


def _resampled_medians(boots, resamples, rng, two_level):
    """Medians of `resamples` resamples of the pooled repetitions: boots drawn with replacement
    (two_level) or kept, then repetitions drawn with replacement inside each boot."""
    data, sizes = _padded(boots)
    k, width = data.shape
    chosen = rng.integers(0, k, (resamples, k)) if two_level else np.broadcast_to(np.arange(k), (resamples, k))
    n = sizes[chosen]                                       # (resamples, k)
    idx = np.floor(rng.random((resamples, k, width)) * n[..., None]).astype(int)
    picked = data[chosen[..., None], idx]                   # (resamples, k, width)
    picked[np.arange(width)[None, None, :] >= n[..., None]] = np.nan
    return np.nanmedian(picked.reshape(resamples, -1), axis=1)


def _percentile_ratio(mb, mc, resamples):
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = mc / mb
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) < resamples / 2:
        return np.nan, np.nan
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def hierarchical_bootstrap(base, cand, resamples=2000, seed=0):
    """95% interval of median(cand)/median(base): boots resampled, then repetitions in each."""
    rng = np.random.default_rng(seed)
    mb = _resampled_medians(as_boots(base), resamples, rng, two_level=True)
    mc = _resampled_medians(as_boots(cand), resamples, rng, two_level=True)
    return _percentile_ratio(mb, mc, resamples)


def sample_bootstrap(base, cand, resamples=2000, seed=0):
    """95% interval of median(cand)/median(base), every repetition an independent sample (boots
    pooled): right only when there is no boot-to-boot variation."""
    rng = np.random.default_rng(seed)
    b = np.concatenate(as_boots(base))
    c = np.concatenate(as_boots(cand))
    mb = np.median(rng.choice(b, (resamples, len(b))), axis=1)
    mc = np.median(rng.choice(c, (resamples, len(c))), axis=1)
    return _percentile_ratio(mb, mc, resamples)


def _finite_only(step):
    """Apply an adjustment to the non-NaN p values of a family; NaN stays NaN (not tested)."""
    def adjusted(p):
        p = np.asarray(p, float)
        out = np.full(p.shape, np.nan)
        ok = ~np.isnan(p)
        if ok.any():
            q = p[ok]
            order = np.argsort(q, kind="stable")
            res = np.empty(len(q))
            res[order] = np.minimum(step(q[order], len(q)), 1.0)
            out[ok] = res
        return out
    adjusted.__doc__ = step.__doc__
    return adjusted


@_finite_only
def holm(ranked, m):
    """Holm's step-down adjusted p values (family-wise error), NaN kept as NaN."""
    return np.maximum.accumulate((m - np.arange(m)) * ranked)


@_finite_only
def bh(ranked, m):
    """Benjamini-Hochberg adjusted p values (false discovery rate), NaN kept as NaN."""
    return np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]


def adjust(p, method="bh"):
    if method == "bh":
        return bh(p)
    if method == "holm":
        return holm(p)
    if method == "none":
        return np.asarray(p, float)
    raise ValueError(f"unknown multiplicity method {method!r} (known: {', '.join(METHODS)})")


TEST_TEXT = (f"a paired t over the rounds of boots (log ratio of the two kernels' boot medians "
             f"per round; its {TRIM:.0%}-trimmed mean from {ROBUST_FROM} rounds on), or, where "
             f"boots do not pair, Welch's t on the log per-boot medians (Yuen's trimmed t from "
             f"{ROBUST_FROM} boots per kernel on)")
METHOD_TEXT = {"bh": "Benjamini-Hochberg (false discovery rate)",
               "holm": "Holm (family-wise error)", "none": "no correction"}


def median_ci(x, resamples=2000, seed=0):
    """Bootstrap 95% CI of the median of x."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return (float(x[0]), float(x[0])) if len(x) else (np.nan, np.nan)
    meds = np.median(np.random.default_rng(seed).choice(x, (resamples, len(x))), axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return float(lo), float(hi)
