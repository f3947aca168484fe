"""Issue #21, one test (or a few) per item beyond the bad requests: archives unpacked against the
links made so far (on this Python and on Debian 12's own), crash files in a private place, every
SSH hop pinned, QEMU's port never chosen before it is bound, image cache entries private."""
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness import cli, crash, paths, safety
from harness.errors import UserError

# --- archives -----------------------------------------------------------------------------------

CHAIN = [("sub", tarfile.SYMTYPE, "."), ("sub/up", tarfile.SYMTYPE, ".."),
         ("up/up2", tarfile.SYMTYPE, ".."), ("up/up2/F", tarfile.REGTYPE, None)]


def chain_archive(path, members=CHAIN):
    with tarfile.open(path, "w") as tar:
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            data = b"written above the tree\n" if kind == tarfile.REGTYPE else None
            if link:
                info.linkname = link
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def test_a_chain_of_links_cannot_lead_out_of_the_tree(tmp_path):
    tree = tmp_path / "a" / "b" / "tree"
    with pytest.raises(UserError, match=r"archive member 'sub/up' links to '\.\.', which leads outside"):
        safety.extract(chain_archive(tmp_path / "chain.tar"), tree)
    assert list(tmp_path.rglob("F")) == []


def test_links_inside_the_tree_still_unpack(tmp_path):
    ok = [("d", tarfile.DIRTYPE, None), ("d/e", tarfile.SYMTYPE, ".."), ("l", tarfile.SYMTYPE, "d"),
          ("l/F", tarfile.REGTYPE, None)]
    safety.extract(chain_archive(tmp_path / "ok.tar", ok), tmp_path / "tree")
    assert (tmp_path / "tree" / "d" / "F").read_bytes() == b"written above the tree\n"


DEBIAN_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(not os.access(DEBIAN_PYTHON, os.X_OK), reason="no system Python")
def test_the_chain_is_refused_with_exit_2_on_the_systems_python_too(tmp_path):
    """Debian 12's /usr/bin/python3 is 3.11.2, without tarfile's filter: the same archive, the
    same refusal, whichever Python runs the tests."""
    archive = chain_archive(tmp_path / "chain.tar")
    script = ("import sys\nfrom harness import safety\nfrom harness.errors import UserError\n"
              "try:\n    safety.extract(sys.argv[1], sys.argv[2])\n"
              "except UserError as e:\n    print(e)\n    sys.exit(e.exit_code)\n")
    proc = subprocess.run([DEBIAN_PYTHON, "-c", script, str(archive), str(tmp_path / "a" / "b" / "tree")],
                          capture_output=True, text=True, env={"PYTHONPATH": str(paths.ROOT), "PATH": "/usr/bin"})
    version = subprocess.run([DEBIAN_PYTHON, "-V"], capture_output=True, text=True).stdout.strip()
    print(f"{DEBIAN_PYTHON}: {version}: exit {proc.returncode}: {proc.stdout.strip()}")
    assert proc.returncode == 2 and "'sub/up'" in proc.stdout, proc.stderr
    assert list(tmp_path.rglob("F")) == []


# --- crash files --------------------------------------------------------------------------------

