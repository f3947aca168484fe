"""RemoteMachine's logic (harness.guest.remote) without a machine: the --machine URL, the kexec
command line and token, the build id read from ELF notes, each identity mismatch, the pinned host
key, and the bounded waits (a machine that never answers, one that comes back on another kernel).
The real kexec is tests/real/test_machine_real.py."""
import struct
import time

import paramiko
import pytest

from harness import cli
from harness.errors import GuestError, GuestTimeout, UserError
from harness.guest import remote
from harness.guest.remote import Address, RemoteMachine


@pytest.mark.parametrize("url,address", [
    ("ssh://root@testbox", Address("root", "testbox", 22)),
    ("ssh://me@192.0.2.7:2222", Address("me", "192.0.2.7", 2222)),
    ("ssh://lab-3.example.org/", Address("root", "lab-3.example.org", 22)),
    ("ssh://root@[2001:db8::1]:22", Address("root", "2001:db8::1", 22)),
])
def test_a_machine_url_is_parsed(url, address):
    assert remote.parse_url(url) == address


@pytest.mark.parametrize("url", ["root@testbox", "http://testbox", "ssh://root@testbox:0",
                                 "ssh://root@testbox:70000", "ssh://-oProxyCommand=x", "ssh://root@",
                                 "ssh://root@box/path", "ssh://ro ot@box", "", None])
def test_a_bad_machine_url_is_one_user_error(url):
    with pytest.raises(UserError, match="write ssh://USER@HOST"):
        remote.parse_url(url)


def test_the_address_prints_as_a_url_and_as_known_hosts_names_it():
    assert str(Address("root", "box", 2222)) == "ssh://root@box:2222"
    assert Address("root", "box", 22).known_hosts_name == "box"
    assert Address("root", "box", 2222).known_hosts_name == "[box]:2222"


def test_the_kexec_command_line_is_the_machines_own_plus_extra_and_token():
    own = "BOOT_IMAGE=/vmlinuz-6.1.0-50-amd64 root=UUID=ab-cd ro quiet initrd=\\initrd.img harness.boot=old"
    line = remote.kexec_cmdline(own, "root=/dev/nothing panic=5", "f00d")
    assert line == "root=UUID=ab-cd ro quiet root=/dev/nothing panic=5 harness.boot=f00d"
    assert remote.kexec_cmdline(own, "", None) == "root=UUID=ab-cd ro quiet"
    assert remote.token_of(line) == "f00d" and remote.token_of("root=/dev/vda") is None


def note(name, kind, desc):
    name = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)      # noqa: E731
    return struct.pack("<III", len(name), len(desc), kind) + pad(name) + pad(desc)


BUILD_ID = bytes(range(20))
NOTES = note(b"Xen", 18, b"\x00" * 8) + note(b"Linux", 6, b"6.1") + note(b"GNU", 3, BUILD_ID)


def test_the_build_id_is_found_among_the_kernels_notes():
    assert remote.notes_build_id(NOTES) == BUILD_ID.hex()
    assert remote.notes_build_id(note(b"Xen", 3, b"abcd")) is None      # type 3 of another owner
    assert remote.notes_build_id(b"") is None


def test_the_build_id_of_an_elf_file_comes_from_its_note_segment(tmp_path):
    phoff, offset = 64, 64 + 56
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", header, 0x20, phoff)
    struct.pack_into("<HH", header, 0x36, 56, 1)
    phdr = struct.pack("<IIQQQQQQ", 4, 0, offset, 0, 0, len(NOTES), len(NOTES), 4)
    (tmp_path / "vmlinux").write_bytes(bytes(header) + phdr + NOTES)
    assert remote.elf_build_id(tmp_path / "vmlinux") == BUILD_ID.hex()
    (tmp_path / "bzImage").write_bytes(b"MZ" + bytes(100))
    assert remote.elf_build_id(tmp_path / "bzImage") is None


WANT = {"release": "6.1.192-abc", "token": "f00d", "build_id": "aa11"}
GOT = {"release": "6.1.192-abc", "cmdline": "root=/dev/vda harness.boot=f00d", "build_id": "aa11"}


def test_the_built_kernel_passes_the_identity_checks():
    assert remote.identity_problems(WANT, GOT) == []


@pytest.mark.parametrize("field,value,says", [
    ("release", "6.1.0-50-amd64", "uname -r is '6.1.0-50-amd64', the build's release is '6.1.192-abc'"),
    ("cmdline", "root=/dev/vda", "/proc/cmdline has harness.boot=None, this boot's is f00d"),
    ("cmdline", "root=/dev/vda harness.boot=beef", "harness.boot=beef, this boot's is f00d"),
    ("build_id", "bb22", "build id (/sys/kernel/notes) is bb22, the built vmlinux's is aa11"),
    ("build_id", None, "build id (/sys/kernel/notes) is None"),
])
def test_each_identity_mismatch_is_caught_alone(field, value, says):
    problems = remote.identity_problems(WANT, {**GOT, field: value})
    assert len(problems) == 1 and says in problems[0]


def test_without_a_vmlinux_the_build_id_is_not_compared():
    assert remote.identity_problems({**WANT, "build_id": None}, {**GOT, "build_id": "x"}) == []


def host_key_line():
    key = paramiko.ECDSAKey.generate(bits=256)
    return key, f"{key.get_name()} {key.get_base64()}"


