"""Layout variants: the pads, the variant commits, and the statistics with the variant on top."""
import numpy as np
import pandas as pd
import pytest

from harness import stored
from harness.analysis import stats, variants
from harness.errors import InfraError
from harness.kernel import build, layout


def test_pads_move_code_by_other_offsets_in_a_cache_line_and_a_page():
    pads = [layout.pad(i) for i in range(1, 4)]
    assert layout.pad(0) == 0
    assert len({p % 64 for p in pads}) == 3 and 0 not in {p % 64 for p in pads}
    assert len({p % 4096 for p in pads}) == 3 and all(p % 16 == 0 for p in pads)


def test_variants_take_turns_over_the_boots():
    assert [layout.of_boot(b, 3) for b in range(1, 8)] == [0, 1, 2, 0, 1, 2, 0]
    assert layout.indices(4, 3) == [4, 5, 6] and layout.indices(0, None) == [0]


SCRIPT = """ .text : AT(ADDR(.text) - 0xffffffff80000000) {
  _text = .;
  _stext = .;
  KEEP(*(.head.text))
  . = ALIGN(8); *(.text.hot .text.hot.*) *(.text .text.fixup)
"""


def test_the_pad_goes_after_the_head_code_and_nowhere_else():
    out = build.padded(SCRIPT, 4176)
    assert out.replace(" . = . + 4176; /* kernel-harness layout variant */", "") == SCRIPT
    assert out.index("4176") > out.index("KEEP(*(.head.text))") and out.count(". + 4176") == 1
    with pytest.raises(InfraError, match="cannot take a layout pad"):
        build.padded("SECTIONS { }", 16)


def test_every_build_sets_its_own_pad_so_a_killed_relink_leaves_none_behind(tmp_path):
    """A variant's relink killed half-way leaves the padded script in the base's object folder,
    newer than its sources: make would link the next kernel built there with the pad. Every build
    puts the script as it wants it first (none, or its own pad), and only rewrites it on a change."""
    script = tmp_path / build.LINK_SCRIPT
    script.parent.mkdir(parents=True)
    script.write_text(build.padded(SCRIPT, 8352))           # left by a killed variant's relink
    build.link_script(tmp_path, 0)
    assert script.read_text() == SCRIPT
    build.link_script(tmp_path, 4176)
    assert script.read_text() == build.padded(SCRIPT, 4176)
    before = script.stat().st_mtime_ns
    build.link_script(tmp_path, 4176)                        # unchanged: not written (no relink)
    assert script.stat().st_mtime_ns == before
    build.link_script(tmp_path / "fresh", 4176)              # no script yet: nothing to do


def test_variants_link_in_the_folder_holding_the_base_build(tmp_path, monkeypatch):
    """The slot whose last finished build is the base kernel is found by key whatever slot a new
    build would choose (a copy elsewhere would compile every object again)."""
    import json
    from harness.kernel import workbench
    bench = workbench.Bench(tmp_path / "repo", tmp_path / "bench")
    (bench.path / "obj").mkdir(parents=True)
    for slot, key, status in (("0", "other", "ok"), ("1", "base", "failed"), ("2", "base", "ok")):
        (bench.path / "obj" / f"{slot}.json").write_text(json.dumps({"key": key, "status": status}))
    assert workbench.holding(bench, "base") == "2"
    assert workbench.holding(bench, "missing") is None


def write_map(path, shift, moved=("copy_page_range", "schedule")):
    rows = [("ffffffff81000000", "T", "startup_64")]
    rows += [(f"{0xffffffff81001000 + i * 0x100 + shift:016x}", "T", name) for i, name in enumerate(moved)]
    rows += [("ffffffff82000000", "D", "some_data")]
    path.write_text("".join(f"{a} {t} {n}\n" for a, t, n in rows))
    return path


def test_the_move_is_checked_on_the_system_map(tmp_path):
    base = write_map(tmp_path / "a.map", 0)
    assert layout.check(base, write_map(tmp_path / "b.map", 4176), 4176) == ["copy_page_range", "schedule"]
    with pytest.raises(InfraError, match="did not move by 4176"):
        layout.check(base, write_map(tmp_path / "c.map", 0), 4176)
    with pytest.raises(InfraError, match="no known symbol"):
        layout.check(base, write_map(tmp_path / "d.map", 4176, moved=("other",)), 4176)


