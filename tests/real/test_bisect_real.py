"""Real test: build Debian's linux-source-6.1 after each patch of a 3-patch series whose last
patch breaks the build (one cold kernel build, then incremental ones in the same object dir).

Each patch touches one .c file (init/main.c, kernel/sysctl.c, kernel/bounds.c), so each step after
the first recompiles that file and links: seconds. The config is the one the real tests share
(guest-base + selftests), and patches 1-2 are tests/data/test-series: the kernel built after patch
2 is the test series' patched kernel, one cache entry that the series, verify and reproduce tests
boot, so a cold run builds it incrementally here instead of from scratch.
"""
import re
from pathlib import Path

import pytest

from harness.kernel import bisect, kconfig, series, sources
from harness.kernel.build import Build
from tests.real.kernels import FRAGMENTS, SRC

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent.parent / "data"


def three_patches(folder):
    """tests/data/test-series + broken-build-series as one series: cover letter, 2 good, 1 broken."""
    folder.mkdir()
    files = sorted((DATA / "test-series").glob("*.patch")) + \
        sorted((DATA / "broken-build-series").glob("*.patch"))
    for number, f in enumerate(files):
        text = re.sub(r"^Subject: \[PATCH[^\]]*\]", f"Subject: [PATCH {number}/3]",
                      f.read_text(), count=1, flags=re.M)
        name = re.sub(r"^(v\d+-)?\d{4}-", "", f.name)
        (folder / f"{number:04d}-{name}").write_text(text)
    return series.load(str(folder))


def test_each_patch_builds_until_the_broken_one(tmp_path):
    source = sources.resolve(SRC)
    s = three_patches(tmp_path / "series")
    assert [p.index for p in s.patches] == [1, 2, 3] and s.title == "Harness test series"
    assert s.patches[2].title == "kbuild: bounds: size the spinlock type by its new name"
    fragments = [kconfig.fragment(f) for f in FRAGMENTS]
    results = bisect.build_each_patch(source, s, {"base": fragments}, progress=print)
    print(bisect.table(results))
    assert [(r["index"], r["config"], r["status"]) for r in results] == \
        [(1, "base", "ok"), (2, "base", "ok"), (3, "base", "error")]
    assert any("kernel/bounds.c" in line for line in results[2]["lines"])
    assert "error" in bisect.table(results) and "kernel/bounds.c" in bisect.table(results)
    # the source and the cached patched tree stay clean: builds went to the scratch worktree
    assert not (source.path / ".config").exists() and not (source.path / "include" / "config").exists()
    # patches 1-2 built here are the test series' patched kernel, as a run builds it
    test_series = series.load(str(DATA / "test-series"))
    patched, _ = series.apply(test_series, source)
    run_build = Build(patched, fragments, patches=series.patch_ids(test_series))
    assert Path(results[1]["kernel"]).name == run_build.key and run_build.cached()
