import pytest

from harness.guest import target
from harness.measure import activity, dmesg
from harness import experiment, feature
from harness.errors import UserError

COPIED = {"feature_requested": True, "feature_config": "y", "prctl_ret": 0, "prctl_errno": 0,
          "parent_vmpte_kb": 2096, "child_vmpte_kb": 2096, "pagetables_delta_kb": 2100}
PROFILE = feature.load("cow-pte")


def judge(record):
    return activity.judge(record, PROFILE)


def test_prctl_success_alone_proves_nothing():
    # a patched kernel that copied the tables anyway (e.g. the flag was lost across execve)
    verdict, evidence = judge(COPIED)
    assert verdict == "inactive" and "tables copied" in evidence


def test_shared_tables_are_active():
    shared = dict(COPIED, child_vmpte_kb=44, pagetables_delta_kb=60, prctl_again_errno=22)
    verdict, evidence = judge(shared)
    assert verdict == "active" and "3%" in evidence and "second prctl errno 22" in evidence


def test_config_off_is_inactive_even_when_prctl_returns_0():
    verdict, evidence = judge(dict(COPIED, feature_config="n", pagetables_delta_kb=60))
    assert verdict == "inactive" and "CONFIG_COW_PTE=n" in evidence


def test_failed_prctl_and_small_mappings():
    assert judge(dict(COPIED, prctl_ret=-1, prctl_errno=22))[0] == "inactive"
    assert judge(dict(COPIED, parent_vmpte_kb=100, pagetables_delta_kb=4))[0] == "unproven"
    assert judge({"feature_requested": False})[0] == "off"
    assert judge(dict(COPIED, pagetables_delta_kb=None)) == (
        "unproven", "the counters around the fork were not read (pagetables_delta_kb)")
    assert activity.label(COPIED, PROFILE)["feature_state"] == "inactive"


def test_the_margin_is_stated_and_is_the_edge():
    # shared up to 25% of 2096 kB + 16 kB = 540 kB; one kB more is a copy
    limit = 0.25 * 2096 + 16
    state, evidence = judge(dict(COPIED, pagetables_delta_kb=limit))
    assert state == "active" and "25% + 16 kB margin = 540 kB" in evidence
    assert judge(dict(COPIED, pagetables_delta_kb=limit + 1))[0] == "inactive"


def test_legacy_records_are_judged_under_their_new_names(tmp_path):
    """Records of a run stored before profiles, read through the stored-file reader (which renames
    their fields once), are judged like new ones."""
    import json
    from harness import stored
    path = tmp_path / "fork-memory.jsonl"
    path.write_text(json.dumps({"cow_pte_requested": True, "config_cow_pte": "y", "parent_vmpte_kb": 2096,
                                "pagetables_delta_kb": 60}) + "\n" + json.dumps({"cow_pte": "inactive"}) + "\n")
    old, judged = stored.records(path)
    assert activity.verdict(old, PROFILE) == "active"
    assert activity.verdict(judged, PROFILE) == "inactive"


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
    assert [w.params["feature"] for w in exp.workloads if w.name == "fork-memory"] == [0, 1]
    assert exp.feature == "cow-pte" and experiment.load("test-series").feature == "none"
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
    assert judge(shared)[0] == "unproven"
