"""afl on a real guest kernel, with nothing emulated: Debian's linux-source-6.1 with the config
the real tests share (guest-base + selftests) plus what afl's manifest asks for (kernel_config:
CONFIG_SYSVIPC, CONFIG_FILE_LOCKING), which the harness adds as one more fragment. afl-fuzz
runs on the kernel's own System V shared memory (its segments are in /proc/sysvipc/shm while it
fuzzes) and flock, and the fork server's measured fork copies the heap's page tables (6.1 has no
COW PTE). The kernel is one incremental build from the shared one on a warm workbench."""
import json
import os
import subprocess
import sys

import pytest

from harness import cache
from harness.kernel import kconfig
from tests.real.kernels import CONFIG_ARGS, SRC

pytestmark = pytest.mark.slow

HEAP_MIB = 16          # 8 PTE tables of 4 KiB pages: 32 kB of tables in the server and its child


def test_afl_fuzzes_on_the_kernels_sysv_shm_and_flock(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--kernel-src", SRC, *CONFIG_ARGS,
                           "--label", "stock", "--accel", "tcg", "--workload", "afl",
                           "--param", "seconds=10", "--param", f"heap_mib={HEAP_MIB}"],
                          env={**os.environ, "HARNESS_RESULTS": str(results)},
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run_dir] = [p for p in results.iterdir() if (p / "metadata.json").exists()]
    kernel = json.loads((run_dir / "metadata.json").read_text())["kernels"]["stock"]
    # the added fragment (named by whoever built this key first: its name is not in the key)
    assert [f["name"] for f in kernel["fragments"]][:2] == ["guest-base", "selftests"]
    assert len(kernel["fragments"]) == 3
    config = kconfig.parse((cache.find("builds", kernel["build_key"], "config") / "config").read_text())
    assert config["CONFIG_SYSVIPC"] == "y" and config["CONFIG_FILE_LOCKING"] == "y"

    [record] = [json.loads(line) for line in (run_dir / "stock" / "afl.jsonl").read_text().splitlines()]
    assert record["execs_done"] > 0 and record["forkserver"] is True and record["elapsed_s"] >= 9
    assert record["sysv_shm_segments"] >= 1          # AFL's coverage map, a kernel SysV segment
    assert "emulated_shm" not in record and "emulated_flock" not in record
    assert record["parent_vmpte_kb"] >= 2 * HEAP_MIB and record["child_vmpte_kb"] >= 2 * HEAP_MIB
    assert record["feature_requested"] is False and record["feature_state"] == "off"
