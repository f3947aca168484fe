"""Issue #12, one test (or a few) per item: crash handler, path containment, archives, credentials,
the run store, the history database, QEMU's options, process hygiene, remote cells."""
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time

import pytest

from harness import cli, crash, database, results, safety, tools
from harness.ci import history, merge, remote
from harness.guest import machine
from harness.errors import InfraError, UserError
from harness.experiment import Experiment, KernelSpec
from tests.conftest import alive

# --- the top-level handler ----------------------------------------------------------------------


def test_unexpected_exception_is_one_line_exit_70_and_a_traceback_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))

    def broken(args):
        raise RuntimeError("a bug at https://user:s3cret@example.org/x")
    monkeypatch.setattr(cli.subcommands, "cmd_cells", broken)
    assert cli.main(["cells", "--kernel-src", "/x"]) == crash.EXIT_CODE == 70
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "s3cret" not in err
    path = err.split("traceback saved to ")[1].split(";")[0]
    saved = open(path).read()
    assert path.startswith(str(tmp_path / "results" / "crashes"))
    assert "Traceback" in saved and "in broken" in saved and "s3cret" not in saved


def test_no_verdict_uses_the_crash_code():
    from harness import errors
    codes = {c.exit_code for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)
             and hasattr(c, "exit_code")}
    assert crash.EXIT_CODE not in codes | {0, 1, 130}


# --- paths, archives, credentials ---------------------------------------------------------------

def test_labels_and_containment(tmp_path):
    assert safety.label("cow-pte_v4.1") == "cow-pte_v4.1"
    for bad in ("../../x", "a/b", "", ".", "..", "a b", "é"):
        with pytest.raises(UserError):
            safety.label(bad)
    assert safety.inside(tmp_path, "a/b") == (tmp_path / "a/b").resolve()
    (tmp_path / "out").symlink_to("/etc")
    for bad in ("../x", "/etc/passwd", "out/passwd"):
        with pytest.raises(UserError, match="leads outside"):
            safety.inside(tmp_path, bad)


def archive(path, members):
    """A tar file of (TarInfo fields, data) pairs."""
    with tarfile.open(path, "w") as tar:
        for fields, data in members:
            info = tarfile.TarInfo(fields.pop("name"))
            for key, value in fields.items():
                setattr(info, key, value)
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_extract_drops_owners_and_setuid_and_strips(tmp_path):
    path = archive(tmp_path / "ok.tar", [
        ({"name": "linux-6.1/Makefile", "mode": 0o4777, "uid": 1234, "gid": 4321, "uname": "evil"}, b"VERSION = 6\n"),
        ({"name": "linux-6.1/sub", "type": tarfile.DIRTYPE, "mode": 0o2777}, None),
        ({"name": "linux-6.1/sub/link", "type": tarfile.SYMTYPE, "linkname": "../Makefile"}, None),
    ])
    safety.extract(path, tmp_path / "out", strip=1)
    st = os.stat(tmp_path / "out" / "Makefile")
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert st.st_mode & 0o7777 == 0o755
    assert os.stat(tmp_path / "out" / "sub").st_mode & 0o7000 == 0
    assert (tmp_path / "out" / "sub" / "link").read_text() == "VERSION = 6\n"


@pytest.mark.parametrize("member,why", [
    ({"name": "../escape"}, "leads outside"),
    ({"name": "/abs/olute"}, "absolute|leads outside"),
    ({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, "device"),
    ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "absolute"),
    ({"name": "d/link", "type": tarfile.SYMTYPE, "linkname": "../../etc"}, "leads outside"),
    ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../../etc/passwd"}, "leads outside"),
])
def test_extract_refuses_what_leaves_or_is_not_data(member, why, tmp_path):
    path = archive(tmp_path / "bad.tar", [(member, b"x" if member.get("type") is None else None)])
    with pytest.raises(UserError, match=why):
        safety.extract(path, tmp_path / "out")
    assert not (tmp_path / "escape").exists()


def test_credentials_are_removed_everywhere(tmp_path):
    url = "git+https://user:tok3n@example.org/linux.git#v6.2"
    assert safety.redact(url) == "git+https://example.org/linux.git#v6.2"
    assert safety.redact("see https://a@b.org/x and ftp://u:p@c/d") == "see https://b.org/x and ftp://c/d"
    exp = Experiment(kernels=[KernelSpec("k", url, series="https://u:p@lore.example/x@y/")])
    text = json.dumps(exp.to_dict()) + exp.command_line()
    assert "tok3n" not in text and "u:p@" not in text and "example.org/linux.git" in text
    store = results.RunStore("r", root=tmp_path)
    store.update(command=f"harness run --kernel-src {url}", nested={"list": [url]})
    assert "tok3n" not in (tmp_path / "r" / "metadata.json").read_text()


