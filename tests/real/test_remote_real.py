"""Cells on SSH runners (harness.ci.remote) against two real OpenSSH servers on 127.0.0.1.

Each "runner" is an sshd on its own port with its own host key, letting in one test key; both run
this checkout's harness (the runner's workdir is paths.ROOT). The experiment has two kernels, both
Debian's linux-source-6.1 with guest-base + selftests (the kernel every real test shares, built
once), and two cells (fork-memory with 32 and with 64 MiB), each of which boots both kernels.
"""
import json
import os
import platform
import shlex
import shutil
import socket
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from harness import paths
from harness.ci import remote
from tests.conftest import alive

pytestmark = pytest.mark.slow

EXPERIMENT = """name = "remote-tiny"
source = "debian:linux-source-6.1"

[[kernels]]
label = "a"
fragments = ["guest-base", "selftests"]

[[kernels]]
label = "b"
fragments = ["guest-base", "selftests"]

[[workloads]]
name = "fork-memory"
params = { mib = [32, 64] }
"""
CELLS = ["fork-memory.mib=32", "fork-memory.mib=64"]
CELL = CELLS[0]


def sshd_binary():
    found = shutil.which("sshd") or (os.path.exists("/usr/sbin/sshd") and "/usr/sbin/sshd")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "openssh-server"], capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = os.path.exists("/usr/sbin/sshd") and "/usr/sbin/sshd"
    if not found:
        pytest.skip("no sshd, and openssh-server cannot be installed here (not root or no apt-get)")
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                   check=True)
    return path


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    """Two sshd 'runners': specs, known_hosts, identity, the remote command, the sshd pids."""
    sshd = sshd_binary()
    tmp = tmp_path_factory.mktemp("sshd")
    identity = keygen(tmp / "id_test")
    (tmp / "authorized_keys").write_text((tmp / "id_test.pub").read_text())
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation dir
    procs, specs, known = [], [], []
    for i in range(2):
        port = free_port()
        hostkey = keygen(tmp / f"host_key_{i}")
        config = tmp / f"sshd_config_{i}"
        config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {hostkey}
