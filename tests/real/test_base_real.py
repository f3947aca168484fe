"""--base FILE for real: a config file as the base, built, booted and measured with fork-memory.

The file is the shared kernel's own final .config (tests/real/conftest.py), so the kernel built on
it has the same config under another cache key: the compiler's work comes from ccache, and the
test shows that the file, not tinyconfig, is what the fragments went on.
"""
import json

import pytest

from harness import cli
from harness.kernel import kconfig
from tests.real.kernels import CONFIG_ARGS, SRC

pytestmark = pytest.mark.slow


def test_a_config_file_as_base_builds_boots_and_runs_fork_memory(kernel, image, tmp_path, monkeypatch,
                                                                  capsys):
    base = tmp_path / "config-from-file"
    base.write_text(kernel.config)
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    assert cli.main(["run", "--kernel-src", SRC, *CONFIG_ARGS, "--base", str(base), "--label", "file",
                     "--workload", "fork-memory", "--param", "mib=64"]) == 0
    assert "PageTables delta at fork" in capsys.readouterr().out
    (run,) = (tmp_path / "results").iterdir()
    meta = json.loads((run / "metadata.json").read_text())
    k = meta["kernels"]["file"]
    assert k["status"] == "ok" and k["base"]["name"] == "config-from-file"
    assert k["build_key"] != kernel.key                          # another base, another build
    assert f"--base {base}" in meta["command"]
    built = json.loads((run / "file" / "kernel.json").read_text())
    assert built["base_config"] == "config-from-file" and built["base"]["key"].startswith("file:")
    assert built["config_sha"] == kernel.info["config_sha"]      # the file's config came through whole
    (record,) = [json.loads(line) for line in (run / "file" / "fork-memory.jsonl").read_text().splitlines()]
    # 64 MiB of 4 KiB pages: 32 PTE pages (128 kB) copied at the fork of a stock kernel
    assert record["mib"] == 64 and record["pagetables_delta_kb"] >= 128
    assert kconfig.parse(kernel.config).get("CONFIG_IKCONFIG_PROC") == "y"


def test_defconfig_with_guest_base_configures_and_passes_the_check(source, tmp_path):
    """--base defconfig up to the checked .config (its whole build is longer than CI can give)."""
    from harness.kernel.build import Build
    build = Build(source, [kconfig.fragment("guest-base")], base="defconfig", objdir=tmp_path / "objects")
    config = kconfig.parse(build.configure(tmp_path / "config-stage"))
    assert config["CONFIG_PVH"] == "y" and config["CONFIG_VIRTIO_MMIO"] == "y"      # guest-base landed
    assert config["CONFIG_NUMA"] == "y" and config.get("CONFIG_IPV6", "n") == "n"   # defconfig under it
    assert sum(v == "y" for v in config.values()) > 1000                            # not a tinyconfig
