import shutil
import subprocess

import pytest

from harness import feature
from harness.measure import selftests
from harness.errors import UserError

COW_OUTPUT = """\
TAP version 13
# [INFO] detected THP size: 2048 KiB
# [INFO] detected hugetlb size: 2048 KiB
1..5
# [RUN] Anonymous memory tests in private mappings
# [RUN] Basic COW after fork() ... with base page
ok 1 No leak from parent into child
# [RUN] Basic COW after fork() ... with swapped out base page
ok 2 # SKIP MADV_PAGEOUT did not work, is swap enabled?
# [RUN] vmsplice() + unmap in child ... with hugetlb (2048 kB)
not ok 3 No leak from parent into child
# [RUN] R/O longterm GUP pin ... with base page
ok 4 # SKIP PIN_LONGTERM_TEST_START failed
# [RUN] Basic COW ... with memfd
ok 5 Other mapping not modified
Bail out! 1 out of 5 tests failed
# Totals: pass:2 fail:1 xfail:0 xpass:0 skip:2 error:0
"""


def test_cow_output_cases_are_named_by_their_run_line():
    cases = selftests.parse_tap_report(COW_OUTPUT)["cases"]
    assert [(c["number"], c["case"], c["result"]) for c in cases] == [
        (1, "Basic COW after fork() ... with base page", "pass"),
        (2, "Basic COW after fork() ... with swapped out base page", "skip"),
        (3, "vmsplice() + unmap in child ... with hugetlb (2048 kB)", "fail"),
        (4, "R/O longterm GUP pin ... with base page", "skip"),
        (5, "Basic COW ... with memfd", "pass"),
    ]
    assert cases[1]["reason"] == "MADV_PAGEOUT did not work, is swap enabled?"
    assert cases[2]["description"] == "No leak from parent into child"


def test_report_has_plan_bail_out_and_totals_that_agree():
    report = selftests.parse_tap_report(COW_OUTPUT)
    assert report["plan"] == 5 and report["bail_out"] == "1 out of 5 tests failed"
    assert report["totals"]["pass"] == 2 and report["totals"]["skip"] == 2
    assert report["problems"] == []


def test_totals_and_plan_are_cross_checked():
    text = COW_OUTPUT.replace("pass:2 fail:1", "pass:3 fail:1").replace("1..5", "1..6")
    problems = selftests.parse_tap_report(text)["problems"]
    assert "plan 1..6 but 5 results" in problems
    assert "Totals says pass:3 but 2 results say pass" in problems


def test_plain_tap_descriptions_directives_and_missing_numbers():
    text = ("ok 1 - first\r\nnot ok 2 second # TODO later\r\nok third # skip no device\r\n"
            "ok 4 fourth # XFAIL known\r\nnot ok 5 # error setup failed\r\n1..5\r\n")
    cases = selftests.parse_tap_report(text)["cases"]
    assert [(c["number"], c["case"], c["result"], c["directive"]) for c in cases] == [
        (1, "first", "pass", None), (2, "second", "fail", "TODO"), (3, "third", "skip", "SKIP"),
        (4, "fourth", "pass", "XFAIL"), (5, "test 5", "fail", "ERROR")]
    assert cases[2]["reason"] == "no device"


def test_skip_all_plan_and_subtests():
    report = selftests.parse_tap_report("TAP version 13\n1..0 # SKIP no hugetlb support\n")
    assert report["cases"] == [] and report["skip_all"] == "no hugetlb support"
    nested = "KTAP version 1\n1..1\n    KTAP version 1\n    1..2\n    ok 1 a\n    not ok 2 b\nnot ok 1 suite\n"
    assert [(c["case"], c["result"]) for c in selftests.parse_tap_report(nested)["cases"]] == [("suite", "fail")]


def test_repeated_output_keeps_first_result_and_same_names_get_numbered():
    text = ("1..3\n# [RUN] x\nok 1 d\n# [RUN] x\nnot ok 2 d\n# [RUN] x\nok 1 d\nok 3 d\n")
    cases = selftests.parse_tap_report(text)["cases"]
    assert [(c["number"], c["case"], c["result"]) for c in cases] == [
        (1, "x", "pass"), (2, "x #2", "fail"), (3, "d", "pass")]


def run(kernel, way, **results):
    return {"kernel": kernel, "way": way, "active": True if way == "cow-pte" else None,
            "cases": [{"case": k, "result": v} for k, v in results.items()]}


