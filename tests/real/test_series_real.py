"""A patch series through the real path: apply, build, boot, and read the change back in the guest.

CI has no copy of the COW PTE series, so tests/data holds a small series written for these tests
(a boot message and a sysctl for Debian's linux-source-6.1), one that cannot apply and one that
breaks the build. The kernels are the ones the other real tests share (guest-base + selftests,
as in experiments/test-series.toml): the boots below build nothing.
"""
import json

import pytest

from harness import cli, feature, paths
from tests.real.kernels import CONFIG_ARGS, SRC

pytestmark = pytest.mark.slow
DATA = paths.ROOT / "tests" / "data"
MARGIN_KB = feature.load("cow-pte").proof["margin_kb"]


def test_stock_vs_patched_experiment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    assert cli.main(["run", "--experiment", "test-series"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "sysctl: add kernel.harness_test_series, read-only, 42  applied" in captured.err
    (run,) = tmp_path.iterdir()
    meta = json.loads((run / "metadata.json").read_text())
    patched = meta["kernels"]["patched"]
    assert [p["status"] for p in patched["series"]["apply"]] == ["applied", "applied"]
    assert patched["series"]["version"] == 2 and patched["series"]["base"] == "v6.1"
    assert len(patched["patches"]) == 2 and meta["kernels"]["stock"]["patches"] == []
    assert patched["build_key"] != meta["kernels"]["stock"]["build_key"]
    # the patched kernel is the one that booted: its boot message is on its console only
    assert "harness-test-series: patch 1 applied" in (run / "patched" / "console.log").read_text()
    assert "harness-test-series" not in (run / "stock" / "console.log").read_text()
    # the test series names the plain profile: no switch, every fork a plain one
    assert meta["feature"] == "none" and meta["experiment"]["feature"] == "none"
    for label in ("stock", "patched"):
        records = [json.loads(line) for line in (run / label / "fork-memory.jsonl").read_text().splitlines()]
        assert [r["mib"] for r in records] == [256, 16]
        assert {r["feature_state"] for r in records} == {"off"}
        assert not any(r["feature_requested"] for r in records) and {r["prctl_ret"] for r in records} == {None}
        for r in records:
            # PageTables read after stat_refresh folded the per-CPU deltas: a plain fork grows it
            # by the child's page tables, within the profile's margin (not +0 kB one boot, +52 the next)
            assert r["pagetables_refreshed"] is True
            print(f"{label} {r['mib']} MiB: PageTables +{r['pagetables_delta_kb']} kB, "
                  f"child VmPTE {r['child_vmpte_kb']} kB, parent VmPTE {r['parent_vmpte_kb']} kB")
            assert abs(r["pagetables_delta_kb"] - r["child_vmpte_kb"]) <= MARGIN_KB, r
    assert "COW PTE fork" not in out


def test_patched_kernel_exposes_its_sysctl(capfd):
    argv = ["boot", "--kernel-src", SRC, "--series", str(DATA / "test-series"), *CONFIG_ARGS, "--",
            "cat", "/proc/sys/kernel/harness_test_series"]
    assert cli.main(argv) == 0
    assert capfd.readouterr().out.strip() == "42"


def test_stock_kernel_has_no_such_sysctl(capfd):
    argv = ["boot", "--kernel-src", SRC, *CONFIG_ARGS, "--", "cat", "/proc/sys/kernel/harness_test_series"]
    assert cli.main(argv) == 1
    assert "No such file" in capfd.readouterr().err


def test_unappliable_patch_is_one_clear_error(capsys):
    code = cli.main(["build", "--kernel-src", SRC, "--series", str(DATA / "unappliable-series")])
    err = capsys.readouterr().err
    assert code == 2
    assert "patch 1/1" in err and "init/main.c" in err and "Traceback" not in err


def test_patch_that_breaks_the_build_is_one_clear_error(capsys):
    code = cli.main(["build", "--kernel-src", SRC, "--series", str(DATA / "broken-build-series")])
    err = capsys.readouterr().err
    assert code == 4
    assert "kernel build failed" in err and "kernel/bounds.c" in err and "spinlock_type" in err
