"""A CI runner's user: a freshly created unprivileged user (in the kvm group where there is one)
builds the guest image without root (mmdebstrap in unshare mode, fakeroot), finds the kernel the
real tests share in a shared cache (read only: HARNESS_SHARED_CACHE), boots it and runs
fork-memory. Needs root to create the user (CI runs as root).

The harness the user runs is this checkout and its virtualenv, hard-linked into a folder every
user can read (the checkout may sit in a private home): the scripts in the copy's bin/ are
pointed at the copy's interpreter.
"""
import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import cache, paths
from tests.real.kernels import CONFIG_ARGS, SRC

pytestmark = pytest.mark.slow
USER = "harness-runner-test"


def sh(*argv, **kw):
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kw)


@pytest.fixture
def runner_user():
    if os.geteuid() != 0:
        pytest.fail("this test creates a user: run it as root (CI does)")
    subprocess.run(["userdel", "-r", USER], capture_output=True)      # left by an earlier run
    sh("useradd", "--create-home", "--shell", "/bin/sh", USER)
    if subprocess.run(["getent", "group", "kvm"], capture_output=True).returncode == 0:
        sh("usermod", "-aG", "kvm", USER)
    yield pwd.getpwnam(USER)
    # what the test's runs as that user left behind (none expected), by process id
    left = subprocess.run(["ps", "-u", USER, "-o", "pid="], capture_output=True, text=True).stdout.split()
    for pid in left:
        subprocess.run(["kill", pid], capture_output=True)
    subprocess.run(["userdel", "-r", USER], capture_output=True)


@pytest.fixture
def readable():
    top = Path(tempfile.mkdtemp(prefix="harness-unpriv-", dir="/var/tmp"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def copy_harness(top):
    """(python, root) of a copy of this checkout and its virtualenv under top."""
    root, venv = top / "repo", top / "venv"
    root.mkdir()
    for name in ("harness", "kernel-config", "vm-images", "workloads", "experiments", "features"):
        sh("cp", "-al", str(paths.ROOT / name), str(root / name))
    sh("cp", "-al", sys.prefix, str(venv))
    old = f"#!{sys.prefix}/bin/python"
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            text = script.read_bytes()
            if text.startswith(old.encode()):
                script.unlink()                 # a hard link: write a new file, not the original
                script.write_bytes(f"#!{venv}/bin/python".encode() + text[len(old):])
                script.chmod(0o755)
    return venv / "bin" / "python", root


def share(top, source, kernel):
    """A shared cache holding the real tests' 6.1 source tree and kernel (hard links)."""
    shared = top / "shared"
    (shared / "sources" / "index").mkdir(parents=True)
    (shared / "builds").mkdir()
    own = cache.root() / "sources"
    index = [p for p in (own / "index").iterdir() if p.read_text().strip() == source.path.name]
    assert index, f"no index entry for {source.path}"
    for entry in index:                 # one per request (package version, tarball) of this tree
        sh("cp", "-al", str(entry), str(shared / "sources" / "index" / entry.name))
    sh("cp", "-al", str(source.path), str(shared / "sources" / source.path.name))
    sh("cp", "-al", str(kernel.path), str(shared / "builds" / kernel.path.name))
    return shared


def test_a_runner_user_builds_the_image_boots_and_runs_fork_memory(runner_user, readable, source, kernel):
    python, root = copy_harness(readable)
    shared = share(readable, source, kernel)
    home = Path(runner_user.pw_dir)
    env = {"HARNESS_SHARED_CACHE": str(shared), "HARNESS_ROOT": str(root), "PYTHONPATH": str(root),
           "HARNESS_RESULTS": str(home / "results"), "PATH": "/usr/bin:/bin",
           "HARNESS_HEARTBEAT": "10"}
    command = " ".join(["env", *(f"{k}={shlex.quote(v)}" for k, v in env.items()), str(python),
                        "-m", "harness", "run", "--kernel-src", SRC, *CONFIG_ARGS,
                        "--param", "mib=256", "--label", "runner"])
    proc = subprocess.run(["su", "-", USER, "-c", f"cd && {command}"], capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "VmPTE:" in proc.stdout and "PageTables delta at fork" in proc.stdout
    # the image: built here, without root; stderr is a pipe, so a log: step lines and heartbeats
    assert "▶ guest image debian-minimal\n" in proc.stderr
    assert "… guest image debian-minimal: 10 s; mmdebstrap, unshare mode: bookworm" in proc.stderr
    images = list((home / ".cache/kernel-harness/images").glob("*/image.json"))
    assert len(images) == 1
    info = json.loads(images[0].read_text())
    assert info["built_by"].startswith("mmdebstrap") and "dropbear-bin" in info["packages"]
    assert images[0].parent.stat().st_uid == runner_user.pw_uid
    (run,) = (home / "results").iterdir()
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["kernels"]["runner"]["build_key"] == kernel.key          # from the shared cache
    assert meta["kernels"]["runner"]["cached_build"] is True
    assert not (home / ".cache/kernel-harness/builds" / kernel.key).exists()
    assert not (home / ".cache/kernel-harness/sources").exists()        # the shared tree, read only
    (record,) = [json.loads(line) for line in (run / "runner" / "fork-memory.jsonl").read_text().splitlines()]
    # 256 MiB of 4 KiB pages: 128 PTE pages (512 kB) in each process on a stock kernel; a copying
    # fork adds about that much to PageTables (500 kB here)
    assert 512 <= record["parent_vmpte_kb"] < 1024 and record["pagetables_delta_kb"] >= 448
    console = (run / "runner" / "console.log").read_text()
    assert "Run /usr/sbin/harness-init" in console