RESULTS = [
    run("stock", "plain", a="pass", b="pass", c="fail", d="skip", e="pass"),
    run("cowpte", "plain", a="pass", b="pass", c="fail", d="skip", e="pass"),
    run("cowpte", "cow-pte", a="pass", b="fail", c="fail", d="pass"),
    {"kernel": "stock", "way": "cow-pte", "active": False, "cases": [],
     "error": "COW PTE not turned on: cow_pte_launch: prctl=-1/EINVAL: not proven"},
]


def test_table_has_a_column_per_kernel_and_way():
    df = selftests.table(RESULTS)
    assert list(df.index) == ["a", "b", "c", "d", "e"]
    assert list(df.columns) == [("stock", "plain"), ("cowpte", "plain"), ("cowpte", "cow-pte"),
                                ("stock", "cow-pte")]
    assert df[("cowpte", "cow-pte")].tolist() == ["pass", "fail", "fail", "pass", "missing"]
    assert set(df[("stock", "cow-pte")]) == {"inactive"}


def test_new_failures_against_stock_plain():
    found = selftests.new_failures(selftests.table(RESULTS))
    assert found == [{"case": "b", "kernel": "cowpte", "way": "cow-pte", "result": "fail"},
                     {"case": "e", "kernel": "cowpte", "way": "cow-pte", "result": "missing"}]
    with pytest.raises(UserError):
        selftests.new_failures(selftests.table(RESULTS[1:]), stock="stock")


def test_render_marks_new_failures_and_inactive_runs():
    text = selftests.render(RESULTS)
    lines = {line[3]: line for line in text.splitlines() if line[3:4] in "abcde" and line[4:5] == " "}
    assert lines["b"].startswith("!! ") and lines["e"].startswith("!! ")
    assert lines["a"].startswith("   ") and lines["c"].startswith("   ")
    assert "!! stock/cow-pte: COW PTE not turned on" in text
    assert "2 case(s) fail against the stock kernel's plain run" in text
    assert "pass/fail/skip  3/1/1" in text     # stock/plain


def test_duplicate_columns_are_refused():
    with pytest.raises(UserError):
        selftests.table([RESULTS[0], RESULTS[0]])


class FakeMachine:
    def __init__(self, code, out):
        self.kernel = type("K", (), {"info": {"release": "6.2.1+"}})()
        self.code, self.out, self.argv = code, out, None

    def run(self, argv, timeout=600, on_line=None):
        self.argv = argv
        return self.code, self.out, ""


@pytest.fixture(autouse=True)
def no_upload(monkeypatch):
    monkeypatch.setattr(selftests, "upload", lambda m, local, d: f"{d}/{local.name}")


def test_run_cow_under_a_launcher_that_cannot_prove_it_reports_no_cases(tmp_path):
    m = FakeMachine(4, "cow_pte_launch: prctl=-1/EINVAL: not proven (no COW PTE series?)\r\n")
    res = selftests.run_test(m, tmp_path / "cow", launcher=tmp_path / "cow_pte_launch", timeout=30,
                             way="cow-pte")
    assert res["way"] == "cow-pte" and res["active"] is False and res["cases"] == []
    assert "not proven" in res["error"] and res["kernel"] == "6.2.1+"
    assert m.argv[-2:] == [f"{selftests.GUEST_DIR}/cow_pte_launch", f"{selftests.GUEST_DIR}/cow"]
    assert m.argv[:2] == ["python3", "-c"] and "30" in m.argv


def test_run_cow_active_and_plain(tmp_path):
    out = "cow_pte_launch: prctl=0 again=-1/EINVAL: active\r\n" + COW_OUTPUT.replace("\n", "\r\n")
    res = selftests.run_test(FakeMachine(1, out), tmp_path / "cow", launcher=tmp_path / "cow_pte_launch",
                             label="p")
    assert res["way"] == "cow_pte_launch" and res["test"] == "cow"     # named by its files
    assert res["active"] is True and len(res["cases"]) == 5 and res["kernel"] == "p"
    assert res["launcher"] == "cow_pte_launch: prctl=0 again=-1/EINVAL: active"
    plain = selftests.run_test(FakeMachine(1, COW_OUTPUT), tmp_path / "cow")
    assert plain["way"] == "plain" and plain["active"] is None and plain["launcher"] is None
    assert len(plain["cases"]) == 5 and plain["error"] is None


