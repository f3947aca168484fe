"""Per-patch attribution: the table, the verdicts, the binary search, the inputs (no kernel)."""
import subprocess

import numpy as np
import pytest

from harness import attribute, cli, feature
from harness.analysis import stats, steps
from harness.kernel import kconfig
from harness.errors import UserError
from harness.experiment import Experiment, KernelSpec, WorkloadSpec
from tests.unit import runs

PROFILE = feature.load("cow-pte")

STEPS = [{"index": 0, "title": "stock", "kernels": {"y": "stock", "n": "stock"}, "shared": "y=n"},
         {"index": 1, "title": "add the option", "kernels": {"y": "p01-y", "n": "p01-n"}},
         {"index": 2, "title": "a slow fork", "kernels": {"y": "p02-y", "n": "p02-n"}},
         {"index": 3, "title": "enable COW PTE", "kernels": {"y": "p03-y", "n": "p03-n"}}]


def fake_run(tmp_path, figures, boots=1, reps=6, spread=0.0005):
    """A run folder as `harness attribute` leaves it: {label: {kind: median fork_ns}}."""
    rng = np.random.default_rng(1)
    records = {(label, "fork-latency"): [
        {"fork_ns": median * (1 + rng.normal(0, spread)), "size_mib": 512, "thp": "nohuge",
         "cow_pte": kind, "cow_pte_requested": kind != "off", "boot": boot, "rep": rep,
         "warmup": False, "cell": "1:fork-latency"}
        for kind, median in kinds.items() for boot in range(1, boots + 1) for rep in range(reps)]
        for label, kinds in figures.items()}
    attribution = {"mode": "series", "workload": "fork-latency", "params": {"sizes_mib": "512"},
                   "metric": "fork_ns", "configs": ["y", "n"], "steps": STEPS,
                   "times": {"p02-y": {"build": 12.0, "cached": False, "measure": 30.0}}, "found": {}}
    return runs.build(tmp_path.parent, tmp_path.name, {label: {} for label in figures}, records,
                      timing="icount", attribution=attribution)


FIGURES = {"stock": {"off": 18.0e6}, "p01-y": {"off": 18.0e6, "inactive": 18.0e6},
           "p01-n": {"off": 18.0e6}, "p02-y": {"off": 22.0e6, "inactive": 22.0e6},
           "p02-n": {"off": 18.0e6}, "p03-y": {"off": 22.2e6, "active": 20.0e6},
           "p03-n": {"off": 18.0e6}}


def frame_of(run, **kw):
    metas, df = stats.load_runs([run])
    (frame,) = steps.table(df, metas[0].attribution, **kw).values()
    return frame


def test_the_table_calls_the_patch_that_costs_and_no_other(tmp_path):
    frame = frame_of(fake_run(tmp_path, FIGURES))
    # plain fork with y: patch 2 costs 22%, patch 3's +0.9% is under the practical threshold (2%)
    assert steps.called(frame)[0][:3] == ("y", "off", 2)
    assert steps.called(frame)[0][4] == pytest.approx(0.222, abs=0.005)
    # the COW PTE fork starts at the enabling patch, compared with the plain fork one step before
    cow = frame[frame["kind"] == "active"]
    assert list(cow["index"]) == [3] and bool(cow["first"].iloc[0])
    assert cow["ratio"].iloc[0] == pytest.approx(20.0 / 22.0, abs=0.005)
    assert [c[:3] for c in steps.called(frame)] == [("y", "off", 2), ("y", "active", 3)]
    # inactive records (the prctl asked for on a kernel without COW PTE) are no point of any line
    assert "inactive" not in set(frame["kind"])
    # against stock: the last plain fork with y, and nothing with n
    last = frame[(frame["config"] == "y") & (frame["kind"] == "off")].iloc[-1]
    assert last["vs_stock"] == pytest.approx(22.2 / 18.0, abs=0.005)
    n_plain = frame[(frame["config"] == "n") & (frame["kind"] == "off")]
    assert not any(v.called for v in n_plain["verdict"])
    assert set(frame["multiplicity"]) == {"bh"}


def test_a_lower_practical_threshold_calls_the_small_step_too(tmp_path):
    frame = frame_of(fake_run(tmp_path, FIGURES), practical=0.005)
    assert ("y", "off", 3) in [c[:3] for c in steps.called(frame)]


def test_with_several_boots_the_steps_are_compared_over_boots(tmp_path):
    frame = frame_of(fake_run(tmp_path, FIGURES, boots=4, reps=3, spread=0.02))
    row = frame[(frame["config"] == "y") & (frame["kind"] == "off") & (frame["index"] == 2)].iloc[0]
    assert row["unit_of_replication"] == "boot" and row["boots"] == 4
    assert row["ci_low"] < row["ratio"] < row["ci_high"]


def test_render_summary_and_plot(tmp_path):
    run = fake_run(tmp_path, FIGURES)
    text = attribute.show(run)
    assert "CONFIG_COW_PTE=y, plain fork: fork_ns" in text and "CONFIG_COW_PTE=n, plain fork" in text
    assert "CONFIG_COW_PTE=y, plain fork: patch 2 +22.2%" in text
    assert "CONFIG_COW_PTE=n, plain fork: no step called" in text
    assert "[COW PTE from here; vs prev: plain fork]" in text
    assert "build 12 s, measure 30 s" in text                  # time per prefix
    assert "0  stock (y = n)" in text and steps.same_text() in text   # the shared stock kernel
    assert "one boot per kernel is enough" in text             # icount says why
    assert "COW PTE asked for (feature=1) but inactive by the kernel's counters at steps 1-2" in text
    assert steps.spans([2, 3, 4, 7, 9, 10]) == "2-4, 7, 9-10"
    assert (run / "attribution.png").stat().st_size > 1000
    assert (run / "attribution.txt").read_text().strip() == text.strip()
    assert list(run.glob("attribution-*.csv"))