def crash_of(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("a bug")
    monkeypatch.setattr(cli.subcommands, "cmd_cells", broken)
    assert cli.main(["cells", "--kernel-src", "/x"]) == crash.EXIT_CODE
    err = capsys.readouterr().err
    return err.split("traceback saved to ")[1].split(";")[0] if "saved to" in err else None


def test_crash_file_is_new_and_private_in_the_results_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    path = Path(crash_of(monkeypatch, capsys))
    assert path.parent == tmp_path / "results" / "crashes"
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_crash_file_goes_to_a_private_folder_when_results_cannot_be_written(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("HARNESS_RESULTS", str(blocked / "results"))     # under a file: unwritable
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    path = Path(crash_of(monkeypatch, capsys))
    assert path.parent == tmp_path / "tmp" / f"harness-crashes-{os.getuid()}"
    assert os.stat(path.parent).st_mode & 0o777 == 0o700 and os.stat(path).st_mode & 0o777 == 0o600


def test_crash_folder_that_is_a_link_or_open_to_others_is_never_used(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("HARNESS_RESULTS", str(blocked / "results"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "elsewhere").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    planted = tmp_path / "tmp" / f"harness-crashes-{os.getuid()}"
    planted.symlink_to(tmp_path / "elsewhere")          # another user's link to their folder
    assert crash_of(monkeypatch, capsys) is None
    assert list((tmp_path / "elsewhere").iterdir()) == []
    planted.unlink()
    planted.mkdir(mode=0o777)
    os.chmod(planted, 0o777)
    assert crash_of(monkeypatch, capsys) is None and list(planted.iterdir()) == []


# --- SSH: every hop pinned, no agent forwarding -----------------------------------------------

def test_every_proxyjump_hop_rejects_unknown_keys_and_forwards_no_agent(tmp_path, monkeypatch):
    from harness.ci import remote
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host runner\n  ProxyJump jump1,jump2\n  ForwardAgent yes\n"
                                              "Host jump1 jump2\n  ForwardAgent yes\n")
    host = remote._Host("ci@runner", None, None, 5)
    hops, hop = [], host.conn
    while hop is not None and not isinstance(hop, str):
        hops.append(hop)
        hop = hop.gateway or None
    assert sorted(h.host for h in hops) == ["jump1", "jump2", "runner"]
    for h in hops:
        assert type(h.client._policy).__name__ == "Reject" and h.forward_agent is False, h.host
    asked = remote._Host("ci@runner", None, None, 5, forward_agent=True)
    assert asked.conn.forward_agent is True


# --- the guest: QEMU binds its port, the image's key is private ---------------------------------

def test_qemu_is_asked_for_port_0_and_a_private_monitor():
    from harness.guest import arch, machine
    argv = machine.qemu_argv(arch.load(), "tcg", "/k", "", Path("/logs"), 512, 1, port=0,
                             monitor=Path("/run/x,y/monitor.sock"))
    joined = " ".join(argv)
    assert "hostfwd=tcp:127.0.0.1:0-:22" in joined
    assert argv[argv.index("-monitor") + 1] == "unix:/run/x,,y/monitor.sock,server=on,wait=off"
    usernet = ("Hub -1 (net0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n"
               "  TCP[HOST_FORWARD]   3       127.0.0.1 35131       10.0.2.15    22     0     0\r\n(qemu) ")
    assert machine.forwarded_port(usernet) == 35131
    assert machine.forwarded_port("(qemu) ") is None


def test_an_image_cache_entry_is_its_owners_only(tmp_path):
    from harness.guest import image
    entry = tmp_path / "entry"
    entry.mkdir(mode=0o755)
    for name in ("rootfs.ext4", "image.json", "build.log"):
        (entry / name).write_text("x")
        os.chmod(entry / name, 0o644)
    image.private(entry)
    assert os.stat(entry).st_mode & 0o777 == 0o700
    assert {os.stat(p).st_mode & 0o777 for p in entry.iterdir()} == {0o600}



def test_a_stopped_qemu_binds_port_0_and_its_monitor_names_the_port(tmp_path):
    """QEMU itself (stopped before the first instruction: nothing boots) binds the forward; the
    port its monitor names is taken, so no other process can have it."""
    import socket
    import time
    from harness import tools
    from harness.guest import arch, machine
    a = arch.load()
    if not tools.which(a["qemu"]):
        pytest.skip("no QEMU")
    monitor = tmp_path / "monitor.sock"
    argv = [a["qemu"], "-M", a["machine"], "-accel", "tcg", "-nodefaults", "-no-user-config",
            "-display", "none", "-S", "-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:22",
            "-device", f"{a['net_device']},netdev=net0", "-monitor", f"unix:{monitor},server=on,wait=off"]
    proc = tools.start(argv, tmp_path / "qemu.log")
    try:
        deadline, port = time.monotonic() + 30, None
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                port = machine.forwarded_port(machine.monitor_command(monitor, "info usernet"))
            except OSError:
                time.sleep(0.05)
        assert port, (tmp_path / "qemu.log").read_text()
        with socket.socket() as s, pytest.raises(OSError):
            s.bind(("127.0.0.1", port))
    finally:
        tools.stop(proc, grace=0)


def test_a_cut_line_is_left_out_of_a_merge_so_the_merged_records_stay_readable(tmp_path, capsys):
    from harness import stored
    from harness.ci import merge
    first, second, merged = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "m.jsonl"
    first.write_text('{"fork_ns": 1, "boot": 1}\n{"fork_ns": 2, "bo')           # cut short by a crash
    second.write_text('{"fork_ns": 3, "boot": 1}\n')
    merge.join_records(first, merged, "h1", "r1")
    merge.join_records(second, merged, "h2", "r2")
    assert [r["fork_ns"] for r in stored.records(merged, ["fork_ns"])] == [1, 3]
    assert "a.jsonl:2: a last line cut short (a crash while writing) left out" in capsys.readouterr().err
    # one rule in every reader: a broken line before the last is an error, in a merge as in a report
    broken = tmp_path / "c.jsonl"
    broken.write_text('{"fork_ns": 1, "boot": 1}\n{"fork_ns": 2, "bo\n{"fork_ns": 4, "boot": 1}\n')
    for read in (lambda: merge.join_records(broken, tmp_path / "n.jsonl", "h", "r"),
                 lambda: stored.records(broken)):
        with pytest.raises(UserError, match=r"c.jsonl:2: not a JSON record; the file is damaged"):
            read()
    assert not (tmp_path / "n.jsonl").exists()