def test_build_cow_names_a_tree_without_the_test(fake_tree):
    with pytest.raises(UserError) as err:
        selftests.build_test("cow", fake_tree)
    assert "has no cow selftest" in str(err.value) and "test_source" in str(err.value)


def test_test_source_is_a_path_or_a_source_spec(fake_tree, monkeypatch):
    resolved = []

    def resolve(spec):
        resolved.append(spec)
        return type("Tree", (), {"path": fake_tree})()
    monkeypatch.setattr(selftests.sources_mod, "resolve", resolve)
    assert selftests.test_tree(fake_tree) == fake_tree and resolved == []
    for spec in ("debian:linux-source-6.12", "git+https://example.org/linux.git#v6.12",
                 "https://example.org/linux-6.12.tar.xz"):
        assert selftests.test_tree(spec) == fake_tree
    assert resolved == ["debian:linux-source-6.12", "git+https://example.org/linux.git#v6.12",
                        "https://example.org/linux-6.12.tar.xz"]
    # a spec is resolved, then its tree is checked like a path: this one has no cow test
    with pytest.raises(UserError, match="has no cow selftest.*debian:linux-source-6.12"):
        selftests.build_test("cow", fake_tree, test_source="debian:linux-source-6.12")


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc")
def test_launcher_without_proof_never_runs_the_program(cache_dir, tmp_path):
    profile = feature.load("cow-pte")
    launcher = selftests.build_launcher(profile, tmp_path)
    assert selftests.build_launcher(feature.load("none")) is None       # no switch, no launcher
    marker = tmp_path / "ran"
    proc = subprocess.run([str(launcher), "touch", str(marker)], capture_output=True, text=True)
    # Unless this host runs a COW PTE kernel, prctl(65) cannot be proven here.
    if proc.returncode == 0 and "active" in proc.stderr:
        pytest.skip("this host runs COW PTE")
    assert proc.returncode == profile.selftests["not_proven_exit"] and "not proven" in proc.stderr
    assert not marker.exists()


def test_the_catalog_picks_the_touched_areas_tests():
    chosen = selftests.for_paths(["mm/ksm.c", "mm/userfaultfd.c", "kernel/fork.c", "fs/proc/task_mmu.c"])
    assert chosen == ["cow", "ksm_functional_tests", "uffd-unit-tests", "soft-dirty"]
    assert selftests.for_paths(["init/main.c"]) == []
    for name, test in selftests.catalog().items():
        assert test["sources"] and test["paths"], name
    with pytest.raises(UserError, match="not supported"):
        selftests.spec("no-such-test")


def test_tests_without_tap_are_read_from_their_own_lines():
    text = ("Testing register-ioctls on anon... done\n"
            "Testing wp-fork on shmem... skipped [reason: feature missing]\n"
            "Testing zeropage on anon... failed [reason: bad]\n"
            "Basic anon THP collapse... \x1b[32mOK\x1b[0m\n"
            "Collapse with max_ptes_none... \x1b[31mFail\x1b[0m\n")
    cases = selftests.parse_plain(text)
    assert [(c["case"], c["result"]) for c in cases] == [
        ("register-ioctls on anon", "pass"), ("wp-fork on shmem", "skip"), ("zeropage on anon", "fail"),
        ("Basic anon THP collapse", "pass"), ("Collapse with max_ptes_none", "fail")]


def test_several_tests_share_one_column_per_kernel_and_way():
    def res(test, case, result, kernel="stock"):
        return {"kernel": kernel, "way": "plain", "test": test, "active": None,
                "cases": [{"case": case, "result": result}]}
    df = selftests.table([res("cow", "a", "pass"), res("ksm", "ksm: b", "pass"),
                          res("cow", "a", "pass", "patched"), res("ksm", "ksm: b", "fail", "patched")])
    assert list(df.index) == ["a", "ksm: b"]
    assert selftests.new_failures(df, "stock") == [
        {"case": "ksm: b", "kernel": "patched", "way": "plain", "result": "fail"}]
    with pytest.raises(UserError, match="two results"):
        selftests.table([res("cow", "a", "pass"), res("cow", "a", "pass")])


def test_progress_counters_rewritten_with_cr_give_one_short_case():
    text = ("Run test: collapse_full_of_compound (khugepaged:anon)\r\n"
            "Construct PTE page table full of compound pages   1/512...\r"
            "Construct PTE page table full of compound pages   2/512...\r"
            "Construct PTE page table full of compound pages 512/512... \x1b[32mOK\x1b[0m\r\n")
    (case,) = selftests.parse_plain(text)
    assert case["case"] == "Construct PTE page table full of compound pages" and case["result"] == "pass"


