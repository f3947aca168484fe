"""`harness calibrate` for real: one kernel booted under two labels, interleaved, the A/A verdicts
and an injected effect found from the boots. icount mode keeps the noise low (a 25% slowdown is
seen from one boot per label); whether A and B are called different is the calibration's finding,
not something a test can require of two boots. The kernel is the one the real tests share."""
import json

import pytest

from harness import cli
from tests.real.kernels import CONFIG_ARGS, SRC

pytestmark = pytest.mark.slow


def test_calibrate_a_against_a(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    code = cli.main(["calibrate", "--kernel-src", SRC, *CONFIG_ARGS, "--timing", "icount",
                     "--memory", "1024", "--boots", "2", "--until-ci", "0.2", "--effect", "0.25",
                     "--workload", "fork-latency", "--param", "sizes_mib=8,32", "--param", "reps=6",
                     "--param", "warmup=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "A/A: " in out and "of 2 verdicts call A and B different" in out and "injected +25.0%" in out
    (run,) = tmp_path.iterdir()
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["design"]["slots"] == ["A#1", "B#1", "B#2", "A#2"]
    # the stopping rule looked after round 2: icount's boots agree within ~1%, far inside ±20%
    assert meta["design"]["stopped"].startswith("after 2 boots per kernel: every headline interval within ±20.0%")
    assert "design: stopped after 2 boots per kernel" in out
    # one build under two labels
    assert meta["kernels"]["A"]["build_key"] == meta["kernels"]["B"]["build_key"]
    result = json.loads((run / "calibration.json").read_text())
    assert result["boots"] == 2 and result["aa"]["verdicts"] == 2        # two sizes, fork_ns
    assert [p["boots"] for p in result["power"]] == [1, 2]
    assert all(0 <= r["q_value"] <= 1 and r["verdict"] for r in result["aa"]["rows"])
    assert result["power"][0]["detected"] == result["power"][1]["detected"] == 2
    assert result["detected_after_boots"] == 1
    # the boots a +25% change needs at this run's spread: icount boots differ by about 1% (seen: 0.2-1.3%)
    assert [r["size_mib"] for r in result["needed"]] == [8, 32]
    spread = [(r["boot_sd"], r["boots"]) for r in result["needed"]]
    assert all(sd < 0.03 and boots == 2 for sd, boots in spread), spread
    assert "boots per label the boot-level test needs" in out
