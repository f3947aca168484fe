"""Real test: build Debian's linux-source-6.1 after each patch of a 3-patch series whose last
patch breaks the build (one cold kernel build, then incremental ones in the same object dir).

Each patch touches one .c file (init/main.c, kernel/sysctl.c, kernel/bounds.c), so each step after
the first recompiles that file and links. The config is plain tinyconfig: what is tested is the
per-patch build in one worktree and object folder, which does not depend on the config, and the cold
first build of tinyconfig is a fraction of guest-base's (no network, ext4, virtio).
"""
import re
from pathlib import Path

import pytest

from harness import bisect, series, sources

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
    source = sources.resolve("debian:linux-source-6.1")
    s = three_patches(tmp_path / "series")
    assert [p.index for p in s.patches] == [1, 2, 3] and s.title == "Harness test series"
    assert s.patches[2].title == "kbuild: bounds: size the spinlock type by its new name"
    results = bisect.build_each_patch(source, s, {"tiny": []}, progress=print)
    print(bisect.table(results))
    assert [(r["index"], r["config"], r["status"]) for r in results] == \
        [(1, "tiny", "ok"), (2, "tiny", "ok"), (3, "tiny", "error")]
    assert any("kernel/bounds.c" in line for line in results[2]["lines"])
    assert "error" in bisect.table(results) and "kernel/bounds.c" in bisect.table(results)
    # the source and the cached patched tree stay clean: builds went to the scratch worktree
    assert not (source.path / ".config").exists() and not (source.path / "include" / "config").exists()
