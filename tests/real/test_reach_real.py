"""The coverage config and the per-patch compile table on the test series (Linux 6.1), CI-sized:
`harness verify --objects-only` configures the derived coverage config at every patch and compiles
only the series' objects in it (no kernel is linked or booted)."""
import pytest

from harness import cli, paths

pytestmark = pytest.mark.slow
SERIES = str(paths.ROOT / "tests" / "data" / "test-series")


def test_verify_derives_the_coverage_config_and_tells_what_compiled(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    code = cli.main(["verify", "--kernel-src", "debian:linux-source-6.1", "--series", SERIES,
                     "--bisect-configs", "coverage", "--objects-only", "--no-boot"])
    out = capsys.readouterr().out
    assert code == 0, out
    # patch 2 adds a table under #ifdef CONFIG_SYSCTL: the option and what it needs are asked for
    assert "CONFIG_SYSCTL=y  (gates the series' code)" in out
    assert "CONFIG_PROC_SYSCTL=y  (needed by SYSCTL)" in out
    table = out[out.index("changed code compiled, per patch"):]
    rows = {line.split()[0]: line for line in table.splitlines()[2:4]}
    assert "files 1/1, hunks 1/1" in rows["1"] and "files 2/2, hunks 2/2" in rows["2"]
    assert "ok    bisect: 2/2 builds ok; 2/2 changed files compiled at every patch" in out
