"""Issue #22 for real: a kernel built from another kernel's objects in the workbench is the kernel
a clean build of the same inputs gives, and kernels with different inputs keep apart.

Small on purpose: Debian's 6.1 at tinyconfig + printk and sysctl (its own object folder in the
6.1 workbench, far from guest-base's), the test series' two one-file patches on top. Cold, the
first build is the clean one (a new folder); warm, the workbench builds recompile a few files each
and the clean build in a fresh folder has its compiles from ccache (a fixed path: its command
lines repeat).
"""
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import cache
from harness.kernel import kconfig, series as series_mod
from harness.kernel.build import Build

pytestmark = pytest.mark.slow

SERIES = Path(__file__).parents[1] / "data" / "test-series"
# tinyconfig has no printk and no sysctl: with them, both patches change the kernel
SMALL = "CONFIG_PRINTK=y\nCONFIG_PROC_FS=y\nCONFIG_PROC_SYSCTL=y\nCONFIG_SYSCTL=y\n"


def shape(vmlinux):
    """What two builds of one kernel must share: every symbol at its address, every section's
    name, address and size (readelf -S, without the offsets)."""
    nm = subprocess.run(["nm", "-n", str(vmlinux)], capture_output=True, text=True, check=True).stdout
    sections = subprocess.run(["readelf", "-SW", str(vmlinux)], capture_output=True, text=True,
                              check=True).stdout
    rows = []
    for line in sections.splitlines():
        parts = line.replace("[ ", "[").split()
        if parts and parts[0].startswith("[") and parts[0][1:-1].isdigit() and len(parts) > 5:
            rows.append((parts[1], parts[3], parts[5]))     # name, address, size
    return nm.splitlines(), rows


def test_an_incremental_build_is_the_clean_build_and_inputs_never_share_an_entry(source, tmp_path):
    (tmp_path / "small.config").write_text(SMALL)
    small = [kconfig.fragment(str(tmp_path / "small.config"))]
    series = series_mod.load(str(SERIES))
    patched, _ = series_mod.apply(series, source)
    ids = series_mod.patch_ids(series)
    # stock in the workbench, the patched kernel from its objects, then stock again from the
    # patched kernel's objects: both ways a few files recompiled
    first = Build(source, small, into=tmp_path / "stock").run(print)
    inc = Build(patched, small, patches=ids, into=tmp_path / "patched").run(print)
    assert inc.info["built_from"]["kernel"] == first.key, inc.info["built_from"]
    assert 0 < inc.info["objects_compiled"] <= 12, inc.info["objects_compiled"]
    again = Build(source, small, into=tmp_path / "stock-again").run(print)
    assert again.info["built_from"]["kernel"] == inc.key and 0 < again.info["objects_compiled"] <= 12
    # the clean build of the same inputs: the first one when its folder was new (a cold CI run),
    # else one in a fresh folder at a fixed path (warm, its compiles are ccache hits)
    clean = first
    if first.info["built_from"]["kernel"] is not None:
        clean_dir = cache.root() / "objects" / f"clean-check-{first.key}"
        shutil.rmtree(clean_dir, ignore_errors=True)
        clean = Build(source, small, objdir=clean_dir, into=tmp_path / "clean").run(print)
    print(f"clean build: {clean.info['objects_compiled']} objects in {clean.info['build_seconds']} s; "
          f"incremental: {inc.info['objects_compiled']} and {again.info['objects_compiled']} objects in "
          f"{inc.info['build_seconds']} and {again.info['build_seconds']} s")
    assert clean.info["objects_compiled"] > 20 * again.info["objects_compiled"]
    symbols, sections = shape(again.path / "vmlinux")
    assert len(symbols) > 1000 and len(sections) > 10
    assert (symbols, sections) == shape(clean.path / "vmlinux")
    assert (again.path / "config").read_text() == (clean.path / "config").read_text()
    assert shape(inc.path / "vmlinux")[0] != symbols             # the series is in the kernel
    assert "harness_test_series" in "\n".join(shape(inc.path / "vmlinux")[0])
    # different inputs, different entries; the same inputs, one key wherever built
    assert len({first.key, inc.key, Build(source, small, base="defconfig").key}) == 3
    assert again.key == first.key == Build(source, small).key