def records(effects, layout_sd, boots=2, reps=5, seed=3, boot_sd=0.01, rep_sd=0.01, timing="real"):
    """Kernels A and B, each len(effects[k]) variants; every variant's placement effect drawn with
    layout_sd; boots in rounds over the variants."""
    rng = np.random.default_rng(seed)
    rows = []
    for kernel, effect in effects.items():
        n = 4
        lays = rng.normal(0, layout_sd, n)
        for b in range(1, n * boots + 1):
            v = layout.of_boot(b, n)
            level = 1e6 * (1 + effect) * np.exp(lays[v] + rng.normal(0, boot_sd))
            rows += [{"kernel": kernel, "workload": "fork-latency", "run_id": "r", "host": "h", "boot": b,
                      "variant": v, "timing": timing, "rep": i, "size_mib": 64,
                      "fork_ns": float(level * np.exp(rng.normal(0, rep_sd)))} for i in range(reps)]
    return stats.add_conditions(pd.DataFrame(rows))


META = [stored.run_of({"kernels": {"A": {"build_key": "a", "variants": [{"build_key": "a0"}, {"build_key": "a1"}]},
                                   "B": {"build_key": "b", "variants": [{"build_key": "b0"}, {"build_key": "b1"}]}}})]


def test_two_binaries_are_compared_over_their_variants():
    df = records({"A": 0.0, "B": 0.0}, layout_sd=0.08)
    row = stats.compare(df, "fork-latency", base="A: fork", metas=META, only=["fork_ns"]).iloc[0]
    assert row["unit_of_replication"] == "layout variant (4+4, df 6)" and row["variants"] == "4/4"
    assert row["ci_high"] / row["ci_low"] > 1.08            # the placement spread is in the interval
    # the same data judged as before (boots paired in rounds, placement ignored) calls a difference
    old = stats.compare(df, "fork-latency", base="A: fork", metas=META, only=["fork_ns"], layouts=False).iloc[0]
    assert old["unit_of_replication"].startswith("boot (paired")
    assert old["ci_high"] / old["ci_low"] < row["ci_high"] / row["ci_low"]
    desc = stats.describe(df, "fork-latency")
    assert desc["layout_share"].dropna().between(0.5, 1).all()


def test_the_pooled_t_over_variants_holds_its_false_call_rate():
    rng = np.random.default_rng(5)
    calls = 0
    for _ in range(400):
        side = lambda: {v: [rng.normal(np.exp(rng.normal(0, 0.1)), 0.01, 5)] for v in range(3)}
        ratio, low, high, p, dof = variants.interval(side(), side())
        calls += p < 0.05
        assert dof == 4 and low < ratio < high
    assert calls / 400 < 0.09


def test_one_variant_between_two_binaries_in_real_time_gets_no_direction():
    df = records({"A": 0.0, "B": 0.10}, layout_sd=0.0)
    one = df[df["variant"] == 0]
    row = stats.compare(one, "fork-latency", base="A: fork", metas=META, only=["fork_ns"]).iloc[0]
    assert str(row["verdict"]).startswith("not judged [1 layout]: ratio 1.1")
    assert row["verdict"].direction == "not judged" and "--variants" in str(row["verdict"])
    same = [stored.run_of({"kernels": {"A": {"build_key": "k"}, "B": {"build_key": "k"}}})]     # one binary, two labels
    assert stats.compare(one, "fork-latency", base="A: fork", metas=same, only=["fork_ns"]).iloc[0]["verdict"].direction == "slower"
    icount = records({"A": 0.0, "B": 0.10}, layout_sd=0.0, timing="icount")
    icount = icount[icount["variant"] == 0]
    assert stats.compare(icount, "fork-latency", base="A: fork", metas=META).iloc[0]["verdict"].direction == "slower"


