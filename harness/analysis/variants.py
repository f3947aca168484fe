"""Layout variants as the top level of a kernel's measurements: variant > boot > repetition.

Two different binaries differ in where the linker put every function as well as in what the
change does, and under TCG (and, less, on hardware: i-cache, iTLB, branch predictors) placement
alone moves a fork's time by more than the changes this harness looks for. So a kernel built as
several layout variants (harness.kernel.layout: the same code at other addresses) is summarised
per variant, the mean of its boots' log medians, and two kernels are compared over their variants:
the difference of the means of the variants' means, with a pooled two-sample t over them (df =
variants on both sides - 2). The layout spread is a property of the host and the mechanism, not of
either kernel, so one variance is estimated from both. This is the classical analysis of a nested
design with the variant as the random unit (the boots and repetitions inside a variant only make
its mean more precise); `split` gives the shares of the variance at each level, by the method of
moments on the per-boot log medians.

A comparison between two different binaries in real time with one variant on a side has no
measured layout spread: it gets no faster/slower (`UNJUDGED`), as one with one boot per kernel has
no measured boot-to-boot spread.
"""
import numpy as np

from harness.analysis import verdict

TIME_UNITS = ("ns", "us", "ms", "s")


def variant_means(by_variant):
    """{variant: mean log median of its boots} (boots with a non-positive median left out)."""
    out = {}
    for v, boots in by_variant.items():
        meds = np.array([np.median(b) for b in boots if len(b)])
        meds = meds[meds > 0]
        if len(meds):
            out[v] = float(np.log(meds).mean())
    return out


def interval(base, cand, alpha=0.05):
    """(ratio, low, high, p, dof) over variants, or None when a side has fewer than two.
    base, cand: {variant: [per-boot arrays]}."""
    mb, mc = np.array(list(variant_means(base).values())), np.array(list(variant_means(cand).values()))
    nb, nc = len(mb), len(mc)
    if min(nb, nc) < 2:
        return None
    diff = mc.mean() - mb.mean()
    dof = nb + nc - 2
    pooled = (((mb - mb.mean()) ** 2).sum() + ((mc - mc.mean()) ** 2).sum()) / dof
    se = np.sqrt(pooled * (1 / nb + 1 / nc))
    if se <= 0:
        r = float(np.exp(diff))
        return r, r, r, 1.0 if abs(diff) < 1e-12 else 0.0, dof
    from scipy import special      # here: the plots' process never loads scipy
    t = special.stdtrit(dof, 1 - alpha / 2)          # scipy.stats.t.ppf
    p = float(2 * special.stdtr(dof, -abs(diff) / se))   # 2 * t.sf
    return float(np.exp(diff)), float(np.exp(diff - t * se)), float(np.exp(diff + t * se)), p, dof


def split(by_variant):
    """How the variance of the log boot medians splits: {"layout": var between variants,
    "boot": var between boots of one variant, "layout_share": layout / (layout + boot)}; NaN where
    a level has too few units (two variants, or no variant with two boots)."""
    logs = {v: np.log([m for m in (np.median(b) for b in boots if len(b)) if m > 0])
            for v, boots in by_variant.items()}
    logs = {v: x for v, x in logs.items() if len(x)}
    nan = {"layout": np.nan, "boot": np.nan, "layout_share": np.nan}
    with_two = [x for x in logs.values() if len(x) >= 2]
    boot = float(np.mean([x.var(ddof=1) for x in with_two])) if with_two else np.nan
    if len(logs) < 2:
        return {**nan, "boot": boot}
    means = np.array([x.mean() for x in logs.values()])
    per = np.mean([1 / len(x) for x in logs.values()])
    layout = float(means.var(ddof=1) - (0 if np.isnan(boot) else boot * per))
    layout = max(layout, 0.0)
    whole = layout + (0 if np.isnan(boot) else boot)
    return {"layout": layout, "boot": boot,
            "layout_share": layout / whole if whole > 0 and not np.isnan(boot) else np.nan}


def variants_needed(layout_var, boot_var, effect, boots_per_variant=1, power=0.8, alpha=0.05, most=200):
    """The fewest variants per kernel with which the pooled t over variants sees a change of
    `effect` (a fraction) with the given power (a normal approximation with the t quantile of the
    degrees of freedom reached); `most` + 1 when even `most` do not."""
    from scipy import special
    unit = layout_var + boot_var / boots_per_variant
    if not unit > 0:
        return 2
    delta = abs(np.log1p(effect))
    for v in range(2, most + 1):
        se = np.sqrt(unit * 2 / v)
        t = special.stdtrit(2 * v - 2, 1 - alpha / 2)
        if special.ndtr(delta / se - t) >= power:      # scipy.stats.norm.cdf
            return v
    return most + 1


def is_time(unit):
    """Times and rates: what the placement of code can move (memory counters it cannot)."""
    return unit in TIME_UNITS or str(unit).endswith("/s")


def judge(row, base, cand, unit, real, different, alpha=0.05):
    """A comparison row (stats.compare_samples) made over layout variants where both sides have
    two or more ({variant: [per-boot arrays]} each), or marked with the level whose spread it
    did not measure (row["spread"]: "1 boot", "1 layout"); only times and rates measured in real
    time (icount counts instructions, which placement does not change). The verdict is left to
    stats.decide."""
    if not (real and is_time(unit)):
        return row
    row["variants"] = f"{max(len(base), 1)}/{max(len(cand), 1)}"
    got = interval(base, cand, alpha) if len(base) > 1 and len(cand) > 1 else None
    if got:
        ratio, low, high, p, dof = got
        shares = [split(x)["layout_share"] for x in (base, cand)]
        row.update(ratio=ratio, ci_low=low, ci_high=high, p_value=p, q_value=p, rounds=0,
                   unit_of_replication=f"layout variant ({len(base)}+{len(cand)}, df {dof})",
                   layout_share=np.nanmax(shares) if not all(np.isnan(shares)) else np.nan)
    elif row.get("unit_of_replication", "").startswith("repetition"):
        row["spread"] = "1 boot"
    elif different:
        row["spread"] = "1 layout"
    return row


def binaries(run, label):
    """The build keys a kernel of a run (a stored.Run) was measured as (one per variant; [] when unknown)."""
    info = run.kernels[label].facts if label in run.kernels else {}
    keys = [v.get("build_key") for v in info.get("variants") or []]
    return sorted(k for k in keys if k) or ([info["build_key"]] if info.get("build_key") else [])


def different_binaries(metas, base, cand):
    """True when the kernels of two conditions of these runs were measured as different binaries
    (their build keys, every variant's, differ); False when a run's metadata does not say."""
    keys = {}
    base, cand = base.split(": ")[0], cand.split(": ")[0]     # conditions: "kernel: kind"
    for label in (base, cand):
        for m in metas:
            if label in m.kernels:
                keys[label] = binaries(m, label)
    if not (keys.get(base) and keys.get(cand)):
        return False
    return keys[base] != keys[cand]


METHOD_TEXT = ("Between two binaries measured in real time as several layout variants each "
               "(boots: \"layout variant (a+b, df)\"), the ratio, interval and p come from a pooled t "
               "over the variants' mean log boot medians instead; layout: the share of the variance of "
               "the boot medians that lies between variants. A time compared without its boot-to-boot "
               "spread (one boot per kernel) or, between two binaries, without its layout spread (one "
               "variant per kernel) is \"not judged\": its ratio and the design that would judge it.")


UNJUDGED = verdict.UNJUDGED

