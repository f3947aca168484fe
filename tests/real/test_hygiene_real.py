"""Issue #12 for real: nothing of a SIGKILLed harness is left running (a real tuxmake build), and
`--resume` finishes its run; QEMU started again when its port was taken, with commas in its
paths; the guest image's private host key readable by its owner only.

The build test builds the kernel the real tests share (guest-base + selftests) in a private cache
whose sources, guest images and probes are the shared cache's (linked), so the build is a real one
every time (ccache makes it quick) and leaves nothing behind in the shared cache."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cache
from harness.guest import machine
from harness.guest.machine import Machine
from tests.real.kernels import CONFIG_ARGS, SRC

pytestmark = pytest.mark.slow

BUILD_TOOLS = ("make", "gcc", "cc1", "ccache", "tuxmake", "as", "ld", "supervise.py")


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


def private_cache(tmp_path):
    """A cache of its own for builds, sharing the shared cache's sources, images and probes."""
    shared, own = cache.root(), tmp_path / "cache"
    own.mkdir()
    for entry in shared.iterdir():
        if entry.name not in ("builds", "objects", "bench", "locks"):
            (own / entry.name).symlink_to(entry)
    return own


def test_sigkill_during_a_real_build_leaves_nothing_and_resume_finishes(kernel, image, tmp_path):
    # the shared kernel built first: its source and guest image are in the shared cache, and
    # ccache holds its objects, so the private build below is a real build that takes minutes
    own = private_cache(tmp_path)
    results = tmp_path / "results"
    env = {**os.environ, "HARNESS_CACHE": str(own), "HARNESS_RESULTS": str(results)}
    env.pop("HARNESS_SHARED_CACHE", None)       # where the kernel would be found built
    argv = [sys.executable, "-m", "harness", "run", "--kernel-src", SRC, *CONFIG_ARGS, "--label", "k",
            "--accel", "tcg", "--memory", "1024", "--workload", "fork-memory", "--param", "mib=32"]
    harness = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:      # kill early: once the compiler runs
        running = [cmd for _, cmd in processes_in(own / "bench")]      # the workbench's object folders
        if any(" -o " in cmd and ("cc1" in cmd or "gcc" in cmd) for cmd in running):
            break
        assert harness.poll() is None, "the harness ended before its build could be killed"
        time.sleep(0.1)
    else:
        raise AssertionError("no compiler ever ran")
    print("running at the kill:", sorted({Path(c.split()[0]).name for _, c in processes_in(own)}))
    harness.send_signal(signal.SIGKILL)
    harness.wait()
    killed = time.monotonic()
    while processes_in(own) and time.monotonic() - killed < 5:
        time.sleep(0.05)
    left = processes_in(own)
    assert not left, f"left running 5 s after the harness was killed: {left}"
    print(f"nothing left {time.monotonic() - killed:.2f} s after SIGKILL")

    (run_dir,) = [p.parent for p in results.glob("*/metadata.json")]
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--resume", str(run_dir)], env=env,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["kernels"]["k"]["status"] == "ok" and not meta["kernels"]["k"]["cached_build"]
    assert (run_dir / "k" / "fork-memory.jsonl").read_text().strip()


def test_qemu_started_again_when_its_port_is_taken_with_commas_in_its_paths(kernel, image, tmp_path, monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [taken.getsockname()[1]]
    real = machine.free_port
    monkeypatch.setattr(machine, "free_port", lambda: ports.pop() if ports else real())
    logdir = tmp_path / "logs,with,commas"
    with Machine(kernel, image, logdir, accel="tcg", memory_mib=1024, cpus=1) as m:
        m.wait_ready(180)
        code, out, _ = m.run(["cat", "/proc/cmdline"])
        assert code == 0 and m.port != taken.getsockname()[1] and m.port_tries == 1
    taken.close()
    qemu_log = (logdir / "qemu.log").read_text()
    assert machine.PORT_TAKEN in qemu_log and "starting QEMU again with another" in qemu_log
    assert "Linux version" in (logdir / "console.log").read_text()      # the console file with commas


def test_guest_image_private_host_key_is_its_owners_only(image):
    from harness.guest.image import HOST_KEY
    stat = subprocess.run(["debugfs", "-R", f"stat /{HOST_KEY}", str(image.path)], capture_output=True,
                          text=True, check=True).stdout
    assert "Mode:  0600" in stat and "User:     0" in stat
