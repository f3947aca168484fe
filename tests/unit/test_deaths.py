"""A guest that dies in one task (or one selftest way) loses no other result: the task is recorded
as crashed with the console's evidence, the kernel is booted again and the next tasks run. The
machines here are stand-ins that die on cue; tests/real/test_faults_real.py kills a real guest."""
from types import SimpleNamespace

import pytest

from harness import feature
from harness.errors import ChannelLost, GuestError, GuestPanic, GuestTimeout
from harness.guest import console
from harness.measure import selftests, session, tap
from harness.results import RunStore
from harness.verify import selftests_summary

OOPS = """\
[   12.000001] random: crng init done
[   39.682166] BUG: kernel NULL pointer dereference, address: 0000000000000000
[   39.683539] Oops: 0002 [#1] SMP
[   39.684250] RIP: 0010:0xffffffff81067299
[   39.688321] Call Trace:
[   39.688990]  ? 0xffffffff810ef7d4
[   39.695860] Kernel panic - not syncing: Fatal exception
"""
SYSTEM_MAP = """\
ffffffff81067292 T do_raw_spin_lock
ffffffff810672a7 t next_after_lock
ffffffff810eefb7 T copy_page_range
ffffffff810efafa T next_after_copy
ffffffff82000000 D some_data
"""


def test_the_evidence_starts_at_the_oops_and_names_its_addresses(tmp_path):
    (tmp_path / "System.map").write_text(SYSTEM_MAP)
    text = console.symbolise(console.excerpt(OOPS), tmp_path / "System.map")
    lines = text.splitlines()
    assert lines[0].endswith("BUG: kernel NULL pointer dereference, address: 0000000000000000")
    assert "RIP: 0010:0xffffffff81067299 (do_raw_spin_lock+0x7/0x15)" in text
    assert "? 0xffffffff810ef7d4 (copy_page_range+0x81d/0xb43)" in text
    assert lines[-1].endswith("Kernel panic - not syncing: Fatal exception")
    assert console.excerpt(OOPS, lines=2).splitlines() == [*OOPS.splitlines()[1:3], "[...]",
                                                            OOPS.splitlines()[-1]]
    assert console.symbolise("0xffffffff81067299", tmp_path / "none") == "0xffffffff81067299"
    hang = "\n".join(f"line {i}" for i in range(50))
    assert console.excerpt(hang, lines=3) == "line 47\nline 48\nline 49"     # a hang: the tail


PARTIAL_COW = """\
TAP version 13
1..3
# [RUN] Basic COW after fork() ... with base page
ok 1 No leak from parent into child
# [RUN] Basic COW after fork() ... with hugetlb (2048 kB)"""


def test_the_case_a_test_died_in_is_named():
    cases = tap.parse_tap_report(PARTIAL_COW)["cases"]
    assert tap.last_started(PARTIAL_COW, cases) == "Basic COW after fork() ... with hugetlb (2048 kB)"
    finished = PARTIAL_COW.rsplit("\n", 1)[0]
    assert tap.last_started(finished, cases) == "after Basic COW after fork() ... with base page"
    assert tap.last_started("", []) == "before its first case"
    over_a_pty = PARTIAL_COW.replace("\n", "\r\n") + "\r"    # the last line's \n not come yet
    assert tap.last_started(over_a_pty, cases) == "Basic COW after fork() ... with hugetlb (2048 kB)"
    plain = "Basic anon THP collapse... \x1b[32mOK\x1b[0m\nCollapse PTE table full of compound pages..."
    assert tap.last_started(plain, tap.parse_plain(plain)) == "Collapse PTE table full of compound pages"


def crashed_table():
    ok = selftests.run_test(FakeGuest(out=PARTIAL_COW + "\nok 2 No leak\nok 3 No leak"), "cow", label="k")
    died = selftests.crashed("cow", "cow-pte", "k", "cow_pte_launch: prctl=0: active\n" + PARTIAL_COW,
                             GuestPanic("kernel panic: Fatal exception"), launcher="cow_pte_launch")
    return ok, died