AuthorizedKeysFile {tmp}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PidFile {tmp}/sshd_{i}.pid
Subsystem sftp internal-sftp
""")
        log = open(tmp / f"sshd_{i}.log", "w")
        procs.append(subprocess.Popen([sshd, "-D", "-f", str(config), "-e"], stdout=log, stderr=log))
        specs.append(f"{os.environ.get('USER') or 'root'}@127.0.0.1:{port}")
        known.append(f"[127.0.0.1]:{port} " + " ".join(hostkey.with_suffix(".pub").read_text().split()[:2]))
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text("\n".join(known) + "\n")
    try:
        for proc, spec in zip(procs, specs):
            port = int(spec.rsplit(":", 1)[1])
            for _ in range(100):
                assert proc.poll() is None, "".join(p.read_text() for p in tmp.glob("sshd_*.log"))
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
        # the runner's login environment is not ours: hand it the PATH and the harness's settings
        env = {k: v for k, v in os.environ.items() if k == "PATH" or k in ("HARNESS_CACHE", "HARNESS_ROOT")}
        command = ("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
                   + f"; cd {{workdir}} && {shlex.quote(sys.executable)} -m harness")
        yield SimpleNamespace(specs=specs, known_hosts=known_hosts, identity=identity, command=command,
                              pids=[p.pid for p in procs])
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def experiment_file(tmp_path):
    path = tmp_path / "remote-tiny.toml"
    path.write_text(EXPERIMENT)
    return path


def why(r, err):
    return [c.attempts for c in r.cells] + [line for line in err.splitlines() if "error" in line]


def unpack(r):
    return r.specs, r.known_hosts, r.identity, r.command


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def descendants(pid):
    found = children(pid)
    return found + [d for c in found for d in descendants(c)]


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def remote_cli(argv):
    from harness import cli
    return cli.main(["remote", *argv])


def records(run_dir, label):
    lines = (run_dir / label / "fork-memory.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_cells_run_on_two_hosts_and_merge_like_a_local_run(runners, experiment_file, tmp_path, capfd):
    specs, known_hosts, identity, command = unpack(runners)
    code = remote_cli(["--experiment", str(experiment_file), "--host", specs[0], "--host", specs[1],
                       "--remote-workdir", str(paths.ROOT), "--remote-command", command,
                       "--known-hosts", str(known_hosts), "--identity", str(identity),
                       "--results", str(tmp_path / "remote")])
    out, err = capfd.readouterr()
    assert code == 0, err[-3000:]
    # one cell on each host, both kernels in it, its output streamed back under the host's name
    assert f"[{specs[0]}] cell {CELLS[0]}: attempt 1" in err and f"[{specs[1]}] cell {CELLS[1]}: attempt 1" in err
    assert all(f"[{spec}] {k}: fork-memory, fork" in out for spec in specs for k in "ab")
    (merged,) = [p for p in (tmp_path / "remote").iterdir() if (p / "metadata.json").exists()]
    meta = json.loads((merged / "metadata.json").read_text())
    assert list(meta["kernels"]) == ["a", "b"]
    assert all(meta["kernels"][k]["status"] == "ok" for k in "ab")
    assert len(meta["merged_from"]) == 2 and meta["experiment"]["path"] == str(experiment_file)
    assert "--cell" not in meta["command"] and list(meta["hosts"]) == [platform.node()]
    cells = meta["remote"]["cells"]
    assert [cells[c]["attempts"][0]["host"] for c in CELLS] == specs
    assert all(len(cells[c]["attempts"]) == 1 for c in CELLS)
    # each cell's run measured both kernels: every record says which run and host it came from
    for label in "ab":
        recs = sorted(records(merged, label), key=lambda r: r["mib"])
        assert [r["mib"] for r in recs] == [32, 64] and {r["host"] for r in recs} == {platform.node()}
        assert [r["from_run"] for r in recs] == meta["merged_from"]

    # the same experiment run here, in one go: the same cells, the same record fields
    local = tmp_path / "local"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--experiment", str(experiment_file)],
                          env={**os.environ, "HARNESS_RESULTS": str(local)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (local_run,) = local.iterdir()
    local_meta = json.loads((local_run / "metadata.json").read_text())
    assert list(local_meta["kernels"]) == list(meta["kernels"])
    for label in "ab":
        mine = sorted(records(merged, label), key=lambda r: r["mib"])
        theirs = sorted(records(local_run, label), key=lambda r: r["mib"])
        assert len(mine) == len(theirs) == 2
        assert [set(r) - {"host", "from_run"} for r in mine] == [set(r) - {"host"} for r in theirs]
        assert [r["mib"] for r in mine] == [r["mib"] for r in theirs] and mine[0]["kernel"] == label
        assert sorted(c["params"]["mib"] for c in meta["kernels"][label]["tasks"]) == \
               sorted(c["params"]["mib"] for c in local_meta["kernels"][label]["tasks"])


def test_dead_host_cell_is_queued_again_on_a_live_host(runners, experiment_file, tmp_path, capfd):
    """A third host where nothing listens takes the cell (both kernels) first; a live host runs it
    instead. (One cell, so one guest at a time: two TCG guests on a busy 2-core host can lose their clock.)"""
    specs, known_hosts, identity, command = unpack(runners)
    dead = f"{specs[0].split('@')[0]}@127.0.0.1:{free_port()}"    # nothing listens there
    r = remote.run_on_hosts(experiment_file, [dead, *specs], [], paths.ROOT, tmp_path, cells=[CELL],
                            command=command, known_hosts=known_hosts, identity=identity)
    err = capfd.readouterr().err
    assert r.failed == [] and r.exit_code == 0, why(r, err)
    (a,) = r.cells
    assert [x["host"] for x in a.attempts][0] == dead and a.attempts[1]["host"] in specs
    assert a.attempts[0]["status"] == "failed" and "Unable to connect" in a.attempts[0]["error"]
    assert f"[{dead}] cell {CELL}: failed" in err and "queued again for another host" in err
    assert f"[{dead}] host dropped" in err and f"cell {CELL}: ok after 2 attempts" in err
    meta = r.store.metadata
    assert all(meta["kernels"][k]["status"] == "ok" and records(r.store.dir, k) for k in "ab")
    assert meta["remote"]["hosts"][dead]["error"] and meta["remote"]["cells"][CELL]["status"] == "ok"


def runner_harness(sshd_pid, pattern="-m harness run", timeout=600):
    """The runner's harness under this sshd and everything it started, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in descendants(sshd_pid) if pattern in cmdline(p)]
        if found:
            time.sleep(2)
            return found + [d for p in found for d in descendants(p)]
        time.sleep(0.1)
    raise AssertionError("the runner's harness never started")


def gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_connection_lost_mid_run_is_queued_again(runners, experiment_file, tmp_path, capfd):
    specs, known_hosts, identity, command = unpack(runners)
    cut_off = []

    def cut():  # once runner 0's harness is running, kill its SSH session (not the listener)
        cut_off.extend(runner_harness(runners.pids[0]))
        for pid in children(runners.pids[0]):
            os.kill(pid, signal.SIGKILL)
    threading.Thread(target=cut, daemon=True).start()
    r = remote.run_on_hosts(experiment_file, specs, [], paths.ROOT, tmp_path, cells=[CELL],
                            command=command, known_hosts=known_hosts, identity=identity)
    err = capfd.readouterr().err
    (a,) = r.cells
    assert [x["host"] for x in a.attempts] == specs and a.status == "ok" and r.exit_code == 0, why(r, err)
    assert a.attempts[0]["exit_code"] == -1 and f"[{specs[0]}] host dropped" in err
    assert a.attempts[0]["error"].startswith("connection lost during the run")
    assert r.store.metadata["kernels"]["a"]["status"] == "ok" and records(r.store.dir, "a")
    # the runner stopped the harness of the lost session, and its guest (harness.remote.watched)
    assert cut_off and not gone(cut_off, 30), [cmdline(p) for p in cut_off if alive(p)]


