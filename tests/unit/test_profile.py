"""A feature profile is data: a toy profile written into a temporary folder runs end to end
(request checks, the guest's command line, the judge, statistics, claims, verify's and attribute's
configs) without a line of harness/ knowing it."""
import json

import numpy as np
import pytest

from harness import attribute, feature, validate, verify
from harness.analysis import report, stats
from harness.errors import UserError
from harness.experiment import Experiment, KernelSpec, WorkloadSpec
from harness.kernel import kconfig
from harness.measure import activity
from harness.measure.workloads import Workload

TOY = '''
name = "toy"
title = "Toy sharing"
[switch]
prctl = 99
arg = 3
trap = "its return code proves nothing"
[proof]
config = "CONFIG_TOY"
counter = "pagetables_delta_kb"
base = "parent_vmpte_kb"
min_base_kb = 100
max_fraction = 0.5
margin_kb = 10
[states]
active = "toy fork"
inactive = "toy asked, inactive"
unproven = "toy asked, unproven"
[conditions]
off = "fork"
on = "toy"
way = "toy"
[configs]
on = ["toy-on"]
off = ["toy-off"]
on_name = "TOY=y"
off_name = "TOY=n"
[verify]
kernels = { toy = { patched = true, fragments = ["on"] } }
default_kernels = ["stock", "toy"]
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    folder = tmp_path / "features" / "toy"
    folder.mkdir(parents=True)
    (folder / "profile.toml").write_text(TOY)
    (folder / "toy-on.config").write_text("CONFIG_TOY=y\n")
    (folder / "toy-off.config").write_text("# CONFIG_TOY is not set\n")
    monkeypatch.setenv("HARNESS_FEATURES", str(tmp_path / "features"))
    return feature.load("toy")


def experiment(**kw):
    kernels = [KernelSpec("stock", "debian:linux-source-6.1", ["guest-base"]),
               KernelSpec("patched", "debian:linux-source-6.1", ["guest-base", "toy-on"], "s.mbox")]
    return Experiment(kernels=kernels, **kw)


def test_the_toy_profile_loads_and_names_its_states(toy):
    assert "toy" in feature.names() and toy.title == "Toy sharing"
    assert toy.kinds() == {"off": "fork", "active": "toy fork", "inactive": "toy asked, inactive",
                           "unproven": "toy asked, unproven"}
    assert toy.guest_args() == ["--feature-prctl", "99", "--feature-arg", "3", "--feature-config", "CONFIG_TOY"]
    # no switch, no option: the drivers' default (the first feature's option) is not reported
    assert feature.load("none").guest_args() == ["--feature-config", ""]
    assert kconfig.fragment("toy-on").values == {"CONFIG_TOY": "y"}       # its folder's fragments


def test_requests_are_checked_against_the_named_profile(toy):
    asked = [WorkloadSpec("fork-memory", {"mib": 16, "feature": 1})]
    claim = [{"workload": "fork-memory", "metric": "child_vmpte_kb", "condition": "toy", "value": 1}]
    assert validate.feature(experiment(workloads=asked, claims=claim, feature="toy")) is toy
    with pytest.raises(UserError, match="the profile 'none' has no switch"):
        validate.feature(experiment(workloads=asked))
    with pytest.raises(UserError, match="condition = 'cow-pte': allowed: fork, toy"):
        validate.feature(experiment(workloads=asked, feature="toy", claims=[{**claim[0], "condition": "cow-pte"}]))
    with pytest.raises(UserError, match="the profile 'none' has no switch"):      # an old name too
        validate.feature(experiment(workloads=[WorkloadSpec("fork-memory", {"mib": 16, "cow_pte": 1})]))
    with pytest.raises(UserError, match="unknown feature profile 'toyy'"):
        feature.load("toyy")
    assert feature.spec(toy) == "toy" and feature.spec(feature.load(str(toy.folder))) == "toy"


def test_the_guest_is_told_the_toy_switch(toy):
    w = Workload.load("fork-memory")
    argv = w.argv(w.params({"mib": 16, "feature": 1}), toy)
    assert argv[argv.index("--feature-prctl") + 1] == "99" and argv[argv.index("--feature") + 1] == "1"
    assert "--feature-prctl" not in w.argv(w.params({"mib": 16}), feature.load("none"))


def test_the_judge_uses_the_toy_thresholds(toy):
    base = {"feature_requested": True, "feature_config": "y", "prctl_ret": 0, "parent_vmpte_kb": 200}
    state, evidence = activity.judge({**base, "pagetables_delta_kb": 110}, toy)
    assert state == "active" and "50% + 10 kB margin = 110 kB" in evidence
    assert activity.judge({**base, "pagetables_delta_kb": 111}, toy)[0] == "inactive"
    assert activity.judge({**base, "parent_vmpte_kb": 99, "pagetables_delta_kb": 1}, toy)[0] == "unproven"
    assert "CONFIG_TOY=n" in activity.judge({**base, "feature_config": "n"}, toy)[1]
    assert activity.judge({**base, "thp": "huge", "pagetables_delta_kb": 1}, toy)[0] == "active"   # no THP rule


def write_run(root, records):
    run = root / "results" / "toy-run"
    for kernel in ("stock", "patched"):
        (run / kernel).mkdir(parents=True)
        lines = [json.dumps(r) for r in records if r["kernel"] == kernel]
        (run / kernel / "fork-memory.jsonl").write_text("\n".join(lines) + "\n")
    meta = {"run_id": run.name, "accel": "tcg", "timing": "real", "feature": "toy",
            "kernels": {"stock": {"status": "ok", "patches": []},
                        "patched": {"status": "ok", "patches": ["p"], "feature_config": "y"}}}
    (run / "metadata.json").write_text(json.dumps(meta))
    return run


def test_statistics_and_claims_run_through_the_toy_profile(toy, tmp_path):
    rng = np.random.default_rng(1)
    records = []
    for boot in (1, 2, 3):
        for kernel, on, delta in (("stock", 0, 400), ("patched", 0, 400), ("patched", 1, 60)):
            for rep in range(4):
                rec = {"kernel": kernel, "boot": boot, "rep": rep, "mib": 64, "thp": "nohuge",
                       "feature_requested": bool(on), "feature_config": "y" if kernel == "patched" else "n",
                       "prctl_ret": 0 if on else None, "parent_vmpte_kb": 400, "pagetables_delta_kb": delta,
                       "child_vmpte_kb": delta, "child_vmrss_kb": 1000 - 900 * on,
                       "parent_vmrss_kb": 66000, "fork_ns": float(1e6 * rng.lognormal(0, 0.02) / (1 + on))}
                records.append(activity.label(rec, toy))
    run = write_run(tmp_path, records)
    meta, df = stats.load_run(run)
    assert meta.profile is toy
    assert set(df["condition"]) == {"stock: fork", "patched: fork", "patched: toy fork"}
    assert set(df["feature_state"]) == {"off", "active"}
    claims = [{"workload": "fork-memory", "metric": "child_vmpte_kb", "condition": "toy", "value": 60},
              {"workload": "fork-memory", "metric": "child_vmrss_kb", "kind": "ratio", "value": 0.1}]
    table = report.check_claims(claims, df, [meta])
    assert list(table["status"]) == ["reproduced", "reproduced"]
    assert list(table["condition"]) == ["toy", "toy / fork"]
    assert "toy" in " ".join(map(str, report.conditions_blocks(df, [meta])[1]))


def test_verify_and_attribute_take_their_configs_and_kernels_from_the_profile(toy):
    sets = verify.config_sets(toy)
    assert sets["TOY=y"] == verify.BASE + ["toy-on"] and sets["TOY=n"] == verify.BASE + ["toy-off"]
    assert verify.kernel_sets(toy)["toy"] == (True, verify.BASE + ["toy-on"])
    assert verify.kernel_sets(toy)["coverage"] == (True, verify.BASE + ["toy-on", verify.COVERAGE])
    assert attribute.config_names(toy) == {"y": "TOY=y", "n": "TOY=n"}
    assert attribute.objdir_label(verify.BASE + ["toy-off"], "n", toy) == "TOY=n"


def test_a_broken_profile_is_one_clear_error(tmp_path, monkeypatch):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "profile.toml").write_text('[switch]\nprctl = 1\n')
    with pytest.raises(UserError, match="needs \\[proof\\] counter, base and max_fraction"):
        feature.load(str(folder))
    (folder / "profile.toml").write_text('swich = 1\n')
    with pytest.raises(UserError, match="unknown key\\(s\\) swich"):
        feature.load(str(folder))
    (folder / "profile.toml").write_text('[states]\noff = "plain"\n')
    with pytest.raises(UserError, match="off must be 'fork'"):
        feature.load(str(folder))
