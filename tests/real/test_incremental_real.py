"""Issue #22 for real: a kernel built from another kernel's objects in the workbench is the kernel
a clean build of the same inputs gives, and kernels with different inputs keep apart.

Small on purpose: Debian's 6.1 at tinyconfig (no fragment: its own object folder in the 6.1
workbench, far from guest-base's), the test series' two one-file patches on top. Warm, the two
workbench builds recompile a few files each and the clean build's compiles are ccache hits (its
folder has a fixed path, so its command lines repeat).
"""
import shutil
import subprocess
from pathlib import Path

from harness import cache
from harness.kernel import kconfig, series as series_mod
from harness.kernel.build import Build

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
    stock = Build(source, small).key
    # the stock kernel in the workbench (from whatever its folder held), then the patched one
    # from the stock kernel's objects: a few files recompiled
    Build(source, small, into=tmp_path / "stock").run()
    inc = Build(patched, small, patches=ids, into=tmp_path / "incremental").run(print)
    assert inc.info["base"]["kernel"] == stock, inc.info["base"]
    assert 0 < inc.info["objects_compiled"] <= 12, inc.info["objects_compiled"]
    # the same inputs from nothing, in a fresh folder and the patched tree's own path
    clean_dir = cache.root() / "objects" / f"clean-check-{inc.key}"
    shutil.rmtree(clean_dir, ignore_errors=True)
    clean = Build(patched, small, patches=ids, objdir=clean_dir, into=tmp_path / "clean").run(print)
    assert clean.info["objects_compiled"] > 50 * inc.info["objects_compiled"]
    symbols, sections = shape(inc.path / "vmlinux")
    assert len(symbols) > 1000 and len(sections) > 10
    assert (symbols, sections) == shape(clean.path / "vmlinux")
    assert (inc.path / "config").read_text() == (clean.path / "config").read_text()
    # different inputs, different entries; the same inputs, one key wherever built
    assert len({stock, inc.key, Build(source, small, base="defconfig").key}) == 3
    assert clean.key == inc.key == Build(patched, small, patches=ids).key
    assert "harness_test_series" in subprocess.run(["nm", str(inc.path / "vmlinux")], text=True,
                                                   capture_output=True).stdout