def test_runner_without_the_harness_is_a_host_failure(runners, experiment_file, tmp_path, capfd):
    specs, known_hosts, identity, command = unpack(runners)
    r = remote.run_on_hosts(experiment_file, specs[:1], [], tmp_path / "no such checkout", tmp_path,
                            cells=[CELL], command=command, known_hosts=known_hosts, identity=identity)
    err = capfd.readouterr().err
    first = r.cells[0].attempts[0]
    assert r.failed == [CELL] and r.exit_code == 3 and r.store is None
    assert "no run fetched" in first["error"] and "no such checkout" in first["error"]
    assert f"[{specs[0]}] host dropped" in err


def test_unknown_host_key_is_refused(runners, experiment_file, tmp_path, capfd):
    specs, known_hosts, identity, command = unpack(runners)
    only_first = tmp_path / "known_hosts"
    only_first.write_text(known_hosts.read_text().splitlines()[0] + "\n")
    r = remote.run_on_hosts(experiment_file, [specs[1]], [], paths.ROOT, tmp_path, cells=[CELL],
                            command=command, known_hosts=only_first, identity=identity)
    err = capfd.readouterr().err
    assert r.failed == [CELL] and r.exit_code == 3 and r.store is None
    attempt = r.cells[0].attempts[0]        # then: no host left to run it
    assert r.cells[0].attempts[-1]["error"] == "no host left to run it"
    assert "is not in" in attempt["error"] and "refusing to connect" in attempt["error"]
    assert "SHA256:" in attempt["error"] and "refusing to connect" in err
    assert only_first.read_text().count("\n") == 1      # nothing was added
    assert not (tmp_path / "remote").exists() and not list(tmp_path.glob("*.parts"))


def test_cell_timeout_stops_the_harness_on_the_runner(runners, experiment_file, tmp_path, capfd):
    specs, known_hosts, identity, _ = unpack(runners)
    # a "harness" that hangs: the runner must stop it when the cell's time is up
    r = remote.run_on_hosts(experiment_file, specs[:1], [], paths.ROOT, tmp_path, cells=[CELL],
                            command="sleep 617 && echo", known_hosts=known_hosts, identity=identity,
                            cell_timeout=3)
    capfd.readouterr()
    (attempt,) = r.cells[0].attempts           # not queued again: it is the cell that is slow
    assert attempt["error"].startswith("timed out after 3 s") and attempt["seconds"] < 30
    assert r.failed == [CELL]
    left = [pid for sshd in runners.pids for pid in descendants(sshd) if "sleep 617" in cmdline(pid)]
    assert not left, "the runner still runs the timed-out cell"


def test_interrupted_remote_stops_the_runners_harness(runners, experiment_file, tmp_path):
    """Ctrl-C here stops the cell on the runner. The "harness" there is a silent stand-in (a real
    one writing its progress dies of the closed channel on its next line anyway; a quiet one, in
    a long build, used to be left running)."""
    specs, known_hosts, identity, _ = unpack(runners)
    local = subprocess.Popen([sys.executable, "-m", "harness", "remote", "--experiment", str(experiment_file),
                              "--host", specs[0], "--known-hosts", str(known_hosts), "--identity",
                              str(identity), "--remote-command", "sleep 621 && echo", "--cell", CELL,
                              "--remote-workdir", str(paths.ROOT), "--results", str(tmp_path / "out")],
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "stderr", "w"),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    there = runner_harness(runners.pids[0], "sleep 621")
    local.send_signal(signal.SIGINT)                       # Ctrl-C here
    assert local.wait(60) == 130, (tmp_path / "stderr").read_text()[-3000:]
    left = gone(there, 10)
    assert not left, [cmdline(p) for p in left]


def test_lost_session_stops_the_cell_on_the_runner(runners, experiment_file, tmp_path, capfd):
    specs, known_hosts, identity, _ = unpack(runners)
    found = []

    def cut():
        found.extend(runner_harness(runners.pids[0], "sleep 622"))
        for pid in children(runners.pids[0]):
            os.kill(pid, signal.SIGKILL)
    threading.Thread(target=cut, daemon=True).start()
    r = remote.run_on_hosts(experiment_file, specs[:1], [], paths.ROOT, tmp_path, cells=[CELL],
                            command="sleep 622 && echo", known_hosts=known_hosts, identity=identity)
    capfd.readouterr()
    assert r.cells[0].attempts[0]["exit_code"] == -1 and found
    left = gone([p for p in found if "sleep 622" in cmdline(p)], 10)
    assert not left, [cmdline(p) for p in left]