def test_the_host_key_is_pinned_from_known_hosts(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _, line = host_key_line()
    (tmp_path / "kh").write_text(f"[box]:2222 {line}\nother {host_key_line()[1]}\n")
    assert remote.pinned_host_key(Address("root", "box", 2222), tmp_path / "kh") == line
    with pytest.raises(UserError, match=r"host key of ssh://root@box:22 is not in .*ssh-keyscan -p 22 box"):
        remote.pinned_host_key(Address("root", "box", 22), tmp_path / "kh")
    with pytest.raises(UserError, match="--known-hosts .*: no such file"):
        remote.pinned_host_key(Address("root", "box", 2222), tmp_path / "missing")


def test_a_missing_or_unreadable_identity_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match="--identity .*: no such file"):
        remote.load_identity(tmp_path / "nope")
    with pytest.raises(UserError, match="no SSH key to log in"):
        remote.load_identity()
    (tmp_path / "garbage").write_text("not a key\n")
    with pytest.raises(UserError, match="cannot use the key"):
        remote.load_identity(tmp_path / "garbage")


class FakeChannel:
    """try_connect answers from a script; `running` answers are what the machine says."""

    def __init__(self, connects, last_error="ConnectionRefusedError: [Errno 111] refused"):
        self.connects, self.last_error = list(connects), last_error

    def try_connect(self, timeout=2.0, probe=True):
        return self.connects.pop(0) if self.connects else False

    def close(self):
        pass


def fake_machine(monkeypatch, connects, answers=(), console=None, tmp_path=None):
    monkeypatch.setattr(remote, "POLL_S", 0.01)
    key, line = host_key_line()
    m = RemoteMachine(Address("root", "box", 22), key, line, boot_timeout=1, console=console, logdir=tmp_path)
    m.channel = FakeChannel(connects)
    answers = list(answers)
    m.running = lambda: answers.pop(0)
    return m


def test_a_machine_that_never_answers_is_a_timeout_with_the_last_ssh_error_and_the_console(
        monkeypatch, tmp_path):
    m = fake_machine(monkeypatch, [], console="echo 'Kernel panic - not syncing: VFS'", tmp_path=tmp_path)
    started = time.monotonic()
    with pytest.raises(GuestTimeout) as caught:
        m.wait_boot("f00d", 1, "the built kernel 6.1.192", "boot-1")
    assert time.monotonic() - started < 5
    text = str(caught.value)
    assert "did not come back within 1 s" in text and "Errno 111" in text
    assert "Kernel panic - not syncing: VFS" in text                      # the console's tail
    assert "Kernel panic" in (tmp_path / "console.log").read_text()      # kept beside the boot's logs
    with pytest.raises(GuestTimeout, match="did not answer over SSH within 1 s .*Errno 111"):
        m.connect(1)


def test_a_new_boot_without_the_token_fails_at_once(monkeypatch):
    """The old kernel answering while it goes down is waited through; a new boot of the machine's
    own kernel (the built one panicked and the machine rebooted) ends the wait."""
    old = ("6.1.0-50-amd64", "root=/dev/vda", "boot-1")
    fallback = ("6.1.0-50-amd64", "root=/dev/vda", "boot-2")
    m = fake_machine(monkeypatch, [True, True], [old, fallback])
    m.boot_timeout = 60
    started = time.monotonic()
    with pytest.raises(GuestError, match="did not come up: .* on kernel 6.1.0-50-amd64 without harness.boot=f00d"):
        m.wait_boot("f00d", 60, "the built kernel 6.1.192", "boot-1")
    assert time.monotonic() - started < 5


def test_the_built_kernel_answering_with_the_token_ends_the_wait(monkeypatch):
    built = ("6.1.192-abc", "root=/dev/vda harness.boot=f00d", "boot-2")
    m = fake_machine(monkeypatch, [False, True], [built])
    assert m.wait_boot("f00d", 5, "the built kernel", "boot-1") < 5


def test_the_run_command_refuses_a_bad_machine_before_building(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main(["run", "--kernel-src", "/tmp", "--machine", "root@box"]) == 2
    assert "--machine" in (err := capsys.readouterr().err) and "write ssh://" in err
    assert cli.main(["run", "--kernel-src", "/tmp", "--machine", "ssh://root@box:2222"]) == 2
    assert "box:2222 is not in" in capsys.readouterr().err      # (the user part is redacted in errors)
    assert cli.main(["run", "--kernel-src", "/tmp", "--identity", "/k"]) == 2
    assert "goes with --machine URL only" in capsys.readouterr().err


def test_leaving_a_boot_takes_the_machine_home_and_keeps_the_error_that_ended_it(monkeypatch):
    m = fake_machine(monkeypatch, [])
    m.home = {"release": "6.1.0-50-amd64"}
    went = []
    m.go_home = lambda: went.append("home") or "6.1.0-50-amd64"
    with m:
        pass
    assert went == ["home"]

    def lost():
        raise GuestTimeout("did not come back within 1 s")
    m.go_home = lost
    with pytest.raises(GuestTimeout, match="did not come back"):      # nothing else went wrong: raised
        with m:
            pass
    with pytest.raises(ValueError, match="the workload's own error"):  # the boot's error goes on up
        with m:
            raise ValueError("the workload's own error")


def test_the_end_of_a_boot_stops_a_machine_as_it_stops_a_guest(monkeypatch):
    """The run ends every boot, and the session every boot a task killed, with machine.stop(): for
    a real machine that is the way home (it was missing, and a --machine run crashed at its end)."""
    from harness.guest.machine import Machine
    for method in ("stop", "console_mark", "death_evidence", "run", "reconnect"):
        assert callable(getattr(RemoteMachine, method, None)) and callable(getattr(Machine, method, None)), method
    m = fake_machine(monkeypatch, [])
    m.home = {"release": "6.1.0-50-amd64"}
    went = []
    m.go_home = lambda: went.append("home") or "6.1.0-50-amd64"
    m.stop()
    assert went == ["home"]

    def lost():
        raise GuestTimeout("did not come back within 1 s")
    m.go_home = lost
    with pytest.raises(GuestTimeout, match="did not come back"):
        m.stop()
