"""Per-patch builds: the parts that need no kernel build."""
from harness.kernel import bisect


def test_bisect_build_folders_have_no_equals_sign(tmp_path):
    # kbuild's tools/ (objtool's fixdep) break in an output path containing "="
    assert "=" not in bisect.objdir_for(tmp_path, "COW_PTE=y").name
    assert bisect.objdir_for(tmp_path, "COW_PTE=y") != bisect.objdir_for(tmp_path, "COW_PTE=n")


def test_bisect_verdict_allows_an_option_only_before_it_exists():
    from harness.verify import bisect_verdict

    def cells(statuses):
        return [{"index": i, "config": "COW_PTE=y", "status": s} for i, s in enumerate(statuses, 1)]
    ok, detail = bisect_verdict(cells(["config", "ok", "ok"]))
    assert ok and detail.startswith("2/3 builds ok, 1 not built") and "patch 1 [COW_PTE=y]" in detail
    # refused after it built once (a later patch broke its dependencies), or never there at all
    assert not bisect_verdict(cells(["ok", "config", "ok"]))[0]
    assert not bisect_verdict(cells(["config", "config", "config"]))[0]
    ok, detail = bisect_verdict(cells(["ok", "error", "ok"]))
    assert not ok and "first error at patch 2" in detail


def test_a_section_whose_evidence_missed_code_reads_part_and_never_ok(capsys):
    from harness.verify import Verify
    v = Verify.__new__(Verify)           # no tree: only the verdict's bookkeeping
    v.problems, v.sections = [], {}
    v.section("bisect", True, "14/14 builds ok; 21/25 changed files compiled; "
              "not compiled: mm/ksm.c (patches 6-14)", covered=False)
    v.section("apply", True, "14 applied")
    v.verdict()
    out = capsys.readouterr().out
    assert "PART  bisect: 14/14 builds ok" in out and "ok    apply" in out
    assert v.exit_code == 0 and "ok    bisect" not in out
    v.section("checkpatch", False, "1 errors")
    assert v.exit_code == 1
    v.section("kernels", False, "problems in patched", covered=False)     # a failure stays one
    assert v.sections["kernels"][0] is False
