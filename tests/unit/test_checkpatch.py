"""checkpatch: the real scripts/checkpatch.pl of Debian's linux-source-6.1 on small series.

The source comes from the harness's normal cache (instant once imported; the first time it installs
the Debian package and imports it, about 30 s).
"""
import shutil
from pathlib import Path

import pytest

from harness.kernel import checkpatch, series, sources
from harness.errors import InfraError, UserError

DATA = Path(__file__).parent.parent / "data"
SIGNOFF = "Signed-off-by: Harness_Tests <tests@kernel-harness.invalid>\n"

BAD = """\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: Harness_Tests <tests@kernel-harness.invalid>
Date: Wed, 25 Nov 2026 19:40:22 +0000
Subject: [PATCH] init: a patch with style problems

Trailing whitespace and a line over 100 columns.

Signed-off-by: Harness_Tests <tests@kernel-harness.invalid>
---
 init/main.c | 2 ++
 1 file changed, 2 insertions(+)

diff --git a/init/main.c b/init/main.c
index 6acfd5a78..eaee39734 100644
--- a/init/main.c
+++ b/init/main.c
@@ -1485,6 +1485,8 @@ static int __ref kernel_init(void *unused)
 	wait_for_completion(&kthreadd_done);
 
 	kernel_init_freeable();
+	pr_notice("style: trailing whitespace\\n"); 
+	pr_notice("style: %s %s %s\\n", "a line that is far too long", "for the kernel's coding style", "x");
 	/* need to finish all async __init code before freeing the memory */
 	async_synchronize_full();
 
-- 
2.39.5
"""


@pytest.fixture(scope="module")
def source():
    try:
        return sources.resolve("debian:linux-source-6.1")
    except InfraError as exc:
        pytest.skip(f"Debian's linux-source-6.1 is not available: {exc}")


def test_test_series_is_clean(source):
    results = checkpatch.run(source.path, series.load(str(DATA / "test-series")))
    assert [r["index"] for r in results] == [1, 2]
    assert [(r["errors"], r["warnings"], r["first"]) for r in results] == [(0, 0, []), (0, 0, [])]
    assert "init: announce the harness test series at boot" in checkpatch.table(results)


def test_missing_signoff_is_an_error(source, tmp_path):
    for f in (DATA / "test-series").glob("*.patch"):
        (tmp_path / f.name).write_text(f.read_text().replace(SIGNOFF, ""))
    results = checkpatch.run(source.path, series.load(str(tmp_path)))
    for r in results:
        assert (r["errors"], r["warnings"], r["checks"]) == (1, 0, 0)
        assert r["first"] == ["ERROR: Missing Signed-off-by: line(s)"]
    assert "Missing Signed-off-by" in checkpatch.table(results)


def test_style_problems_are_counted_with_their_place(source, tmp_path):
    (tmp_path / "0001-bad.patch").write_text(BAD)
    (r,) = checkpatch.run(source.path, series.load(str(tmp_path)))
    assert r["title"] == "init: a patch with style problems"
    assert (r["errors"], r["warnings"], r["checks"]) == (1, 1, 0)
    assert any(line.startswith("ERROR: trailing whitespace") and "init/main.c:1488" in line
               for line in r["first"])
    assert any(line.startswith("WARNING: line length of") and "init/main.c:1489" in line
               for line in r["first"])
    assert "trailing whitespace" in checkpatch.table([r])


def test_crash_and_missing_script(fake_tree, tmp_path):
    (tmp_path / "0001-bad.patch").write_text(BAD)
    s = series.load(str(tmp_path / "0001-bad.patch"))
    with pytest.raises(UserError, match="no scripts/checkpatch.pl"):
        checkpatch.run(fake_tree, s)
    (fake_tree / "scripts").mkdir()
    (fake_tree / "scripts" / "checkpatch.pl").write_text('die "broken checkpatch\\n";\n')
    with pytest.raises(InfraError, match="checkpatch.pl failed on patch 1.*broken checkpatch"):
        checkpatch.run(fake_tree, s)


def test_missing_perl(fake_tree, tmp_path, monkeypatch):
    (fake_tree / "scripts").mkdir()
    (fake_tree / "scripts" / "checkpatch.pl").write_text("exit 0;\n")
    (tmp_path / "0001-bad.patch").write_text(BAD)
    s = series.load(str(tmp_path / "0001-bad.patch"))
    monkeypatch.setattr(shutil, "which", lambda tool, path=None: None)
    with pytest.raises(InfraError, match="'perl' is not installed"):
        checkpatch.run(fake_tree, s)

