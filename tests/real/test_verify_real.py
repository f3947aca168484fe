"""`harness verify` end to end on the test series (CI has no copy of the COW PTE series).

Its kernels (guest-base + selftests, stock and patched) are the ones the other real tests share.
Linux 6.1 has no cow selftest: it is taken from Debian's linux-source-6.12, as a reviewer of an
older tree would do (--selftest-source), and run on both kernels, plainly and under the launcher.
"""
import json

import pytest

from harness import cli, paths

pytestmark = pytest.mark.slow
SERIES = str(paths.ROOT / "tests" / "data" / "test-series")


def test_verify_prints_every_section(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    code = cli.main(["verify", "--kernel-src", "debian:linux-source-6.1", "--series", SERIES,
                     "--no-bisect", "--kernels", "stock,patched", "--mib", "256",
                     "--selftest-source", "debian:linux-source-6.12"])
    out = capsys.readouterr().out
    assert code == 0, out
    # apply and checkpatch tables, one row per patch
    assert "init: announce the harness test series at boot" in out
    assert "errors" in out and "warnings" in out
    # the verdict block names each section
    for line in ("ok    apply: 2 applied", "ok    checkpatch: 0 errors", "ok    kernels:",
                 "ok    selftests: no new failures against stock"):
        assert line in out
    # the selftest table: both kernels, plainly and under the launcher (inactive: no COW PTE here)
    heads = next(line for line in out.splitlines() if line.strip().startswith("case "))
    assert heads.split()[1:] == ["stock/plain", "stock/cow-pte", "patched/plain", "patched/cow-pte"]
    totals = next(line for line in out.splitlines() if line.strip().startswith("pass/fail/skip"))
    stock_plain, _, patched_plain, _ = totals.split()[1:]
    assert stock_plain == patched_plain and int(stock_plain.split("/")[0]) >= 60
    (run,) = tmp_path.iterdir()
    meta = json.loads((run / "metadata.json").read_text())
    assert set(meta["kernels"]) == {"stock", "patched"}
    for info in meta["kernels"].values():
        assert info["status"] == "ok"
        assert [t["status"] for t in info["tasks"]] == ["ok", "ok", "ok"]
        assert info["tasks"][2]["task"] == "selftest:cow"
    assert (run / "patched" / "dmesg-boot.log").exists()
    assert (run / "patched" / "dmesg-1-fork-memory.log").exists()


def test_verify_unappliable_series_fails_cleanly(capsys):
    code = cli.main(["verify", "--kernel-src", "debian:linux-source-6.1", "--series",
                     str(paths.ROOT / "tests" / "data" / "unappliable-series"), "--no-bisect"])
    assert code == 2
    captured = capsys.readouterr()
    assert "patch 1/1" in captured.err
    # checkpatch still ran, and the verdict says what was not run and why
    assert "FAIL  apply: " in captured.out
    assert "checkpatch: " in captured.out
    assert "FAIL  kernels: not run: the series does not apply" in captured.out
