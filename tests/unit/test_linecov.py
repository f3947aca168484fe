"""Which changed lines ran: the series' lines mapped to the final tree (git blame over a real
repository made here), gcov's JSON read (a real report of the coverage kernel's init/main.c, cut
down), the per-patch table and the never-executed hunks, and the make variables that profile
only the series' files."""
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness.measure import coverage
from harness.errors import UserError
from harness.kernel import gcov, kconfig, linecov
from harness.kernel.series import Patch

DATA = Path(__file__).parent.parent / "data" / "gcov"


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t.invalid",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo, text, message):
    (repo / "f.c").write_text(text)
    _git(repo, "add", "f.c")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    base = _commit(tmp_path, "a\nb\nc\nd\n", "stock")
    one = _commit(tmp_path, "a\nB1\nB2\nc\nd\n", "patch 1: changes b into two lines")
    two = _commit(tmp_path, "a\nB1\nB2x\nc\nd\nE\n", "patch 2: rewrites B2, adds E")
    return tmp_path, base, [one, two]


def test_lines_are_mapped_to_the_last_patch_that_wrote_them(repo):
    tree, base, commits = repo
    added = linecov.added_lines(tree, base, commits, ["f.c", "gone.c"])
    # final tree: a B1 B2x c d E -- B1 is patch 1's, B2x (rewritten) and E are patch 2's
    assert added == {1: {"f.c": [2]}, 2: {"f.c": [3, 6]}}


def test_hunks_are_runs_of_consecutive_lines():
    assert linecov.hunks([7, 3, 4, 5, 9]) == [(3, 5), (7, 7), (9, 9)]
    assert linecov.hunks([]) == []


def test_real_gcov_report_is_read_tree_relative():
    """gcov's JSON of the test series' init/main.c as the CI's coverage kernel compiled it (before
    any run: every count 0), cut to the lines around patch 1's pr_notice and one header; the
    build's folders renamed /build/linux (the tree) and /build/obj (the object folder)."""
    report = (DATA / "main.gcov.json").read_text()
    counts = gcov.parse(report, trees=["/build/linux", "/build/obj"])
    assert set(counts) == {"init/main.c", "include/linux/err.h"}
    # the test series' pr_notice (patch 1, line 1488 of the patched tree) is a line with code
    assert 1488 in counts["init/main.c"] and counts["init/main.c"][1488] == 0
    assert all(isinstance(n, int) for lines in counts.values() for n in lines)
    # a name outside the tree (a compiler header) is left out; relative ones are the compile folder's
    data = json.loads(report)
    data["files"].append({"file": "/usr/lib/gcc/x86_64-linux-gnu/12/include/stddef.h", "lines": []})
    data["files"].append({"file": "../linux/kernel/sysctl.c", "lines": [{"line_number": 3, "count": 2}]})
    assert set(gcov.parse(data, trees=["/build/linux", "/build/obj"])) == {
        "init/main.c", "include/linux/err.h", "kernel/sysctl.c"}


