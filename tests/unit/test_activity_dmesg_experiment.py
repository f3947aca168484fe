import pytest

from harness.guest import target
from harness.measure import activity, dmesg
from harness import experiment
from harness.errors import UserError

COPIED = {"cow_pte_requested": True, "config_cow_pte": "y", "prctl_ret": 0, "prctl_errno": 0,
          "parent_vmpte_kb": 2096, "child_vmpte_kb": 2096, "pagetables_delta_kb": 2100}


def test_prctl_success_alone_proves_nothing():
    # a patched kernel that copied the tables anyway (e.g. the flag was lost across execve)
    verdict, evidence = activity.judge(COPIED)
    assert verdict == "inactive" and "tables copied" in evidence


def test_shared_tables_are_active():
    shared = dict(COPIED, child_vmpte_kb=44, pagetables_delta_kb=60, prctl_again_errno=22)
    verdict, evidence = activity.judge(shared)
    assert verdict == "active" and "3%" in evidence and "second prctl errno 22" in evidence


def test_config_off_is_inactive_even_when_prctl_returns_0():
    verdict, evidence = activity.judge(dict(COPIED, config_cow_pte="n", pagetables_delta_kb=60))
    assert verdict == "inactive" and "CONFIG_COW_PTE=n" in evidence


def test_failed_prctl_and_small_mappings():
    assert activity.judge(dict(COPIED, prctl_ret=-1, prctl_errno=22))[0] == "inactive"
    assert activity.judge(dict(COPIED, parent_vmpte_kb=100, pagetables_delta_kb=4))[0] == "unproven"
    assert activity.judge({"cow_pte_requested": False})[0] == "off"
    assert activity.judge(dict(COPIED, pagetables_delta_kb=None)) == (
        "unproven", "the page-table counters around the fork were not read")
    assert activity.label(COPIED)["cow_pte"] == "inactive"


def test_dmesg_scan_and_taint():
    log = ("[1.0] ok\n[2.0] BUG: Bad rss-counter state mm:00000000 type:MM_ANONPAGES val:-1\n"
           "[3.0] WARNING: CPU: 0 PID: 1 at mm/memory.c:123 foo+0x1/0x2\n"
           "[4.0] ======================================================\n"
           "[4.1] WARNING: possible circular locking dependency detected\n")
    kinds = [k for k, _ in dmesg.scan(log)]
    assert kinds == ["BUG", "WARNING", "WARNING"]
    assert dmesg.scan("[0.1] Bad page map in process a  pte:8000\n")[0][0] == "bad page map"
    assert target.taint_flags("512") == ["W warning"]
    assert target.taint_flags("0") == []


class FakeChannel:
    """A channel that answers `dmesg` and `cat /proc/sys/kernel/tainted` from lists."""

    def __init__(self, logs, tainted):
        self.logs, self.tainted = list(logs), list(tainted)

    def run(self, argv, **kwargs):
        return 0, (self.logs if argv[0] == "dmesg" else self.tainted).pop(0), ""


def test_a_taint_is_reported_by_the_first_look_after_it_is_set():
    t = target.Target()
    t.channel = FakeChannel(["[1.0] ok\n", "[2.0] WARNING: at mm/memory.c:1\n", "[3.0] ok\n"],
                            ["0", "512", "512"])
    assert dmesg.check(t) == ("[1.0] ok\n", [])
    log, hits = dmesg.check(t)
    assert hits == [("WARNING", "[2.0] WARNING: at mm/memory.c:1"), ("taint", "W warning")]
    assert dmesg.check(t)[1] == []


def test_experiment_files_load_and_override(tmp_path):
    exp = experiment.load("cow-pte-v4", kernel_src="/src/linux", series="/s.mbox", accel="tcg")
    assert [k.label for k in exp.kernels] == ["stock", "cow-pte", "patched-nocow"]
    assert [k.series for k in exp.kernels] == [None, "/s.mbox", "/s.mbox"]
    assert {k.source for k in exp.kernels} == {"/src/linux"}
    assert exp.accel == "tcg"
    assert [w.params["cow_pte"] for w in exp.workloads if w.name == "fork-memory"] == [0, 1]
    assert len(exp.workloads) == 18 and len(exp.claims) == 16  # list values expand
    assert exp.command_line().startswith("harness run --experiment ")
    default = experiment.load("cow-pte-v4")
    assert default.kernels[1].series == "20230207035139.272707-1-shiyn.lin@gmail.com"
    assert default.kernels[0].source.endswith("linux.git#v6.2-rc7")


def test_experiment_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        experiment.load("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "x"\nkernal = 1\n')
    with pytest.raises(UserError, match="unknown key 'kernal'; did you mean 'kernels'"):
        experiment.load(bad)
    bad.write_text('source = "x"\n[[kernels]]\nlabel = "p"\npatched = true\n')
    with pytest.raises(UserError, match="no series"):
        experiment.load(bad)
    bad.write_text('source = "x"\n[[kernels]]\nlabel = "p"\n[[kernels]]\npatched = true\n')
    with pytest.raises(UserError, match=r"\[\[kernels\]\] entry 2: label is missing"):
        experiment.load(bad)


def test_thp_runs_are_unproven():
    shared = dict(COPIED, pagetables_delta_kb=60, thp="huge")
    assert activity.judge(shared)[0] == "unproven"