def test_the_catalog_entries_are_checked(tmp_path):
    bad = tmp_path / "c.toml"
    for text, message in (('[t]\nsources = ["t.c"]\npaths = ["mm/x.c"]\ntimout = 3\n', "unknown key.*timout"),
                          ('[t]\nsources = ["t.c"]\n', "paths is required"),
                          ('[t]\nsources = ["t.c"]\npaths = ["p"]\ntimeout = "9"\n', "timeout must be int"),
                          ('[t]\nsources = "t.c"\npaths = ["p"]\n', "sources must be a list of strings"),
                          ('[t]\nsources = ["t.c"]\npaths = ["p"]\ndir = "../mm"\n', "plain names")):
        bad.write_text(text)
        with pytest.raises(UserError, match=message):
            selftests.catalog(bad)
    assert "uprobes" in selftests.catalog()


def test_a_script_test_is_its_folder_run_from_inside(fake_tree, cache_dir, tmp_path):
    """uprobes through tracefs: ftracetest and its test.d copied whole (cached by content) and run
    from its folder in the guest, under the launcher like any test; its KTAP read as TAP."""
    assert selftests.for_paths(["kernel/events/uprobes.c"]) == ["uprobes"]
    with pytest.raises(UserError, match="has no uprobes selftest"):
        selftests.build_test("uprobes", fake_tree)
    ftrace = fake_tree / "tools/testing/selftests/ftrace"
    for name in selftests.spec("uprobes")["sources"]:
        (ftrace / name).parent.mkdir(parents=True, exist_ok=True)
        (ftrace / name).write_text(f"# {name}\n")
    assert selftests.selftest_dir(fake_tree, "uprobes") == ftrace
    folder = selftests.build_test("uprobes", fake_tree)
    assert folder.is_dir() and folder.name == "uprobes" and (folder / "test.d/functions").exists()
    assert selftests.build_test("uprobes", fake_tree) == folder             # cached
    (ftrace / "ftracetest").write_text("# changed\n")
    assert selftests.build_test("uprobes", fake_tree) != folder            # by content
    ktap = ("cow_pte_launch: prctl=0 again=-1/EINVAL: active\r\nTAP version 13\r\n1..2\r\n"
            "ok 1 Generic dynamic event - add/remove/test uprobe events\r\n"
            "ok 2 Uprobe event parser error log check\r\n# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:0 error:0\r\n")
    m = FakeMachine(0, ktap)
    m.put = lambda local, remote: setattr(m, "copied", (local, remote))
    spec = selftests.spec("uprobes")
    res = selftests.run_test(m, folder, launcher=tmp_path / "cow_pte_launch", name="uprobes",
                             args=spec["args"], script=spec["script"], way="cow-pte")
    guest = f"{selftests.GUEST_DIR}/uprobes"
    assert m.copied == (folder, guest)
    start = m.argv.index(f"{selftests.GUEST_DIR}/cow_pte_launch")
    assert m.argv[start + 1:start + 6] == ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", guest]
    assert m.argv[start + 6:] == ["./ftracetest", *spec["args"]]
    assert res["active"] is True and [c["result"] for c in res["cases"]] == ["pass", "pass"]
    assert res["cases"][0]["case"] == "uprobes: Generic dynamic event - add/remove/test uprobe events"


def test_a_test_killed_by_a_signal_says_so_and_keeps_its_cases(tmp_path):
    """uffd-unit-tests died of SIGSEGV under COW PTE (exit 139 through the pty runner): the
    result names the signal and keeps the cases it finished; a timeout stays a timeout."""
    out = "Testing wp-fork on shmem... done\nTesting wp-fork-with-event on hugetlb... \n"
    res = selftests.run_test(FakeMachine(139, out), tmp_path / "uffd-unit-tests")
    assert res["error"] == "killed by SIGSEGV after 1 cases (exit code 139)"
    assert [c["result"] for c in res["cases"]] == ["pass"]
    assert selftests.run_test(FakeMachine(1, out), tmp_path / "uffd-unit-tests")["error"] is None
    assert selftests.died_of(137) == "SIGKILL" and selftests.died_of(4) is None
    timed = selftests.run_test(FakeMachine(124, out), tmp_path / "uffd-unit-tests", timeout=5)
    assert timed["timed_out"] and timed["error"] is None
