"""The CLI answers at once (#22): parsing flags, --help, bad-input refusals and `harness cells`
load nothing of the analysis stack (pandas, scipy, matplotlib, numpy: seconds of imports)."""
import json
import subprocess
import sys

import pytest

HEAVY = ("pandas", "scipy", "matplotlib", "numpy")
PROBE = """
import json, sys
from harness.cli import main, parser
parser()
code = None
if {argv!r}:
    try:
        code = main({argv!r})
    except SystemExit as exc:
        code = exc.code
print(json.dumps([code, sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))]))
"""


def loaded(argv, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HARNESS_CACHE": str(tmp_path / "cache"),
           "HARNESS_RESULTS": str(tmp_path / "results")}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], env=env,
                          capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    [],                                                    # building the parser
    ["--help"], ["run", "--help"], ["report", "--help"], ["export", "--help"],
    ["run", "--kernel-src", "/nonexistent"],
    ["run", "--workload", "no-such-workload"],
    ["run", "--param", "x"],
    ["build", "--kernel-src", "/nonexistent"],
    ["verify", "--kernel-src", "/nonexistent", "--series", "/nonexistent"],
    ["cells", "--experiment", "test-series"],
])
def test_the_cli_loads_no_analysis_stack(argv, tmp_path):
    code, heavy = loaded(argv, tmp_path)
    assert heavy == [], f"harness {' '.join(argv)} imported {heavy}"
    if argv and argv[-1] != "--help" and argv[0] != "cells":
        assert code == 2                                   # refused, with one clear error


def test_the_plots_process_loads_no_scipy(tmp_path):
    """report's plots child loads the runs and draws (stats, plots): scipy, a quarter of its
    imports, is loaded by the statistics only, where a t quantile is computed."""
    probe = ("import sys; from harness.analysis import drawer, stats, plots; "
             "print('scipy' in sys.modules, 'pandas' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.stdout.split() == ["False", "True"], proc.stderr


def test_report_leaves_at_once_and_other_commands_do_not():
    """harness.cli.run skips the interpreter's teardown only after a command whose parser says
    so (report); its files are whole (the report tests read them)."""
    from harness.cli import parser
    assert parser().parse_args(["report", "RUN"]).leave_at_once is True
    for argv in (["run"], ["build", "--kernel-src", "K"], ["nightly"], ["cells"]):
        assert getattr(parser().parse_args(argv), "leave_at_once", False) is False
