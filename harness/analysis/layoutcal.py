"""`harness calibrate --layout`: A/A′, one source built as two sets of layout variants.

A and B are the same source and config; A's variants carry pads 0..V-1 and B's V..2V-1
(harness.kernel.layout), so no binary of A is a binary of B and every difference between them is
placement. The new design's verdicts (over variants) are counted as calibrate counts A/A verdicts;
beside them, every pair (a variant of A, a variant of B) judged as the design before variants
judged two binaries (boots as units, rounds paired where the pair shares them): the false-call
rate of a comparison with one variant per kernel, on this host. And each headline metric's layout
spread: the standard deviation of the variants' means (log scale) against that of boots inside a
variant, and the variants per kernel that would see the injected effect with 80% power.
"""
import numpy as np

from harness.analysis import stats, variants, verdict


def _variants(df, label):
    part = df[df["kernel"] == label]
    return sorted(int(v) for v in part["variant"].dropna().unique()) if "variant" in part else []


def variants_by(df, boots):
    """How many variants of A the first `boots` boots per label ran."""
    return len(_variants(df[df["boot"].fillna(1) <= boots], "A"))


def one_variant_each(df, metas, judged, called):
    """Every (variant of A, variant of B) judged alone, as before: {pairs, verdicts, different}."""
    out = {"pairs": [], "verdicts": 0, "different": 0}
    for a in _variants(df, "A"):
        for b in _variants(df, "B"):
            keep = ((df["kernel"] == "A") & (df["variant"] == a)) | ((df["kernel"] == "B") & (df["variant"] == b))
            table = judged(df[keep], metas=metas, layouts=False)
            if len(table):
                table = table[[v.direction != verdict.NOT_ENOUGH for v in table["verdict"]]]
            n, hit = len(table), called(table)
            out["pairs"].append({"a": a, "b": b, "verdicts": n, "different": hit,
                                 "ratios": [round(float(r), 4) for r in table["ratio"]] if n else []})
            out["verdicts"] += n
            out["different"] += hit
    return out


def spread(df, effect):
    """Per headline metric and group: the layout and boot spreads (sd, log scale) over the variants
    of both labels (one source: every variant is a draw of its placement), the layout share, and
    the variants per kernel for `effect` at 80% power with the boots per variant measured."""
    rows = []
    for workload in dict.fromkeys(df["workload"]):
        for params, part in stats.groups(df, workload):
            plain = part[part["kind"] == stats.PLAIN]
            for metric in stats.headline(workload):
                if metric not in plain:
                    continue
                by = {(label, v): stats.boot_values(recs, metric)
                      for (label, v), recs in plain.groupby(["kernel", "variant"])}
                by = {k: b for k, b in by.items() if b}
                if len(by) < 2:
                    continue
                got = variants.split(by)
                per = float(np.mean([len(b) for b in by.values()]))
                boot = 0.0 if np.isnan(got["boot"]) else got["boot"]
                rows.append({"workload": workload, "metric": metric, **params, "variants": len(by),
                             "layout_sd": float(np.sqrt(got["layout"])), "boot_sd": float(np.sqrt(boot)),
                             "layout_share": got["layout_share"],
                             "variants_needed": variants.variants_needed(got["layout"], boot, effect,
                                                                         max(per, 1))})
    return rows


def analyse(df, metas, effect, judged, called):
    return {"layout": {"variants": {"A": _variants(df, "A"), "B": _variants(df, "B")},
                       "one_variant_each": one_variant_each(df, metas, judged, called),
                       "spread": spread(df, effect)}}


def render(result):
    lay = result.get("layout")
    if not lay:
        return []
    one, aa = lay["one_variant_each"], result["aa"]
    share = (lambda a, b: f"{a / b:.1%}" if b else "–")
    lines = [f"A/A′ (one source, layout variants {lay['variants']['A']} as A and {lay['variants']['B']} as B):",
             f"  new design, over variants: {aa['different']} of {aa['verdicts']} verdicts call A and B "
             f"different ({share(aa['different'], aa['verdicts'])})",
             f"  one variant per label, judged as before ({len(one['pairs'])} pairs of variants): "
             f"{one['different']} of {one['verdicts']} verdicts call them different "
             f"({share(one['different'], one['verdicts'])})",
             f"  layout spread on this host (sd of the variants' mean log boot median; boots: sd inside "
             f"a variant); variants per kernel to see +{result['effect']:.1%} with 80% power:"]
    for r in lay["spread"]:
        where = ", ".join(f"{k} {v}" for k, v in r.items() if k not in (
            "workload", "metric", "variants", "layout_sd", "boot_sd", "layout_share", "variants_needed"))
        share_text = "–" if np.isnan(r["layout_share"]) else f"{r['layout_share']:.0%}"
        need = r["variants_needed"]
        lines.append(f"    {r['workload']} {r['metric']} ({where}): layout {r['layout_sd']:.1%}, boots "
                     f"{r['boot_sd']:.1%}, layout share {share_text} over {r['variants']} variants -> "
                     + (f"{need}" if need <= 200 else "more than 200"))
    return lines
