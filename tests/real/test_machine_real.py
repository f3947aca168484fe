"""A real machine as a target (harness.guest.remote), on the stand-in (harness.guest.standin): a
QEMU guest running a full Debian (systemd, OpenSSH, kexec-tools, Debian's own kernel), reached
only as a real machine is, over SSH with its pinned host key.

One boot of the stand-in serves the module: the Target contract on its own kernel, then
`harness run --machine` kexecs Debian's 6.1 built with the real tests' fragments plus `machine`,
runs fork-memory, proves the running kernel is the built one and takes the machine home; then a
kernel that cannot come up (its root disk does not exist: it panics, the machine's panic=10
reboots it onto its own kernel) fails the run in bounded time with the console's evidence, and
the machine is back on its own kernel.
"""
import json
import time

import pytest

from harness import cli
from harness.guest.remote import token_of
from harness.guest.standin import StandIn
from harness.results import RunStore
from tests.real.kernels import CONFIG_ARGS, SRC
from tests.target_contract import TargetContract

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 300      # s for a kexec'd kernel (or the machine's own, after a panic) to answer


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    with StandIn(tmp_path_factory.mktemp("standin")) as s:
        s.wait_ready(timeout=900)
        yield s


@pytest.fixture(scope="module")
def home(standin):
    m = standin.target()
    try:
        return m.record_home(timeout=120)
    finally:
        m.close()


def at_home(standin, home):
    """The stand-in answers on its own kernel, without a harness token."""
    m = standin.target()
    try:
        m.connect(120)
        release, cmdline, _ = m.running()
        code, leftovers, _ = m.sh("ls /var/tmp/harness-kexec 2>/dev/null")
    finally:
        m.close()
    assert release == home["release"] and token_of(cmdline) is None
    assert leftovers.strip() == ""              # the per-run folder went with the kernel


class TestRemoteMachine(TargetContract):
    owns_kernel = False             # the machine's own kernel: its log is not the test's to clear

    @pytest.fixture
    def target(self, standin):
        m = standin.target()
        m.connect(120)
        yield m
        m.close()


def machine_run(standin, tmp_path, *extra):
    return cli.main(["run", "--kernel-src", SRC, *CONFIG_ARGS, "--config", "machine", "--label", "built",
                     *standin.flags(), "--boot-timeout", str(BOOT_TIMEOUT),
                     "--workload", "fork-memory", "--param", "mib=64", *extra])


def test_a_built_kernel_is_kexecd_measured_proven_and_the_machine_taken_home(
        standin, home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    assert machine_run(standin, tmp_path) == 0, capsys.readouterr().err
    (run_dir,) = tmp_path.iterdir()
    store = RunStore.open(run_dir)
    boot = store.kernel_info("built")["boots"]["1"]
    proof = boot["proof"]
    kernel = json.loads((run_dir / "metadata.json").read_text())
    assert kernel["accel"] == "machine" and kernel["machine"]["home"]["release"] == home["release"]
    assert boot["machine"].endswith(f"127.0.0.1:{standin.port}")     # (stored without the user)
    assert boot["kexec"][:3] == ["kexec", "-l", "--no-checks"]
    assert proof["release"] != home["release"] and proof["build_id_checked"] is True
    assert len(proof["build_id"]) == 40 and f"harness.boot={proof['token']}" in proof["cmdline"]
    assert proof["fingerprint"]["cpu"] and boot["fingerprint"] == proof["fingerprint"]
    (record,) = [json.loads(line) for line in (run_dir / "built" / "fork-memory.jsonl").read_text().splitlines()]
    assert record["mib"] == 64 and record["child_vmpte_kb"] > 0 and record["fork_ns"] > 0
    at_home(standin, home)


def test_a_kernel_that_cannot_come_up_fails_in_bounded_time_with_the_evidence(
        standin, home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    started = time.monotonic()
    code = machine_run(standin, tmp_path, "--cmdline", "root=/dev/harness-no-such-disk")
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 5, err
    assert "did not come up" in err and "without harness.boot=" in err
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in err       # the console's evidence
    assert "back on its own kernel" in err
    assert took < 2 * BOOT_TIMEOUT, took
    (run_dir,) = tmp_path.iterdir()
    assert RunStore.open(run_dir).kernel_info("built")["status"] == "failed"
    at_home(standin, home)
