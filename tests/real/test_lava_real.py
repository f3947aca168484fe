"""The test steps of an exported LAVA job, run for real: the shared kernel booted as the harness
boots it, the workload bundle laid where the job's overlay puts it, every definition's steps run
in the guest with a lava-test-case that prints LAVA's test-case signals, the signals turned into
LAVA's results format, imported, and compared with the harness's own run of the same workload.

No LAVA dispatcher runs here (docs/ci.md: "LAVA"); what this proves is that the steps the jobs carry
work in the harness's image and that their figures come back whole.
"""
import json
import re
import tarfile

import pytest
import yaml

from harness import cli
from harness.ci import lava
from harness.guest.machine import Machine
from tests.real.kernels import CONFIG_ARGS, SRC

pytestmark = pytest.mark.slow

# what LAVA's own lava-test-case script prints for the dispatcher to record
FAKE_TEST_CASE = r"""#!/bin/sh
name=$1; shift; result=; measurement=; units=
while [ $# -gt 0 ]; do
  case $1 in --result) result=$2;; --measurement) measurement=$2;; --units) units=$2;; esac; shift 2
done
echo "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=$name RESULT=$result MEASUREMENT=$measurement UNITS=$units>"
"""
SIGNAL = re.compile(r"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=(\S+) RESULT=(\S+) MEASUREMENT=(\S*) UNITS=(\S*)>")


def test_the_jobs_steps_run_in_the_guest_and_their_figures_come_back(kernel, image, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    assert cli.main(["run", "--kernel-src", SRC, *CONFIG_ARGS, "--label", "stock", "--workload",
                     "fork-memory", "--param", "mib=64", "--param", "feature=0", "--param", "feature=1",
                     "--feature", "cow-pte"]) == 0
    (run,) = (tmp_path / "results").iterdir()
    (job_path,) = lava.export(run, tmp_path / "lava")
    job = yaml.safe_load(job_path.read_text())
    definitions = job["actions"][2]["test"]["definitions"]
    bundle = tmp_path / "bundle"
    with tarfile.open(tmp_path / "lava" / "workloads" / "fork-memory.tar.gz") as tar:
        tar.extractall(bundle)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "lava-test-case").write_text(FAKE_TEST_CASE)
    cases = []
    with Machine(kernel, image, tmp_path / "boot", accel="tcg") as m:
        m.wait_ready(180)
        m.put(bundle, lava.GUEST)
        m.put(shim, "/usr/local/bin")
        assert m.run(["chmod", "755", "/usr/local/bin/lava-test-case"])[0] == 0
        for i, d in enumerate(definitions, 1):
            script = " && ".join(d["repository"]["run"]["steps"])
            code, out, err = m.run(["sh", "-c", script], timeout=600)
            assert code == 0, err
            cases += [{"suite": f"{i}_{d['name']}", "name": n, "result": r, "job": "1",
                       "measurement": v or "None", "unit": u} for n, r, v, u in SIGNAL.findall(out)]
    results = tmp_path / "results.yaml"
    results.write_text(yaml.safe_dump(cases))
    imported = lava.import_results(tmp_path / "lava", [results])
    via_lava = [json.loads(line) for line in (imported.dir / "stock" / "fork-memory.jsonl").read_text().splitlines()]
    direct = [json.loads(line) for line in (run / "stock" / "fork-memory.jsonl").read_text().splitlines()]
    assert [r["feature_state"] for r in via_lava] == [r["feature_state"] for r in direct] == ["off", "inactive"]
    for a, b in zip(via_lava, direct):
        assert a["mib"] == b["mib"] == 64 and a["pages_touched"] == b["pages_touched"] == 16384
        assert a["feature_config"] == b["feature_config"] and a["clocksource"] == b["clocksource"]
        # another boot: the processes' page tables agree to a few pages (PageTables' growth at fork
        # moves in 100 kB steps between boots here, so it is only checked to be there), the times
        # do not need to agree
        for field in ("parent_vmpte_kb", "child_vmpte_kb"):
            assert abs(a[field] - b[field]) <= 16, field
        assert a["pagetables_delta_kb"] >= 64 and a["fork_ns"] > 0
    assert cli.main(["report", str(imported.dir)]) == 0