def test_merge_refuses_a_label_that_leaves_its_folder(tmp_path):
    for name in ("p1", "p2"):
        store = results.RunStore(name, root=tmp_path / "runs")
        store.update(experiment={"name": "e", "kernels": [{"label": "ok", "source": "x"}]},
                     kernels={"ok": {"status": "ok"}})
    bad = results.RunStore("p2", root=tmp_path / "runs")
    bad.update(kernels={"../../../escaped": {"status": "ok"}})
    (tmp_path / "runs" / "p2" / "../../../escaped").mkdir(parents=True, exist_ok=True)
    with pytest.raises(UserError, match="run p2: kernel label '../../../escaped'"):
        merge.merge([tmp_path / "runs" / "p1", tmp_path / "runs" / "p2"], out=tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_remote_archive_keeps_the_data_rules(tmp_path):
    path = archive(tmp_path / "partial.tgz", [({"name": "results/r/metadata.json", "mode": 0o6777,
                                                "uid": 999}, b"{}")])
    with tarfile.open(path) as tar:
        remote.safe_extract(tar, tmp_path / "out")
    st = os.stat(tmp_path / "out" / "results" / "r" / "metadata.json")
    assert st.st_mode & 0o7777 == 0o755 and st.st_uid == os.getuid()


# --- the run store ------------------------------------------------------------------------------

def test_cut_short_last_line_is_skipped_and_never_glued_to(tmp_path):
    store = results.RunStore("r", root=tmp_path)
    append = store.appender("k", "w")
    append({"n": 1})
    path = tmp_path / "r" / "k" / "w.jsonl"
    with open(path, "a") as fh:
        fh.write('{"n": 2, "cut sho')                       # a crash in the middle of a record
    assert store.records("k", "w") == [{"n": 1}]
    append({"n": 3})
    assert store.records("k", "w") == [{"n": 1}, {"n": 3}]
    path.write_text('{"n": 1}\n{"n": 2, "broken\n{"n": 3}\n')
    with pytest.raises(UserError, match="w.jsonl:2: not a JSON record"):
        store.records("k", "w")


def test_run_folder_is_locked_against_a_second_writer(tmp_path):
    store = results.RunStore("r", root=tmp_path)
    store.update(x=1)
    code = ("import sys; from harness.results import RunStore\n"
            "try:\n    RunStore('r', root=sys.argv[1]).update(y=2)\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc); sys.exit(9)\n")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert other.returncode == 9 and "being written by another harness" in other.stdout
    assert "y" not in json.loads((tmp_path / "r" / "metadata.json").read_text())
    store.update(z=3)                                  # the same process writes on


def test_metadata_is_synced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    results.RunStore("r", root=tmp_path).update(x=1)
    assert len(synced) >= 2                            # the file, then its folder


# --- the history database -----------------------------------------------------------------------

def test_history_is_wal_and_a_locked_writer_is_waited_for(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite"
    h = history.History(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    monkeypatch.setattr(database, "BUSY_TIMEOUT", 0.2)    # shorter than the other writer's hold
    holder = sqlite3.connect(path, timeout=1, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO runs (run_id) VALUES ('held')")
    release = threading.Timer(1.0, holder.commit)
    release.start()
    started = time.monotonic()
    h.write(lambda db: db.execute("INSERT INTO runs (run_id) VALUES ('mine')"))
    assert time.monotonic() - started >= 0.9            # it waited for the holder, then wrote
    assert {r["run_id"] for r in h.runs().to_dict("records")} == {"held", "mine"}
    holder.close()


def test_history_gives_up_with_one_clear_error(tmp_path, monkeypatch):
    h = history.History(tmp_path / "history.sqlite")
    monkeypatch.setattr(database, "BUSY_TIMEOUT", 0.05)
    holder = sqlite3.connect(tmp_path / "history.sqlite")
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(InfraError, match="stayed locked by another writer"):
        database.retry(lambda: h._write(lambda db: db.execute("INSERT INTO runs (run_id) VALUES ('x')")),
                       h.path, retries=2, pause=0.01)
    holder.rollback()
    holder.close()


# --- QEMU's options -----------------------------------------------------------------------------

def test_commas_in_paths_are_escaped_in_qemu_options(tmp_path):
    from harness.guest import arch
    logdir = tmp_path / "a,b"
    argv = machine.qemu_argv(arch.load(), "tcg", "/k,ernel", "console=ttyS0", logdir, 512, 1,
                             disk=tmp_path / "disk,1.ext4", port=2222)
    assert f"file,id=con,path={tmp_path}/a,,b/console.log" in argv
    assert any(a.startswith(f"id=root,file={tmp_path}/disk,,1.ext4,format=raw") for a in argv)
    assert "/k,ernel" in argv                          # -kernel takes a plain file name


# --- process hygiene ----------------------------------------------------------------------------

def test_supervised_children_die_with_a_sigkilled_parent(tmp_path):
    """A 'harness' that starts a command whose children fork again, then is SIGKILLed: within 5 s
    nothing it started is left."""
    script = ("import sys, time; from harness import tools\n"
              "p = tools.popen(['sh', '-c', 'sleep 617 & sleep 618 & echo $$; wait'], stdout=sys.stdout)\n"
              "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    shell = int(parent.stdout.readline())
    sleeps = [int(p) for p in subprocess.run(["pgrep", "-P", str(shell)], capture_output=True,
                                             text=True).stdout.split()]
    assert len(sleeps) == 2 and all(map(alive, sleeps))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while any(map(alive, [shell, *sleeps])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(alive, [shell, *sleeps]))


def test_supervisor_passes_exit_status_signals_and_input(tmp_path):
    assert tools.supervised(["sh", "-c", "exit 7"]).returncode == 7
    assert tools.supervised(["sh", "-c", "kill -9 $$"]).returncode == -9
    assert tools.supervised(["cat"], input="hello", capture_output=True, text=True).stdout == "hello"
    proc = tools.popen(["sh", "-c", "sleep 619 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    grandchild = int(proc.stdout.readline())
    proc.terminate()                                   # Machine.stop, Ctrl-C: the group is stopped
    assert proc.wait(10) == -signal.SIGTERM
    deadline = time.monotonic() + 10          # on a loaded host its death can take a while
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_remote_cell_is_stopped_when_its_session_ends(tmp_path):
    """The line a runner's shell runs: its command (and all it started) is stopped when the SSH
    channel's stdin ends or carries an interrupt, and its exit code is the command's otherwise."""
    # the channel open and quiet: the command runs to its end and its code comes back
    for line, code in (("exit 3", 3), ("sleep 1; exit 4", 4)):
        quiet = subprocess.Popen(["sh", "-c", remote.watched(line)], stdin=subprocess.PIPE)
        assert quiet.wait(10) == code
        quiet.stdin.close()
    for ending in ("close", "interrupt"):
        pids = tmp_path / f"{ending}.pid"
        proc = subprocess.Popen(["sh", "-c", remote.watched(f"sleep 620 & echo $! > {pids}; wait")],
                                stdin=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        sleeper = int(pids.read_text())
        if ending == "close":
            proc.stdin.close()
        else:
            proc.stdin.write(b"\x03")
            proc.stdin.flush()
        assert proc.wait(10) != 0
        time.sleep(0.2)
        assert not alive(sleeper), ending


def test_a_patch_file_that_links_out_of_its_folder_is_refused(tmp_path):
    from harness.kernel import series
    folder = tmp_path / "series"
    folder.mkdir()
    (tmp_path / "secret").write_text("not a patch\n")
    (folder / "0001-x.patch").symlink_to(tmp_path / "secret")
    with pytest.raises(UserError, match="patch file '0001-x.patch' leads outside"):
        series.load(str(folder))


def test_insecure_download_is_recorded(tmp_path):
    args = cli.parser().parse_args(["run", "--kernel-src", "http://example.org/linux-6.2.tar.xz",
                                    "--insecure-download"])
    exp = cli.experiment(args)
    assert exp.insecure_download and exp.to_dict()["insecure_download"] is True
    assert "--insecure-download" in exp.command_line()
    assert not cli.experiment(cli.parser().parse_args(["run", "--kernel-src", "/x"])).insecure_download


def test_a_timeout_stops_the_whole_group(tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        tools.supervised(["sh", "-c", f"sleep 623 & echo $! > {tmp_path / 'pid'}; wait"], timeout=1)
    time.sleep(0.3)
    assert not alive(int((tmp_path / "pid").read_text()))
