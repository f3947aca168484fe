import subprocess

import pytest


def make_fake_tree(path, kconfig=""):
    """A directory that looks enough like a kernel tree for sources and kconfig logic."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 7\nEXTRAVERSION = -test\n")
    (path / "init").mkdir(exist_ok=True)
    (path / "init" / "main.c").write_text("int main_init;\n")
    (path / "mm").mkdir(exist_ok=True)
    (path / "mm" / "Kconfig").write_text(kconfig)
    return path


@pytest.fixture
def fake_tree(tmp_path):
    return make_fake_tree(tmp_path / "linux")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(d))
    return d


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def alive(pid):
    """True while process pid runs (a zombie is not running)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False
