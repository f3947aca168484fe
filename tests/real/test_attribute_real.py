"""`harness attribute` end to end on the test series plus a patch whose cost is known in advance.

The series: tests/data/test-series (a boot message, a sysctl: neither touches fork) and
tests/data/fork-cost-series (1 ms of busy waiting in dup_mm(), so every fork that copies an
address space costs 1 ms more). The attribution must call patch 3 slower and patches 1-2 not.
Linux 6.1 has no CONFIG_COW_PTE: the y and n configs resolve alike, so each step is one kernel
(guest-base + selftests, the config the real tests share: stock and patches 1-2 are the kernels
the bisect and series tests build too). Under TCG the timing is icount (one boot per kernel).
"""
import json
import re

import pytest

from harness import cli, paths
from harness.analysis import stats, steps, verdict
from harness.kernel import series, sources
from tests.real.kernels import SRC

pytestmark = pytest.mark.slow
DATA = paths.ROOT / "tests" / "data"
PARAMS = ["--param", "sizes_mib=64", "--param", "reps=5", "--param", "warmup=1"]


def cost_series(folder):
    """tests/data/test-series + fork-cost-series as one series: cover letter, 2 patches, the cost."""
    folder.mkdir()
    files = sorted((DATA / "test-series").glob("*.patch")) + sorted((DATA / "fork-cost-series").glob("*.patch"))
    for number, f in enumerate(files):
        text = re.sub(r"^Subject: \[PATCH[^\]]*\]", f"Subject: [PATCH {number}/3]",
                      f.read_text(), count=1, flags=re.M)
        (folder / f"{number:04d}-{re.sub(r'^(v[0-9]+-)?[0-9]{4}-', '', f.name)}").write_text(text)
    return folder


def plain_calls(run):
    metas, df = stats.load_runs([run])
    (frame,) = steps.table(df, metas[0].attribution).values()
    return frame, [(c, i) for c, kind, i, _, _ in steps.called(frame) if kind == "off"]


@pytest.fixture(scope="module")
def attributed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attribute")
    folder = cost_series(tmp / "series")
    results = tmp / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_RESULTS", str(results))
        code = cli.main(["attribute", "--kernel-src", SRC, "--series", str(folder),
                         "--workload", "fork-latency", *PARAMS])
    (run,) = results.iterdir()
    return code, run, folder, results


def test_attribute_names_the_patch_with_the_known_cost(attributed, capsys):
    code, run, _, _ = attributed
    assert code == 0
    text = (run / "attribution.txt").read_text()
    frame, calls = plain_calls(run)
    # patch 3 and no other, in both configs (one kernel: 6.1 has no CONFIG_COW_PTE)
    assert calls == [("y", 3), ("n", 3)], text
    row = frame[(frame["config"] == "n") & (frame["index"] == 3)].iloc[0]
    assert row["verdict"].direction == "slower" and row["ratio"] > 1.1, text
    for i in (1, 2):
        r = frame[(frame["config"] == "n") & (frame["index"] == i)].iloc[0]
        assert not verdict.called(r["verdict"]) and abs(r["ratio"] - 1) < 0.02, text
    assert "CONFIG_COW_PTE=n, plain fork: patch 3 +" in text
    assert "kernel/fork.c" not in text and "fork: wait 1 ms in dup_mm()" in text
    meta = json.loads((run / "metadata.json").read_text())
    assert set(meta["kernels"]) == {"stock", "p01", "p02", "p03"}       # y = n: 4 kernels, 4 boots
    assert meta["timing"] in ("icount", "real")
    if meta["timing"] == "icount":
        assert "one boot per kernel is enough" in text
    # time per prefix, and the step plot
    assert len(re.findall(r"build \d+ s( cached)?, measure \d+ s", text)) >= 4
    assert (run / "attribution.png").stat().st_size > 1000
    # no COW PTE task where the kernel has no CONFIG_COW_PTE
    assert all(t["params"]["feature"] == 0 for k in meta["kernels"].values() for t in k["tasks"])


def test_report_shows_the_attribution_again(attributed, capsys):
    _, run, _, _ = attributed
    assert cli.main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "CONFIG_COW_PTE=n, plain fork: patch 3 +" in out


def test_an_interrupted_attribution_continues_where_it_stopped(attributed, capsys):
    _, run, _, _ = attributed
    meta_path = run / "metadata.json"
    meta = json.loads(meta_path.read_text())
    # what a kill during p02's boot leaves: that boot "interrupted", the others done
    meta["kernels"]["p02"]["boots"]["1"]["status"] = "interrupted"
    meta["kernels"]["p02"]["status"] = "interrupted"
    meta_path.write_text(json.dumps(meta))
    assert cli.main(["attribute", "--resume", str(run)]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "3 boots finished earlier are kept" in out
    assert "[p02] boot 1 measured in" in out
    assert not any(f"[{k}] boot 1 measured in" in out for k in ("stock", "p01", "p03"))
    _, calls = plain_calls(run)
    assert calls == [("y", 3), ("n", 3)]
    assert json.loads(meta_path.read_text())["kernels"]["p02"]["status"] == "ok"


def test_range_mode_finds_the_commit_by_halving(attributed, tmp_path, monkeypatch, capsys):
    _, _, folder, _ = attributed
    source = sources.resolve(SRC)
    patched, _ = series.apply(series.load(str(folder)), source)      # a git tree with 3 commits
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    code = cli.main(["attribute", "--kernel-src", str(patched.path), "--range", f"{source.commit}..HEAD",
                     "--workload", "fork-latency", *PARAMS])
    out = capsys.readouterr().out
    assert code == 0, out
    (run,) = tmp_path.iterdir()
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["attribution"]["found"] == {"y": 3, "n": 3}
    assert "binary search, CONFIG_COW_PTE=n, plain fork: first moved at step 3: fork: wait 1 ms" in out
