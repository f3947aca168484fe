"""Issue #12 for real: nothing of a SIGKILLed harness is left running (a real tuxmake build), and
`--resume` finishes its run; QEMU binds its own forwarded port, with commas in its paths; the
guest image's private host key readable by its owner only.

The build test builds a variant of the kernel the real tests share (guest-base + selftests and a
CONFIG_LOCALVERSION of its own each time, so never found built): a real tuxmake build, incremental
from the shared kernel's objects in its source's workbench (a few objects and the link, not a
whole kernel), killed while the compiler runs, then finished by --resume from what the killed
build left; the variant's cache entry is removed afterwards."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness import cache
from harness.guest.machine import Machine
from tests.real.kernels import CONFIG_ARGS, SRC

pytestmark = pytest.mark.slow

def processes_in(folder):
    """(pid, command line) of every live process whose command line or working folder is in folder."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
            state = (proc / "stat").read_text().split(") ")[1][0]
        except OSError:
            continue
        if state != "Z" and (str(folder) in cmd or cwd.startswith(str(folder))):
            found.append((int(proc.name), cmd))
    return found


def test_sigkill_during_a_real_build_leaves_nothing_and_resume_finishes(kernel, image, tmp_path):
    # the shared kernel built first: the variant below differs from it by one option, so its build
    # compiles what depends on CONFIG_LOCALVERSION and links, in the workbench's object folder
    mark = tmp_path / "mark.config"
    mark.write_text(f'CONFIG_LOCALVERSION="-kill{uuid.uuid4().hex[:8]}"\n')
    bench = cache.root() / "bench"
    results = tmp_path / "results"
    env = {**os.environ, "HARNESS_RESULTS": str(results)}
    argv = [sys.executable, "-m", "harness", "run", "--kernel-src", SRC, *CONFIG_ARGS,
            "--config", str(mark), "--label", "k", "--accel", "tcg", "--memory", "1024",
            "--workload", "fork-memory", "--param", "mib=32"]
    harness = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:      # kill once the compiler runs
            running = [cmd for _, cmd in processes_in(bench)]      # the workbench's object folders
            if any(" -o " in cmd and "cc1" in cmd for cmd in running):
                break
            assert harness.poll() is None, "the harness ended before its build could be killed"
            time.sleep(0.05)
        else:
            raise AssertionError("no compiler ever ran")
        # (a process between fork and exec has an empty command line)
        names = {Path(c.split()[0]).name for _, c in processes_in(bench) if c.split()}
        print("running at the kill:", sorted(names))
        harness.send_signal(signal.SIGKILL)
        harness.wait()
        killed = time.monotonic()
        while processes_in(bench) and time.monotonic() - killed < 5:
            time.sleep(0.05)
        left = processes_in(bench)
        assert not left, f"left running 5 s after the harness was killed: {left}"
        print(f"nothing left {time.monotonic() - killed:.2f} s after SIGKILL")

        (run_dir,) = [p.parent for p in results.glob("*/metadata.json")]
        done = subprocess.run([sys.executable, "-m", "harness", "run", "--resume", str(run_dir)],
                              env=env, capture_output=True, text=True, timeout=3600)
        assert done.returncode == 0, done.stderr[-3000:]
        meta = json.loads((run_dir / "metadata.json").read_text())
        k = meta["kernels"]["k"]
        assert k["status"] == "ok" and not k["cached_build"]
        assert "-kill" in k["release"]
        assert (run_dir / "k" / "fork-memory.jsonl").read_text().strip()
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        for meta in results.glob("*/metadata.json"):    # the variant's kernel: not kept
            key = json.loads(meta.read_text())["kernels"].get("k", {}).get("build_key")
            if key:
                shutil.rmtree(cache.root() / "builds" / key, ignore_errors=True)


def test_qemu_binds_its_own_port_and_the_monitor_is_private_with_commas_in_its_paths(kernel, image, tmp_path):
    """No port is chosen before QEMU binds it (nothing for another user to take in between): QEMU
    binds port 0 and the harness learns the port from a monitor only this user can open."""
    logdir = tmp_path / "logs,with,commas"
    with Machine(kernel, image, logdir, accel="tcg", memory_mib=1024, cpus=1) as m:
        assert any(a.startswith("user,") and "hostfwd=tcp:127.0.0.1:0-:22" in a for a in m.argv)
        assert os.stat(m.private).st_mode & 0o777 == 0o700
        with socket.socket() as s:              # the port is QEMU's: nobody else can bind it
            with pytest.raises(OSError):
                s.bind(("127.0.0.1", m.port))
        m.wait_ready(180)
        code, out, _ = m.run(["cat", "/proc/cmdline"])
        assert code == 0
    assert not os.path.exists(m.private)
    assert "Linux version" in (logdir / "console.log").read_text()      # the console file with commas


def test_guest_image_private_host_key_is_its_owners_only(image):
    from harness.guest.image import HOST_KEY
    stat = subprocess.run(["debugfs", "-R", f"stat /{HOST_KEY}", str(image.path)], capture_output=True,
                          text=True, check=True).stdout
    assert "Mode:  0600" in stat and "User:     0" in stat