def test_summary_names_what_never_ran():
    patches = [Patch(1, "[PATCH 1/2] one", "one", "a", None, ""), Patch(2, "[PATCH 2/2] two", "two", "a", None, "")]
    added = {1: {"f.c": [10, 11], "g.h": [5]}, 2: {"f.c": [20, 21, 22, 30, 40], "x.c": [1, 2]}}
    records = [
        {"task": "boot", "way": "boot", "counts": {"f.c": {10: 1, 11: 0, 20: 0, 21: 0, 40: 0}}},
        {"task": "1:fork-memory", "way": "plain", "counts": {"f.c": {10: 2, 11: 0, 20: 0, 21: 0, 40: 0}}},
        {"task": "2:fork-memory", "way": "cow-pte", "counts": {"f.c": {10: 0, 11: 3, 20: 0, 21: 0, 40: 0}}},
        {"task": "selftest:cow:plain", "way": "plain", "counts": {"f.c": {40: 5}}},
    ]
    summary = linecov.summarise(patches, added, records)
    assert summary["columns"] == ["boot", "selftests/plain", "workloads/cow-pte", "workloads/plain", "any"]
    one, two = summary["patches"]
    assert (one["lines"], one["executable"], one["no_data"]) == (3, 2, 1)       # g.h: no counts
    assert one["executed"] == {"boot": 1, "selftests/plain": 0, "workloads/cow-pte": 1,
                               "workloads/plain": 1, "any": 2, "workloads": 2, "selftests": 0}
    assert linecov.executed_in(summary, "workloads") == (2 + 0, 5)
    assert (two["executable"], two["executed"]["any"], two["no_data"]) == (3, 1, 2)
    # 20-22 (20, 21 executable) never ran; 40 ran in the selftest
    assert summary["never_executed"] == [{"patch": 2, "title": "two", "file": "f.c", "first": 20, "last": 22,
                                          "executable": 2}]
    # line 30 has no code in any object (data, a declaration): named apart, never "never executed"
    assert summary["no_code"] == [{"patch": 2, "title": "two", "file": "f.c", "first": 30, "last": 30,
                                   "executable": 0}]
    assert linecov.totals(summary) == (3, 5)
    assert linecov.never_lines(summary) == ["f.c:20-22  (2 executable)  [2/2] two"]
    text = linecov.table(summary)
    assert "all patches" in text and text.splitlines()[0].split()[:4] == ["#", "patch", "added", "exec."]


def test_only_the_series_files_are_profiled_in_their_own_folders(tmp_path):
    text = gcov.fragment_text(["mm/memory.c", "include/linux/mm.h", "drivers/base/memory.c", "kernel/fork.c"],
                              "test")
    path = tmp_path / "gcov.config"
    path.write_text(text)
    frag = kconfig.fragment(path)
    assert frag.values == {"CONFIG_DEBUG_FS": "y", "CONFIG_GCOV_KERNEL": "y", "CONFIG_GCOV_PROFILE_ALL": "n"}
    files = gcov.profiled([frag])
    assert files == ["drivers/base/memory.c", "kernel/fork.c", "mm/memory.c"]     # no header
    assert gcov.make_vars(files) == ["GCOV_PROFILE_fork.o=$(if $(filter kernel,$(obj)),y,n)",
                                     "GCOV_PROFILE_memory.o=$(if $(filter drivers/base mm,$(obj)),y,n)"]
    assert gcov.profiled([kconfig.fragment("guest-base")]) == []


def test_the_folder_condition_is_what_make_does(tmp_path):
    """arch/x86/boot/memory.c (real-mode code) must not be profiled when mm/memory.c is."""
    (tmp_path / "Makefile").write_text("all:\n\t@$(MAKE) -s -f sub.mk obj=mm\n\t@$(MAKE) -s -f sub.mk obj=arch/x86/boot\n")
    (tmp_path / "sub.mk").write_text("GCOV_PROFILE := n\nall:\n\t@echo $(obj)=$(GCOV_PROFILE_memory.o)\n")
    out = subprocess.run(["make", "-s", "-C", str(tmp_path), *gcov.make_vars(["mm/memory.c"])],
                         check=True, capture_output=True, text=True).stdout.split()
    assert out == ["mm=y", "arch/x86/boot=n"]


def test_counts_round_trip_as_stored():
    counts = {"mm/memory.c": {12: 0, 3: 4}}
    assert gcov.expand(json.loads(json.dumps(gcov.compact(counts)))) == counts


def test_coverage_kernels_records_are_never_timed():
    df = pd.DataFrame({"kernel": ["stock", "gcov", "gcov"], "x": [1, 2, 3], "coverage": [None, "gcov", "gcov"]})
    kept = coverage.untimed(df, [{"run_id": "r"}])
    assert list(kept["kernel"]) == ["stock"] and "coverage" not in kept
    with pytest.raises(UserError, match="coverage kernels are never timed"):
        coverage.untimed(df[df["kernel"] == "gcov"], [{"run_id": "r"}])
    plain = pd.DataFrame({"kernel": ["stock"], "x": [1]})
    assert coverage.untimed(plain, []) is plain
