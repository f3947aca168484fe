"""Real tests: a real kernel built from a real source, booted under QEMU, measured in the guest.

They use the harness's normal cache (building the kernel takes minutes the first time, nothing
after). HARNESS_TEST_KERNEL_SRC picks the source (default: Debian's linux-source-6.1). The kernel is
the one every real test shares (tests/real/conftest.py: guest-base + selftests).
"""
import json
import shutil
import subprocess

import pytest

from harness.guest import arch, machine
from harness import cli
from harness.kernel import kconfig, sources
from harness.kernel.build import Build
from harness.errors import BuildError, GuestPanic, GuestTimeout, UserError
from harness import experiment
from tests import results_doc
from tests.real.kernels import CONFIG_ARGS, FRAGMENTS, SRC

pytestmark = pytest.mark.slow


def test_run_prints_fork_memory_table_and_stores_everything(kernel, image, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path))
    assert cli.main(["run", "--kernel-src", SRC, "--label", "stock", *CONFIG_ARGS]) == 0
    out = capsys.readouterr().out
    assert "VmPTE:" in out and "PageTables delta at fork" in out
    (run_dir,) = tmp_path.iterdir()
    records = [json.loads(line) for line in (run_dir / "stock" / "fork-memory.jsonl").read_text().splitlines()]
    (r,) = records
    assert r["mib"] == 1024 and r["pages_touched"] == 262144
    # 1 GiB of 4 KiB pages needs 512 PTE pages (2 MiB) in each process on a stock kernel.
    assert 2048 <= r["parent_vmpte_kb"] < 4096
    assert 2048 <= r["child_vmpte_kb"] < 4096
    assert r["pagetables_delta_kb"] >= 2048
    assert r["parent_vmrss_kb"] >= 1024 * 1024 and r["child_vmrss_kb"] >= 1024 * 1024
    assert r["fork_ns"] > 0 and r["clocksource"] != "jiffies"
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["accel"] in ("kvm", "tcg") and meta["qemu"].startswith("QEMU emulator")
    assert meta["command"].startswith("harness run --kernel-src")
    k = meta["kernels"]["stock"]
    assert k["status"] == "ok" and k["release"].startswith(kernel.info["release"])
    assert k["build_key"] == kernel.key                 # the shared kernel: not built again
    assert k["guest_uname"] == kernel.info["release"] and k["config_sha"]
    assert (run_dir / "stock" / "console.log").read_text().count("Run /usr/sbin/harness-init") == 1
    assert (run_dir / "stock" / "build.log").exists()
    assert "VmRSS" in (run_dir / "stock" / "fork-memory.md").read_text()
    # the run folder is what docs/results.md says, field by field, both ways
    assert results_doc.gaps(run_dir) == []
    # its experiment.toml runs the same experiment again
    again = experiment.load(run_dir / "experiment.toml")
    assert again.to_dict() | {"path": None} == meta["experiment"] | {"path": None}


def test_same_build_twice_builds_nothing(source, kernel):
    again = Build(source, [kconfig.fragment(f) for f in FRAGMENTS]).run()
    assert again.info["cached"] is True and again.path == kernel.path


def test_boot_runs_one_command(kernel, image, capfd):
    code = cli.main(["boot", "--kernel-src", SRC, *CONFIG_ARGS, "--", "sh", "-c", "grep -c processor /proc/cpuinfo; exit 7"])
    assert code == 7
    assert capfd.readouterr().out.strip() == "2"


def test_boot_puts_a_reproducer_and_a_folder_in_the_guests_home(kernel, image, capfd, tmp_path):
    """harness boot --put: a reviewer's reproducer runs on the kernel in one command."""
    (tmp_path / "repro.sh").write_text("echo repro ran on $(uname -r); exit 3\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.txt").write_text("forty-two\n")
    code = cli.main(["boot", "--kernel-src", SRC, *CONFIG_ARGS, "--put", str(tmp_path / "repro.sh"),
                     "--put", str(tmp_path / "data"), "--", "sh", "-c", "cat data/input.txt; sh repro.sh"])
    assert code == 3
    out = capfd.readouterr().out.split()
    assert out[0] == "forty-two" and out[1:4] == ["repro", "ran", "on"] and out[4] == kernel.info["release"]


