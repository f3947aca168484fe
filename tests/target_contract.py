"""The promises of harness.guest.target.Target, checked on every implementation.

TargetContract is the one test class; each implementation is a subclass that provides the
fixture `target` (a ready Target) and says whether the kernel behind it is the test's own
(`owns_kernel`: its log may be read and cleared). Subclasses:
- tests/unit/test_target_contract.py: the Target over the SSH channel to an OpenSSH server on
  127.0.0.1 (a machine reached over SSH; this host's kernel, not the test's);
- tests/real/test_target_contract_real.py: Machine, Debian's 6.1 booted under QEMU.
The class name does not start with "Test": pytest collects only the subclasses.
"""
import time

import pytest

from harness.errors import ChannelLost, GuestError, GuestTimeout
from harness.guest.target import TAINTS, taint_flags


class TargetContract:
    owns_kernel = True

    def scratch(self, target):
        """A new empty folder in the target."""
        code, out, err = target.run(["mktemp", "-d", "/tmp/contract.XXXXXX"])
        assert code == 0, err
        return out.strip()

    def test_run_gives_the_exit_code_stdout_and_stderr_apart(self, target):
        assert target.run(["sh", "-c", "echo out; echo more; echo err >&2; exit 3"]) == (3, "out\nmore", "err\n")
        assert target.run(["true"]) == (0, "", "")

    def test_arguments_reach_the_command_as_given(self, target):
        """An argument list, never a string a shell splits again: spaces, $ and quotes arrive."""
        code, out, _ = target.run(["printf", "%s|", "a b", "$HOME", "'q'", '"d"', ""])
        assert (code, out) == (0, "a b|$HOME|'q'|\"d\"||")

    def test_each_line_reaches_on_line_as_it_comes(self, target):
        seen = []
        code, out, _ = target.run(["sh", "-c", "for i in 1 2 3; do echo line$i; done; printf tail"],
                                  on_line=seen.append)
        assert code == 0 and seen == ["line1", "line2", "line3", "tail"] and out == "\n".join(seen)

    def test_stdin_reaches_the_command(self, target):
        data = bytes(range(256)) * 64 + b"end"
        code, out, _ = target.run(["wc", "-c"], stdin=data, timeout=20)
        assert (code, out.strip()) == (0, str(len(data)))
        assert target.run(["cat"], stdin=b"two\nlines", timeout=20) == (0, "two\nlines", "")

    def test_put_a_file_and_a_folder_and_get_them_back(self, target, tmp_path):
        here = tmp_path / "in"
        (here / "sub").mkdir(parents=True)
        (here / "text").write_text("a file\n")
        (here / "sub" / "bytes").write_bytes(bytes(range(256)) * 3)
        (tmp_path / "single").write_bytes(b"\x00\xffone\n")
        there = self.scratch(target)
        target.put(here, there)                       # a folder: its contents
        target.put(tmp_path / "single", f"{there}/deeper")   # a file, into a folder made for it
        code, out, _ = target.run(["find", there, "-type", "f"])
        assert code == 0 and sorted(out.split()) == sorted(
            [f"{there}/text", f"{there}/sub/bytes", f"{there}/deeper/single"])
        back = tmp_path / "back"
        back.mkdir()
        for remote, local in (("text", here / "text"), ("sub/bytes", here / "sub" / "bytes"),
                              ("deeper/single", tmp_path / "single")):
            target.get(f"{there}/{remote}", back / "x")
            assert (back / "x").read_bytes() == local.read_bytes(), remote
        target.run(["rm", "-rf", there])

    def test_a_missing_file_or_an_unwritable_folder_is_a_guest_error(self, target, tmp_path):
        with pytest.raises(GuestError, match="cannot copy /no/such/file from the guest"):
            target.get("/no/such/file", tmp_path / "x")
        assert not (tmp_path / "x").exists()
        (tmp_path / "f").write_text("x")
        with pytest.raises(GuestError, match="cannot copy .* to /proc/no-such-dir in the guest"):
            target.put(tmp_path / "f", "/proc/no-such-dir")

    def test_a_command_past_its_timeout_is_a_guest_timeout_and_the_target_still_answers(self, target):
        started = time.monotonic()
        with pytest.raises(GuestTimeout, match="did not finish in the guest within 1 s"):
            target.run(["sleep", "30"], timeout=1)
        assert time.monotonic() - started < 10
        assert target.run(["echo", "still here"]) == (0, "still here", "")

    def test_a_quiet_command_outlives_the_stall_probe(self, target, monkeypatch):
        """No output for longer than `stall`: the target is probed, answers, and the command runs on."""
        monkeypatch.setattr(target, "stall", 1)
        assert target.run(["sh", "-c", "sleep 3; echo done"]) == (0, "done", "")

    def test_a_dropped_connection_is_channel_lost_until_reconnect(self, target):
        target.channel.close()
        with pytest.raises(ChannelLost):
            target.run(["true"])
        target.reconnect(timeout=30)
        assert target.run(["echo", "back"]) == (0, "back", "")

    def test_close_is_idempotent_and_a_closed_target_says_so(self, target):
        target.close()
        target.close()
        with pytest.raises(ChannelLost, match="no SSH connection"):
            target.run(["true"])
        target.reconnect(timeout=30)
        assert target.run(["true"]) == (0, "", "")

    def test_a_taint_is_reported_once(self, target):
        _, text, _ = target.run(["cat", "/proc/sys/kernel/tainted"])
        first = target.new_taints()
        assert first == taint_flags(text.strip()) and set(first) <= set(TAINTS.values())
        assert target.new_taints() == []
        if self.owns_kernel:            # taint it (bit 6, "user request"): reported once, then never
            assert target.run(["sh", "-c", "echo 64 > /proc/sys/kernel/tainted"])[0] == 0
            assert target.new_taints() == ([] if "U user request" in first else ["U user request"])
            assert target.new_taints() == []

    def test_the_kernel_log_is_read_once(self, target):
        if not self.owns_kernel:
            pytest.skip("the kernel behind this target is not the test's: its log is not read-cleared")
        mark = f"target-contract-{time.monotonic_ns()}"
        assert target.run(["sh", "-c", f"echo {mark} > /dev/kmsg"])[0] == 0
        assert mark in target.kernel_log()
        assert mark not in target.kernel_log()
