"""Real test of the cow selftest path: build a kernel with the selftests fragment, boot it under TCG,
prepare the guest, run the kernel's own `cow` test plainly and under the COW PTE launcher (which must
refuse a stock kernel), and print the TAP table into the test log.

Linux 6.1 has no cow test (it appeared in 6.2): it is taken from Debian 12's linux-source-6.12
(HARNESS_TEST_COW_SRC overrides it with any source spec or tree) and built statically, so it runs on
the 6.1 guest (in 5 s under TCG here: 151 cases, 70 pass, 4 XFAIL, 77 SKIP). What 6.1 cannot do
comes out as SKIP: its gup_test has no PIN_LONGTERM_TEST_* ioctls (the R/O longterm pin cases), its
MADV_COLLAPSE refuses a range shared with a child, and it has no multi-size THP (only the PMD size
is detected, so no case is planned for other sizes). The hugetlb vmsplice cases fail upstream too
and the 6.12 test marks them XFAIL.
"""
import os
import subprocess

import pytest

from harness import feature
from harness.measure import selftests
from harness.guest.machine import Machine
from tests.real.kernels import SRC

pytestmark = pytest.mark.slow
COW_SRC = os.environ.get("HARNESS_TEST_COW_SRC", "debian:linux-source-6.12")
COW_TIMEOUT = 600          # a hang must not stall CI
PIN_SKIP = "PIN_LONGTERM_TEST_START failed"
COLLAPSE_SKIP = "MADV_COLLAPSE failed: Invalid argument"


@pytest.fixture(scope="module")
def cow_tree(source):
    """The tree the cow test is taken from: the kernel's own when it has one, else COW_SRC."""
    if selftests.selftest_dir(source.path, "cow"):
        return source.path
    tree = selftests.test_tree(COW_SRC)
    assert selftests.selftest_dir(tree, "cow"), f"{COW_SRC} ({tree}) has no cow selftest"
    return tree


@pytest.fixture(scope="module")
def cow_binary(source, cow_tree):
    before = _git_status(cow_tree)
    binary = selftests.build_test("cow", source.path, test_source=None if cow_tree == source.path else COW_SRC)
    assert _git_status(cow_tree) == before, "building cow wrote into the tree"
    return binary


@pytest.fixture(scope="module")
def guest(kernel, image, tmp_path_factory):
    """The shared kernel (guest-base + selftests), booted once for every test here."""
    m = Machine(kernel, image, tmp_path_factory.mktemp("cow-vm"), accel="tcg")
    with m:
        m.wait_ready(timeout=120)
        m.setup = selftests.prepare_guest(m)
        yield m


@pytest.fixture(scope="module")
def plain(guest, cow_binary):
    return selftests.run_test(guest, cow_binary, timeout=COW_TIMEOUT, label="stock")


@pytest.fixture(scope="module")
def launched(guest, cow_binary):
    return selftests.run_test(guest, cow_binary, launcher=selftests.build_launcher(feature.load("cow-pte")),
                              timeout=COW_TIMEOUT, label="stock", way="cow-pte")


def _git_status(tree):
    return subprocess.run(["git", "-C", str(tree), "status", "--porcelain"],
                          capture_output=True, text=True, check=True).stdout


def test_guest_is_prepared_for_cow(guest):
    s = guest.setup
    assert s["hugepages_2m"] >= 16 and 2048 in s["hugepage_sizes_kb"]
    assert s["gup_test"] and s["swap_kib"] >= 200 * 1024 and s["thp"] == "madvise"


def test_cow_tap_table_is_in_the_log(plain, launched, capsys):
    """The case x kernel/way table, written to the terminal (CI's log) even without -s."""
    text = selftests.render([plain, launched])
    with capsys.disabled():
        print(f"\n--- cow selftest from {COW_SRC} on {SRC} (TAP, {plain['seconds']} s plain) ---")
        print(text)
    lines = text.splitlines()
    assert lines[0].split()[1:] == ["stock/plain", "stock/cow-pte"]
    assert len(lines) >= len(plain["cases"]) + 2
    assert "!! stock/cow-pte: the feature was not turned on" in text


def test_cow_runs_plainly_and_its_tap_is_parsed(plain, source):
    res = plain
    assert not res["timed_out"] and res["error"] is None, res["output"][-2000:]
    cases = res["cases"]
    assert res["tap"]["plan"] == len(cases) >= 100 and res["tap"]["problems"] == []
    assert res["tap"]["bail_out"] is None and res["exit_code"] == 0
    assert "[INFO] detected PMD size: 2048 KiB" in res["output"]
    xfail = [c for c in cases if c["directive"] == "XFAIL"]
    passed = [c for c in cases if c["result"] == "pass" and c not in xfail]
    skips = [c for c in cases if c["result"] == "skip"]
    assert res["tap"]["totals"]["pass"] == len(passed) and res["tap"]["totals"]["skip"] == len(skips)
    # Skips only where the kernel lacks something the newer test uses: the longterm-pin ioctls
    # (6.1's gup_test has none) and MADV_COLLAPSE of a range shared with a child (6.1 refuses
    # it with EINVAL). Hugetlb pages, swap and gup_test were all there: nothing else may skip.
    pin_ioctl = "PIN_LONGTERM_TEST_START" in (source.path / "mm" / "gup_test.h").read_text()
    for c in skips:
        assert c["reason"] == PIN_SKIP or (c["reason"] == COLLAPSE_SKIP and "collapsing after fork()"
                                           in c["case"]), c
    assert any(c["reason"] == PIN_SKIP for c in skips) != pin_ioctl
    runnable = [c for c in cases if c["result"] != "skip"]
    assert len(passed) >= 0.9 * len(runnable) and len(passed) >= 60
    for kind in ("with base page", "swapped out base page", "THP (2048 kB)", "swapped-out THP",
                 "PTE-mapped THP", "hugetlb (2048 kB)", "shared zeropage", "huge zeropage",
                 "with memfd", "with tmpfile"):
        assert any(kind in c["case"] for c in passed), kind
    # The only failures allowed on a stock kernel: hugetlb vmsplice, the upstream known ones
    # (newer tests mark them XFAIL themselves).
    for c in cases:
        if c["result"] == "fail" or c in xfail:
            assert "vmsplice" in c["case"] and "hugetlb" in c["case"], c


def test_launcher_on_a_stock_kernel_proves_nothing_and_runs_nothing(launched):
    res = launched
    assert res["way"] == "cow-pte" and res["active"] is False and res["cases"] == []
    assert res["exit_code"] == feature.load("cow-pte").selftests["not_proven_exit"]
    assert res["launcher"].startswith("cow_pte_launch: prctl=-1/EINVAL: not proven")
    assert "TAP version" not in res["output"]