def test_boot_phases_follow_the_console_and_the_clock_is_given_not_measured(kernel, image, tmp_path):
    with machine.Machine(kernel, image, tmp_path, accel="tcg") as m:
        m.wait_ready(timeout=60)
        code, out, _ = m.run(["cat", "/proc/cmdline"])
        # the target's file copies, both ways, bytes intact
        sent = tmp_path / "sent.bin"
        sent.write_bytes(bytes(range(256)) * 64)
        m.put(sent, "/tmp/target-test")
        m.get("/tmp/target-test/sent.bin", tmp_path / "back.bin")
        m.get("/proc/version", tmp_path / "version")
    assert code == 0 and "lpj=" in out and "tsc_early_khz=" in out
    assert (tmp_path / "back.bin").read_bytes() == sent.read_bytes()
    assert (tmp_path / "version").read_text().startswith("Linux version " + kernel.info["release"])
    phases = m.boot_phases
    # the port is left alone until dropbear said it listens; each milestone after the one before
    assert list(phases) == ["console", "init", "listening", "ssh_connected", "first_command"]
    assert phases["first_command"] == round(m.boot_seconds, 3)
    console_text = m.console_log.read_text()
    assert "Calibrating delay loop (skipped) preset value" in console_text
    assert "Not backgrounding" in console_text


def test_dropped_and_unknown_options_are_named(source, tmp_path):
    frag = tmp_path / "bad.config"
    frag.write_text("CONFIG_VIRTIO_PCI=y\nCONFIG_HARNESS_NO_SUCH_OPTION=y\n")
    build = Build(source, [kconfig.fragment("guest-base"), kconfig.fragment(frag)])
    with pytest.raises(UserError) as err:
        build.run()
    text = str(err.value)
    assert "CONFIG_VIRTIO_PCI: requested y, final .config has n" in text and "depends on PCI" in text
    assert "CONFIG_HARNESS_NO_SUCH_OPTION: unknown symbol" in text
    assert not build.cached()


def test_kernel_that_fails_to_compile(source, tmp_path):
    broken = tmp_path / "linux"
    subprocess.run(["cp", "-al", str(source.path), str(broken)], check=True)
    shutil.rmtree(broken / ".git")
    (broken / "kernel" / "bounds.c").unlink()   # a hard link: unlink, never write through it
    (broken / "kernel" / "bounds.c").write_text("#error this tree is broken on purpose\n")
    tree = sources.resolve(str(broken))
    assert tree.id != source.id
    build = Build(tree, [kconfig.fragment("guest-base")])
    with pytest.raises(BuildError) as err:
        build.run()
    assert "kernel/bounds.c" in str(err.value) and "broken on purpose" in str(err.value)
    assert not build.cached()
    assert "#error" not in (source.path / "kernel" / "bounds.c").read_text()


def test_guest_that_never_becomes_ready_times_out_with_console_tail(kernel, image, tmp_path):
    m = machine.Machine(kernel, image, tmp_path, accel="tcg", extra_cmdline="init=/bin/cat")
    with pytest.raises(GuestTimeout) as err:
        with m:
            m.wait_ready(timeout=40)      # long enough for init's line under TCG on a busy host
    assert "did not become ready within 40 s" in str(err.value)
    assert "Run /bin/cat as init process" in str(err.value)
    assert m.proc.poll() is not None


def test_guest_kernel_panic_is_reported_and_qemu_ends(kernel, image, tmp_path):
    m = machine.Machine(kernel, image, tmp_path, accel="tcg", extra_cmdline="init=/no/such/init")
    with pytest.raises(GuestPanic) as err:
        with m:
            m.wait_ready(timeout=60)
    assert "kernel panic" in str(err.value) and "/no/such/init" in str(err.value)
    assert m.proc.poll() is not None


def test_chosen_accelerator_really_boots(kernel, tmp_path):
    chosen, reason = machine.choose_accel("auto", kernel.image, tmp_path / "probe")
    ok, detail = machine.boot_probe(arch.load(), chosen, kernel.image, tmp_path / "check", 60)
    assert ok, f"{chosen} ({reason}) did not boot: {detail}"