@pytest.mark.parametrize("first", range(1, 9))
def test_halving_finds_the_first_step_that_moves(first):
    asked = []

    def moves(a, b):
        asked.append(b)
        return (a < first) == (b >= first)       # the metric moves once, at `first`
    lo, hi = 0, 8
    while hi - lo > 1:
        lo, hi = steps.halve(lo, hi, moves)
    assert hi == first
    assert len(asked) == 3                        # log2(8) questions, not 8 builds


def test_moves_compares_the_pair_alone(tmp_path):
    metas, df = stats.load_runs([fake_run(tmp_path, FIGURES)])
    att = metas[0].attribution
    assert steps.moves(df, att, "y", 0, 3) and steps.moves(df, att, "y", 1, 2)
    assert not steps.moves(df, att, "y", 0, 1) and not steps.moves(df, att, "n", 0, 3)


def git(path, *argv):
    subprocess.run(["git", "-C", str(path), *argv], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(path)})


def test_fragments_the_tree_cannot_resolve_are_left_out(tmp_path):
    (tmp_path / "Kconfig").write_text("config FOO\n\tbool \"foo\"\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    known = tmp_path / "known.config"
    known.write_text("CONFIG_FOO=y\n")
    unknown = tmp_path / "unknown.config"
    unknown.write_text("# CONFIG_COW_PTE is not set\n")
    frags = [kconfig.fragment(str(known)), kconfig.fragment(str(unknown))]
    assert [f.path for f in attribute.effective(frags, tmp_path)] == [known]
    # so y and n resolve alike there: one build, in verify's "base" folder
    assert attribute.objdir_label(["guest-base", "selftests"], "y", PROFILE) == "base"
    assert attribute.objdir_label(["guest-base", "selftests", "cow-pte"], "y", PROFILE) == "COW_PTE=y"


def test_stock_is_built_in_a_folder_the_prefixes_were_built_in(tmp_path):
    base = ["guest-base", "selftests"]
    assert attribute.objdir_for(tmp_path, base, ["y", "n"], PROFILE).name.startswith("base")
    n = attribute.objdir_for(tmp_path, base + ["no-cow-pte"], ["n"], PROFILE)
    n.mkdir(parents=True)
    (n / "vmlinux").write_text("")
    assert attribute.objdir_for(tmp_path, base, ["y", "n"], PROFILE) == n


def test_a_range_becomes_a_series_on_its_first_commit(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    git(tree, "init", "-q")
    for i in range(4):
        (tree / "file").write_text(f"{i}\n")
        git(tree, "add", ".")
        git(tree, "commit", "-qm", f"change {i}")
    spec, series = attribute.range_inputs(tree, "HEAD~3..HEAD", tmp_path / "patches")
    assert spec.startswith(f"git+file://{tree}#") and len(spec.split("#")[1]) == 40
    assert [p.title for p in series.patches] == ["change 1", "change 2", "change 3"]
    for bad, why in (("HEAD", "wants A..B"), ("HEAD..HEAD", "no commits"), ("nope..HEAD", "failed")):
        with pytest.raises(UserError, match=why):
            attribute.range_inputs(tree, bad, tmp_path / "p2")


def test_range_with_merges_is_refused(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    git(tree, "init", "-q", "-b", "main")
    (tree / "a").write_text("a\n")
    git(tree, "add", ".")
    git(tree, "commit", "-qm", "a")
    git(tree, "checkout", "-qb", "side")
    (tree / "b").write_text("b\n")
    git(tree, "add", ".")
    git(tree, "commit", "-qm", "b")
    git(tree, "checkout", "-q", "main")
    (tree / "c").write_text("c\n")
    git(tree, "add", ".")
    git(tree, "commit", "-qm", "c")
    git(tree, "merge", "-q", "--no-edit", "side")
    with pytest.raises(UserError, match="merge commits"):
        attribute.range_inputs(tree, "HEAD~2..HEAD", tmp_path / "patches")


def exp(**params):
    return Experiment(kernels=[KernelSpec("kernel", "x")], workloads=[WorkloadSpec("fork-latency", params)])


@pytest.mark.parametrize("params, kw, why", [
    ({"feature": 1}, {"series": "s"}, "leave --param feature out"),
    ({"cow_pte": 1}, {"series": "s"}, "leave --param feature out"),
    ({"sizes_mib": [64, 512]}, {"series": "s"}, "give each --param once"),
    ({"size_mib": 512}, {"series": "s"}, "has no parameter 'size_mib'"),
    ({}, {}, "either --series"),
    ({}, {"series": "s", "span": "a..b"}, "either --series"),
])
def test_bad_requests_fail_before_anything_is_built(params, kw, why):
    with pytest.raises(UserError, match=why):
        attribute.Attribution(exp(**params), "tree", **kw)


def test_cli_attribute_bad_input_is_one_error_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    assert cli.main(["attribute", "--resume", str(tmp_path / "none")]) == 2
    assert cli.main(["attribute", "--resume", "x", "--kernel-src", "y"]) == 2
    assert cli.main(["attribute", "--series", "s"]) == 2
    assert cli.main(["attribute", "--kernel-src", str(tmp_path / "missing"), "--series", "s",
                     "--param", "sizes_mib=512"]) == 2
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert "no run at" in err and "name nothing else" in err and "--kernel-src" in err
    assert "does not exist" in err
    assert not any(tmp_path.iterdir())          # no empty run folder left behind