def test_a_crashed_way_is_a_column_with_its_case_crashed_and_the_rest_missing():
    ok, died = crashed_table()
    assert died["active"] is True and died["crashed"] == "GuestPanic" and len(died["cases"]) == 1
    assert died["error"] == ("crashed in: Basic COW after fork() ... with hugetlb (2048 kB) "
                             "(kernel panic: Fatal exception)")
    df = selftests.table([ok, died])
    assert list(df[("k", "cow-pte")]) == ["pass", "crashed", "missing"]
    assert {(f["case"], f["result"]) for f in selftests.new_failures(df)} == {
        ("Basic COW after fork() ... with hugetlb (2048 kB)", "crashed"), ("No leak", "missing")}
    text = selftests.render([ok, died])
    assert "!! k/cow-pte: crashed in: Basic COW after fork() ... with hugetlb (2048 kB)" in text


def test_verify_says_how_many_ran_and_what_crashed():
    ok, died = crashed_table()
    good, text = selftests_summary([ok, died], [])
    assert good is False
    assert text == ("no new failures against stock (1 selftests, 2 runs of kernel x way, 4 case results: cow); "
                    "1 crashed: k/cow-pte cow in 'Basic COW after fork() ... with hugetlb (2048 kB)'")


# --- the session ---------------------------------------------------------------------------------

class FakeGuest:
    """A booted guest that answers every command with `out`, or dies (raises `dies`) on a
    command that names `trigger`."""

    def __init__(self, out="", dies=None, trigger="crash", boot=0):
        self.out, self.dies, self.trigger, self.boot = out, dies, trigger, boot
        self.kernel = SimpleNamespace(info={"release": "6.2.1+"})
        self.stopped, self.commands, self.boot_seconds = False, [], 1.0

    def run(self, argv, timeout=600, on_line=None):
        assert not self.stopped, "a command on a stopped guest"
        self.commands.append(argv)
        if self.dies and any(self.trigger in str(a) for a in argv):
            for line in self.out.splitlines():
                on_line and on_line(line)
            raise self.dies
        if argv[:2] == ["sh", "-c"] and "nr_hugepages" in argv[2]:
            return 0, "64\nhugepages-2048kB", ""
        if argv[:2] == ["sh", "-c"] and "swapon" in argv[2]:
            return 0, "Filename Type Size\n/swapfile file 262140 0 -2", ""
        return 0, self.out, ""

    def put(self, local, remote):
        pass

    def console_mark(self):
        return 7

    def death_evidence(self, since=0):
        return f"BUG: from byte {since} of boot {self.boot}"

    def reconnect(self):
        raise GuestTimeout("cannot reconnect")

    def stop(self):
        self.stopped = True


class Task:
    def __init__(self, name):
        self.name, self.manifest = name, {}

    def run(self, machine, params, store, staging, profile):
        machine.run([self.name])
        return [{"ok": True}]


def make_session(tmp_path, first, boots, selftest_names=(), out=""):
    store = RunStore("deaths", root=tmp_path)
    exp = SimpleNamespace(dmesg_check=False, variants=None, selftests=list(selftest_names),
                          selftest_source=None, feature=None)
    failures = []

    def reboot(n):
        boots.append(FakeGuest(boot=n, out=out))
        return boots[-1]
    output = SimpleNamespace(kernel_table=lambda *a: None)
    work = session.Session(exp, store, lambda label, exc, task=None: failures.append((task, exc)),
                           output, "k", first, 1, reboot=reboot, profile=feature.of(exp))
    return work, store, failures


@pytest.mark.parametrize("death", [GuestPanic("kernel panic: Fatal exception"),
                                   GuestTimeout("the guest stopped answering"),
                                   GuestError("QEMU exited with code -9"),
                                   ChannelLost("the SSH connection to the guest dropped")])
