import importlib.util
import json
import mmap
import os
import re

import pytest

from harness import paths

spec = importlib.util.spec_from_file_location("guestlib", paths.WORKLOADS / "common" / "guestlib.py")
guestlib = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guestlib)


def test_jiffies_clock_is_refused():
    assert "jiffies" in guestlib.clock_problem("jiffies", 300)
    assert "same value" in guestlib.clock_problem("tsc", 0)
    assert "4000000 ns" in guestlib.clock_problem("tsc", 4_000_000)
    assert guestlib.clock_problem("tsc", 300) is None
    assert guestlib.clock_problem("kvm-clock", 40) is None


def test_read_step_of_a_tick_clock_is_zero_and_of_a_counter_is_not(monkeypatch):
    ticks = iter(range(10**6))
    monkeypatch.setattr(guestlib.time, "clock_gettime_ns", lambda clock: next(ticks) // 50 * 4_000_000)
    assert guestlib.read_step_ns() == 0
    monkeypatch.undo()
    assert 0 < guestlib.read_step_ns() < 1_000_000    # this host's own clock


def test_refusal_is_an_error_record_and_exit(monkeypatch, capsys):
    monkeypatch.setattr(guestlib, "clock_info", lambda: {"clocksource": "jiffies", "problem": "jiffies"})
    with pytest.raises(SystemExit) as ex:
        guestlib.refuse_unless_clock_ok()
    assert ex.value.code == 3
    record = json.loads(capsys.readouterr().out)
    assert record["type"] == "error" and record["error"] == "clock"


def test_prctl_through_ctypes_returns_value_and_errno():
    PR_GET_DUMPABLE = 3
    assert guestlib.prctl(PR_GET_DUMPABLE) == (1, 0)
    ret, errno = guestlib.prctl(9999)
    assert ret == -1 and errno == 22  # EINVAL


def test_proc_readers_on_this_host():
    """kB figures as the kernel prints them: 32 MiB written page by page add 32 MiB to VmRSS and
    16 PTE pages (64 kB) to VmPTE; MemTotal reads as /proc/meminfo says. The block is a fresh
    anonymous mapping: a bytearray can come from heap the process touched before (glibc raises
    its mmap threshold after a large free), and then nothing new becomes resident."""
    before = guestlib.status()
    block = mmap.mmap(-1, 32 << 20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    after = guestlib.status(os.getpid())
    assert 32 * 1024 <= after["VmRSS"] - before["VmRSS"] <= 36 * 1024
    assert 64 <= after["VmPTE"] - before["VmPTE"] <= 96
    text = open("/proc/meminfo").read()
    info = guestlib.meminfo()
    assert set(info) == {line.split(":")[0] for line in text.splitlines()}
    assert info["MemTotal"] == int(re.search(r"^MemTotal:\s+(\d+) kB$", text, re.M).group(1))
    assert info["PageTables"] >= after["VmPTE"]          # the system's page tables hold ours
    block.close()
