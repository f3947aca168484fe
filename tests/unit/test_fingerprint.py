"""A machine's fingerprint (CPU model, microcode, governor, turbo, SMT), recorded and compared."""
import json

from harness.analysis import stats
from harness.guest import fingerprint

CPUINFO = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6230\nmicrocode\t: 0x5003604\n"


def reader(files):
    return lambda path: files.get(path)


def test_a_bare_metal_machine_and_a_vm():
    metal = fingerprint.fingerprint(reader({
        "/proc/cpuinfo": CPUINFO,
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance\n",
        "/sys/devices/system/cpu/intel_pstate/no_turbo": "1\n",
        "/sys/devices/system/cpu/smt/control": "off\n"}))
    assert metal == {"cpu": "Intel(R) Xeon(R) Gold 6230", "microcode": "0x5003604",
                     "governor": "performance", "turbo": "off", "smt": "off"}
    amd = fingerprint.fingerprint(reader({"/sys/devices/system/cpu/cpufreq/boost": "1\n"}))
    assert amd["turbo"] == "on" and amd["cpu"] is None and amd["governor"] is None
    assert fingerprint.differences(metal, {**metal, "microcode": "0x5003302", "turbo": "on"}) == \
        ["microcode: 0x5003604 vs 0x5003302", "turbo: off vs on"]
    assert fingerprint.differences(metal, None) == []


def test_runs_on_machines_that_differ_are_named_when_compared(tmp_path, capsys):
    runs = []
    for name, microcode in (("a", "0x1"), ("b", "0x2")):
        run = tmp_path / name
        (run / "k").mkdir(parents=True)
        (run / "metadata.json").write_text(json.dumps({
            "run_id": name, "accel": "kvm", "kernels": {"k": {}},
            "host": {"fingerprint": {"cpu": "X", "microcode": microcode, "governor": None,
                                     "turbo": None, "smt": "on"}}}))
        (run / "k" / "w.jsonl").write_text(json.dumps({"type": "record", "fork_ns": 1}) + "\n")
        runs.append(run)
    stats.load_runs(runs)
    assert "microcode: 0x1 vs 0x2" in capsys.readouterr().err
    stats.load_runs([runs[0], runs[0]])
    assert "differ" not in capsys.readouterr().err