def test_one_boot_per_kernel_in_real_time_gets_no_direction():
    df = records({"A": 0.0, "B": 0.10}, layout_sd=0.0)
    one = df[df["boot"] == 1]
    same = [stored.run_of({"kernels": {"A": {"build_key": "k"}, "B": {"build_key": "k"}}})]
    row = stats.compare(one, "fork-latency", base="A: fork", metas=same, only=["fork_ns"]).iloc[0]
    assert str(row["verdict"]).startswith("not judged [1 boot]: ratio 1.1") and "--boots" in str(row["verdict"])
    icount = records({"A": 0.0, "B": 0.10}, layout_sd=0.0, timing="icount")
    row = stats.compare(icount[icount["boot"] == 1], "fork-latency", base="A: fork", metas=same).iloc[0]
    assert row["verdict"].direction == "slower" and row["verdict"].repetitions          # icount: deterministic, repetitions suffice


def test_layout_spread_and_the_variants_it_needs():
    by = {v: [np.full(5, np.exp(x)), np.full(5, np.exp(x + 0.01))] for v, x in enumerate([0, 0.1, -0.1, 0.05])}
    got = variants.split(by)
    assert 0.005 < got["layout"] < 0.01 and got["layout_share"] > 0.9
    assert variants.variants_needed(0.0, 0.0001, 0.05) == 3       # df 2 at two: t is 4.3
    assert variants.variants_needed(0.1 ** 2, 0.0, 0.05) > 50


def test_calibrate_layout_counts_both_designs_and_the_spread(tmp_path, monkeypatch):
    """A/A′ on synthetic data with a 10% layout spread: the design over variants is judged as A/A
    verdicts are, every pair of single variants as before, and the spread is found."""
    from harness.analysis import calibrate
    df = records({"A": 0.0, "B": 0.0}, layout_sd=0.10, boots=2)
    df.loc[df["kernel"] == "B", "variant"] += 4                    # B's pads are other than A's
    run = layout_run(tmp_path, df)
    result = calibrate.analyse(run, effect=0.05)
    lay = result["layout"]
    assert lay["variants"] == {"A": [0, 1, 2, 3], "B": [4, 5, 6, 7]}
    assert len(lay["one_variant_each"]["pairs"]) == 16 and lay["one_variant_each"]["verdicts"] == 16
    # A against A: no difference called, and the interval as wide as a 10% layout spread makes it
    assert result["aa"]["verdicts"] == 1
    assert result["aa"]["rows"][0]["verdict"] == "no significant difference (none > 31.0%)"
    (spread,) = lay["spread"]
    assert spread["variants"] == 8 and 0.04 < spread["layout_sd"] < 0.2 and spread["variants_needed"] > 10
    assert [p["variants"] for p in result["power"]] == [1, 2, 3, 4, 4, 4, 4, 4]
    text = calibrate.render(result)
    assert "one variant per label, judged as before (16 pairs of variants)" in text
    assert "new design, over variants: " in text and "layout share" in text


def test_the_cv_summary_of_a_run_over_variants_names_groups_by_their_parameters_only(tmp_path):
    """The layout share is a column of the description, not a parameter of the group: the CV
    lines of a run over variants must not print it as one (they did: `layout_share=0.7009...`)."""
    from harness.analysis import report
    df = records({"A": 0.0, "B": 0.0}, layout_sd=0.10, boots=2)
    lines = report.cv_summary(layout_run(tmp_path, df)).splitlines()[1:]
    assert len(lines) == 2 and all("size_mib=64" in line for line in lines)
    assert not any("layout_share" in line for line in lines)


def layout_run(root, df):
    """A run folder of labels A and B, 4 layout variants each, holding df's fork-latency records."""
    from tests.unit import runs
    keep = ["boot", "variant", "rep", "size_mib", "fork_ns", "host", "timing"]
    recs = {(label, "fork-latency"): [{k: (int(v) if k in ("boot", "variant", "rep", "size_mib") else v)
                                       for k, v in r.items()} for r in part[keep].to_dict("records")]
            for label, part in df.groupby("kernel")}
    return runs.build(root, "r", {label: {"build_key": label, "variants": [{"build_key": f"{label}{v}"}
                                                                           for v in range(4)]}
                                  for label in ("A", "B")}, recs, design={"variants": 4})
