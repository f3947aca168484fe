"""Per-patch builds: the parts that need no kernel build."""
from harness import bisect


def test_bisect_build_folders_have_no_equals_sign(tmp_path):
    # kbuild's tools/ (objtool's fixdep) break in an output path containing "="
    assert "=" not in bisect._objdir(tmp_path, "COW_PTE=y").name
    assert bisect._objdir(tmp_path, "COW_PTE=y") != bisect._objdir(tmp_path, "COW_PTE=n")