def test_a_task_that_kills_the_guest_is_crashed_and_the_next_runs_after_a_reboot(tmp_path, death):
    first, boots = FakeGuest(dies=death), []
    work, store, failures = make_session(tmp_path, first, boots)
    work.run([(Task("one"), {}), (Task("crash"), {}), (Task("three"), {}), (Task("four"), {})])
    tasks = store.tasks("k")
    assert [t["status"] for t in tasks] == ["ok", "crashed", "ok", "ok"]
    assert tasks[1]["console"] == "BUG: from byte 7 of boot 0"
    # a dropped connection that cannot be made again is a death too (FakeGuest never reconnects)
    assert tasks[1]["error"] == ("cannot reconnect" if isinstance(death, ChannelLost) else death.args[0])
    assert first.stopped and len(boots) == 1 and boots[0].commands == [["three"], ["four"]]
    assert work.machine is boots[0]
    info = store.kernel_info("k")
    assert info["boots"]["1"]["reboots"] == [{"after": "2:crash", "boot_seconds": 1.0}]
    assert info["error"].startswith("2:crash: ") and "BUG: from byte 7" in info["error"]
    assert [task for task, _ in failures] == ["2:crash"]


def test_without_a_reboot_the_death_ends_the_boot(tmp_path):
    work, store, _ = make_session(tmp_path, FakeGuest(dies=GuestPanic("kernel panic: x")), [])
    work.reboot = None
    with pytest.raises(GuestPanic):
        work.run([(Task("crash"), {}), (Task("two"), {})])
    assert [t["status"] for t in store.tasks("k")] == ["crashed"]


def test_a_selftest_way_that_kills_the_guest_keeps_its_output_and_the_next_ways_run(tmp_path, monkeypatch):
    monkeypatch.setattr(selftests, "build_test", lambda name, *a, **k: tmp_path / name)
    monkeypatch.setattr(selftests, "upload", lambda m, local, d: f"{d}/{local.name}")
    first, boots = FakeGuest(out=PARTIAL_COW, dies=GuestPanic("kernel panic: Fatal exception"), trigger="/cow"), []
    work, store, failures = make_session(tmp_path, first, boots, ["cow", "mremap_test"],
                                           out="TAP version 13\n1..1\nok 1 mremap\n")
    results = []
    work.selftests(SimpleNamespace(path=tmp_path), results)
    (died, again) = results
    assert died["crashed_in"] == "Basic COW after fork() ... with hugetlb (2048 kB)" and len(died["cases"]) == 1
    assert (store.dir / "k" / "selftest-cow-plain.tap").read_text() == PARTIAL_COW + "\n"
    assert again["test"] == "mremap_test" and again["way"] == "plain" and not again.get("crashed")
    assert len(boots) == 1 and any("mremap_test" in " ".join(map(str, c)) for c in boots[0].commands)
    assert any("nr_hugepages" in " ".join(map(str, c)) for c in boots[0].commands)   # prepared again
    tasks = store.tasks("k")
    assert [t["status"] for t in tasks] == ["crashed", "ok"]
    assert tasks[0]["crashed"] == [{"way": "plain", "case": died["crashed_in"]}]
    assert tasks[0]["console"] == "BUG: from byte 7 of boot 0"


def test_a_uffd_case_whose_check_printed_an_error_is_a_failure():
    text = ("Testing wp-fork on shmem... done\n"
            "Testing wp-fork on anon... ERROR: pagemap uffd-wp bit error: 0x82 (errno=22, @uffd-unit-tests.c:342)\n"
            "failed [reason: Detected stall uffd-wp bit in child in present pte]\n"
            "Testing wp-fork-pin on anon... done\n")
    assert [(c["case"], c["result"], c["reason"]) for c in tap.parse_plain(text)] == [
        ("wp-fork on shmem", "pass", ""),
        ("wp-fork on anon", "fail", "[reason: Detected stall uffd-wp bit in child in present pte]"),
        ("wp-fork-pin on anon", "pass", "")]


def test_a_boots_facts_carry_the_targets_own(tmp_path):
    """What a kind of target records of a boot (a real machine: its proof, the kexec command, its
    fingerprint) goes into the boot's facts beside the common ones."""
    guest = FakeGuest(out="6.2.1+")
    guest.boot_phases, guest.argv = {}, ["qemu"]
    guest.boot_facts = lambda: {"proof": {"release": "6.2.1+", "build_id_checked": True}}
    work, _, _ = make_session(tmp_path, guest, [])
    facts = work.facts()
    assert facts["proof"] == {"release": "6.2.1+", "build_id_checked": True} and "boot_seconds" in facts
