"""Run an experiment's cells on SSH runners and merge what they measured. A cell is a group of
workloads run on every kernel of the experiment (harness.ci.cells), so the kernels a comparison meets
are all measured by one host.

Each runner is `user@host[:port]` with the harness installed at a work folder (a checkout with a
venv). The cells wait in one queue; every host runs one cell at a time, taking the next when it is
done: `harness run --experiment E --cell ID` with HARNESS_RESULTS in a fresh folder on the host,
its output streamed back line by line as `[host] ...`, then the partial run tarred, fetched and
unpacked here. At the end the partial runs are merged into one (harness.ci.merge).

Host keys must already be in ~/.ssh/known_hosts (or the file given): an unknown key is refused,
never added. The user's own account and keys are used; nothing runs under sudo. A host that fails
(cannot connect, connection lost, the remote harness missing or broken) is dropped and its cell is
queued once more for another host; a cell that fails on its own (bad request, build error, guest
failure: exit codes 2, 4, 5) is kept as failed with its logs. The run always finishes; its exit
code is non-zero when any cell ended failed.
"""
import base64
import collections
import hashlib
import math
import re
import shlex
import sys
import tarfile
import threading
import time
from pathlib import Path

from harness.ci import cells as cells_mod
from harness import paths, safety
from harness.errors import HarnessError, InfraError, UserError
from harness.experiment import EXPERIMENTS
from harness.results import new_run_id

DEFAULT_COMMAND = "cd {workdir} && .venv/bin/harness"
CELL_FAILURES = {2, 4, 5}       # the remote harness judged the cell itself: not the host's fault
TIMED_OUT = 124                 # coreutils timeout stopped the cell on the runner
_print_lock = threading.Lock()


def parse_host(spec):
    """`user@host[:port]` (also `[v6addr]:port`) -> (user or None, host, port or None)."""
    user, _, rest = spec.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else None
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    name_ok = re.fullmatch(r"[A-Za-z0-9._-]+", host) or (rest.startswith("[") and re.fullmatch(r"[0-9A-Fa-f:.]+", host))
    if not host or not name_ok or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)) \
            or (user and not re.fullmatch(r"[A-Za-z0-9._-]+", user)) or host.startswith("-"):
        raise UserError(f"bad host '{safety.redact(spec)}': write user@host or user@host:port (port 1-65535)")
    return user or None, host, int(port) if port else None


def read_hosts(hosts=(), hosts_file=None):
    """Hosts from the command line and from a file (one per line, # starts a comment)."""
    found = list(hosts or [])
    if hosts_file:
        try:
            lines = Path(hosts_file).read_text().splitlines()
        except OSError as exc:
            raise UserError(f"cannot read hosts file {hosts_file}: {exc}") from None
        found += [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
    for spec in found:
        parse_host(spec)
    if not found:
        raise UserError("name at least one runner: --host user@host[:port] or --hosts-file FILE")
    return found


def remote_path(path):
    """A path for a remote shell, quoted; a leading ~/ still means the remote user's home."""
    path = str(path)
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def fingerprint(key):
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class Cell:
    """One cell of the experiment (harness.ci.cells: a group of workloads, on every kernel)."""

    def __init__(self, cell_id):
        self.id = cell_id
        self.attempts = []      # {host, status, exit_code, error, seconds}
        self.run_dir = None     # the fetched partial run

    @property
    def status(self):
        return self.attempts[-1]["status"] if self.attempts else "not run"


class RemoteRun:
    """What run_on_hosts returns: the merged run (or None) and every cell's attempts."""

    def __init__(self, cells, store, hosts):
        self.cells, self.store, self.hosts = cells, store, hosts

    @property
    def failed(self):
        return [c.id for c in self.cells if c.status != "ok"]

    @property
    def exit_code(self):
        for c in self.cells:
            if c.status != "ok":
                code = c.attempts[-1].get("exit_code") if c.attempts else None
                return code if code in CELL_FAILURES else InfraError.exit_code
        return 0


class _Lines:
    """A stream for fabric's out_stream: prints whole lines as `[host] line`, keeps the last ones."""

    def __init__(self, prefix, stream):
        self.prefix, self.stream, self.buf = prefix, stream, ""
        self.tail = collections.deque(maxlen=30)

    def write(self, data):
        self.buf += data.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self.buf = self.buf.split("\n")
        self._emit(lines)

    def flush(self):
        pass

    def close(self):
        if self.buf:
            self._emit([self.buf])
            self.buf = ""

    def _emit(self, lines):
        self.tail.extend(lines)
        with _print_lock:
            for line in lines:
                self.stream.write(f"{self.prefix} {line}\n")
            self.stream.flush()


def say(host, message):
    with _print_lock:
        sys.stderr.write(f"[{host}] {message}\n")
        sys.stderr.flush()


def pin_host_keys(client, files, spec):
    """client (paramiko) knows the hosts in files (read only, never written back) and refuses
    any other key with one error saying how to check and add it."""
    import paramiko
    for f in files:
        if Path(f).exists():
            client.load_system_host_keys(f)

    class Reject(paramiko.RejectPolicy):
        def missing_host_key(self, client, hostname, key):
            raise InfraError(
                f"{spec}: host key {key.get_name()} {fingerprint(key)} of {hostname} is not in "
                f"{' or '.join(files)}; refusing to connect. Check the fingerprint with the "
                f"host's owner, then add it (ssh-keyscan {hostname} >> ~/.ssh/known_hosts)")
    client.set_missing_host_key_policy(Reject())


class _Host:
    """One runner: its connection and the commands it runs for a cell."""

    def __init__(self, spec, known_hosts, identity, connect_timeout, forward_agent=False):
        from fabric import Connection

        user, host, port = parse_host(spec)
        self.spec = spec
        self.conn = Connection(host, user=user, port=port, connect_timeout=connect_timeout,
                               forward_agent=forward_agent,
                               connect_kwargs={"key_filename": [str(identity)]} if identity else {})
        files = [str(Path("~/.ssh/known_hosts").expanduser())] + ([str(known_hosts)] if known_hosts else [])
        for f in files[1:]:
            if not Path(f).exists():
                raise UserError(f"known_hosts file {f} does not exist")
        # every hop (a ProxyJump host of ~/.ssh/config is a connection of its own, which fabric
        # would let add any key it meets) is pinned to the same known hosts, its agent not forwarded
        hop = self.conn
        while hop is not None and not isinstance(hop, str):
            pin_host_keys(hop.client, files, spec)
            if hop is not self.conn:
                hop.forward_agent = False
            hop = hop.gateway or None

    def run_cell(self, cell_id, experiment, extra_args, workdir, command, out_dir, timeout):
        """Run one cell on this host; return (exit_code, run_dir or None, tail of the output)."""
        c = self.conn
        c.open()
        c.transport.set_keepalive(30)
        base = c.run('mktemp -d "${TMPDIR:-/tmp}/harness-remote.XXXXXX"', hide=True,
                     in_stream=False).stdout.strip()
        try:
            exp_arg = experiment
            if Path(experiment).is_file():      # a file of ours, not a name in experiments/: ship it
                exp_arg = f"{base}/{Path(experiment).name}"
                c.put(str(experiment), exp_arg)
            results = f"{base}/results"
            argv = ["run", "--experiment", exp_arg, "--cell", cell_id, *extra_args]
            line = (f"export HARNESS_RESULTS={shlex.quote(results)} COLUMNS=160; "
                    + command.format(workdir=remote_path(workdir)) + " " + shlex.join(argv))
            if timeout:
                # The runner stops its own harness, and the guest under it, when the cell runs out
                # of time (timeout signals the whole process group): closing the SSH channel alone
                # would leave them running there.
                line = f"timeout --kill-after=30 {max(1, math.ceil(timeout))} sh -c {shlex.quote(line)}"
            line = watched(line)
            out, err = _Lines(f"[{self.spec}]", sys.stdout), _Lines(f"[{self.spec}]", sys.stderr)
            try:
                result = c.run(line, hide=False, warn=True, pty=False, in_stream=False,
                               out_stream=out, err_stream=err, timeout=timeout and timeout + 60)
            finally:
                out.close()
                err.close()
            tail = "\n".join(list(err.tail)[-15:])
            timed_out = bool(timeout) and result.exited == TIMED_OUT
            if result.exited != 0 and result.exited not in CELL_FAILURES and not timed_out:
                return result.exited, None, tail
            q = shlex.quote
            if c.run(f"tar -C {q(base)} -czf {q(base + '/partial.tgz')} results", hide=True, warn=True,
                     in_stream=False).failed:
                return result.exited, None, tail     # no run to fetch: the harness never started
            out_dir.mkdir(parents=True, exist_ok=True)
            c.get(f"{base}/partial.tgz", str(out_dir / "partial.tgz"))
            with tarfile.open(out_dir / "partial.tgz") as tar:
                safe_extract(tar, out_dir)
            (out_dir / "partial.tgz").unlink()
            runs = sorted(p.parent for p in (out_dir / "results").glob("*/metadata.json"))
            return result.exited, runs[-1] if runs else None, tail
        finally:
            try:
                c.run(f"rm -rf {shlex.quote(base)}", hide=True, warn=True, in_stream=False)
            except Exception:       # the host is gone; nothing to clean
                pass

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


def watched(line):
    """line for a runner's shell, stopped with its whole process group when the SSH session ends.

    The command runs in a session of its own (setsid); beside it, a watcher reads the channel's
    stdin, which nothing here ever writes to: end of file (the harness here interrupted, killed or
    gone, the connection closed by either side) or any byte (an interrupt sent down the channel)
    makes it send SIGTERM to the command's group (the runner's harness stops its guest and marks
    the cell interrupted, as on Ctrl-C), then SIGKILL after 30 s. A connection that drops without
    either side noticing ends when the runner's sshd notices it (its ClientAliveInterval)."""
    # (a background job's stdin is /dev/null unless redirected: the channel is kept on fd 3)
    return ("exec 3<&0; setsid -w sh -c " + shlex.quote(line) + " 3<&- & pid=$!; "
            "( exec >/dev/null 2>&1; dd bs=1 count=1 of=/dev/null; kill -TERM -$pid; sleep 30; "
            "kill -KILL -$pid ) <&3 & watch=$!; exec 3<&-; "
            "wait $pid; code=$?; kill $watch 2>/dev/null; exit $code")


def safe_extract(tar, dest):
    """Unpack only plain files and folders that stay inside dest (what a partial run holds), with
    owners dropped and modes limited (harness.safety.extract)."""
    dest = Path(dest).resolve()
    for m in tar.getmembers():
        target = (dest / m.name).resolve()
        if not (m.isfile() or m.isdir()) or not target.is_relative_to(dest):
            raise InfraError(f"refusing to unpack '{m.name}' from a runner's result archive")
    try:
        safety.extract(tar, dest)
    except UserError as exc:
        raise InfraError(f"a runner's result archive: {exc}") from None


def plan(experiment, cells=None, exp=None):
    """(the experiment's name or file for the runners, the cell ids to run). exp is the experiment
    as the runners will see it (the CLI builds it from the run flags, checked before any host is
    asked); without it, the experiment file as it is."""
    from harness import experiment as ex
    exp = exp or ex.load(experiment)
    ids = exp.only(cells).cells if cells else [c.id for c in cells_mod.of(exp)]
    if Path(experiment).is_file() and Path(experiment).resolve().parent == EXPERIMENTS.resolve():
        experiment = Path(experiment).stem          # the runners have it under the same name
    return experiment, ids


class _Dispatch:
    """The queue of cells and the hosts that take them: each host one cell at a time; a cell whose
    host failed is queued once more for another host, and that host is dropped."""

    def __init__(self, cells, runners, job):
        self.cells, self.runners, self.job = cells, runners, job
        self.queue = collections.deque(cells[len(runners):])
        self.busy = min(len(runners), len(cells))
        self.cond = threading.Condition()
        self.host_errors = {}

    def run(self):
        threads = [threading.Thread(target=self.worker, args=(i, r), name=f"remote-{r.spec}", daemon=True)
                   for i, r in enumerate(self.runners)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for cell in self.queue:             # queued again, but every host was dropped
            cell.attempts.append({"host": None, "status": "failed", "exit_code": None,
                                  "error": "no host left to run it", "seconds": 0})
        return self.host_errors

    def next_cell(self):
        with self.cond:
            while True:
                if self.queue:
                    self.busy += 1
                    return self.queue.popleft()
                if self.busy == 0:
                    return None
                self.cond.wait()

    def worker(self, index, runner):
        cell = self.cells[index] if index < len(self.cells) else self.next_cell()
        while cell is not None:
            attempt, host_failed = self.attempt(runner, cell)
            cell.attempts.append(attempt)
            requeue = host_failed and len(cell.attempts) < 2
            say(runner.spec, f"cell {cell.id}: {attempt['status']} in {attempt['seconds']} s"
                + (f": {attempt['error'].splitlines()[0]}" if attempt["error"] else "")
                + ("; queued again for another host" if requeue else ""))
            with self.cond:
                self.busy -= 1
                if requeue:
                    self.queue.append(cell)
                self.cond.notify_all()
            if host_failed:
                self.host_errors[runner.spec] = attempt["error"]
                say(runner.spec, "host dropped: it takes no more cells")
                break
            cell = self.next_cell()
        runner.close()

    def attempt(self, runner, cell):
        """Run the cell once on the runner: (the attempt, whether the host is to blame)."""
        n = len(cell.attempts) + 1
        say(runner.spec, f"cell {cell.id}: attempt {n}")
        started = time.monotonic()
        attempt = {"host": runner.spec, "status": "failed", "exit_code": None, "error": None}
        host_failed = False
        timeout = self.job["timeout"]
        try:
            code, run_dir, tail = runner.run_cell(cell.id, out_dir=self.job["parts"] / f"{cell.id}-{n}",
                                                  **{k: v for k, v in self.job.items() if k != "parts"})
            attempt["exit_code"] = code
            if code == 0 and run_dir:
                attempt["status"] = "ok"
            elif code in CELL_FAILURES and run_dir:
                attempt["error"] = f"harness run exited {code}"
            elif timeout and code == TIMED_OUT:     # the cell's own slowness: not the host's
                attempt["error"] = (f"timed out after {timeout} s: the harness on the runner "
                                    f"was stopped" + ("" if run_dir else ", no run fetched"))
            else:                   # -1: the connection ended without an exit status
                host_failed = True
                attempt["error"] = "connection lost during the run" if code == -1 else \
                    f"harness run exited {code}" + ("" if run_dir else ", no run fetched")
                attempt["error"] += f"\n--- last lines ---\n{tail}" if tail else ""
            if run_dir:
                cell.run_dir = run_dir
        except HarnessError as exc:
            host_failed, attempt["error"] = True, str(exc)
        except Exception as exc:    # refused, timed out, auth failed, connection lost
            host_failed, attempt["error"] = True, f"{type(exc).__name__}: {exc}"
        attempt["seconds"] = round(time.monotonic() - started, 1)
        return attempt, host_failed


def merge_parts(cells, experiment, results_dir, run_id, parts, hosts, host_errors):
    """The merged run of the cells that brought a run back (None when none did)."""
    run_dirs = [c.run_dir for c in cells if c.run_dir]
    if not run_dirs:
        return None
    from harness.ci import merge
    try:
        store = merge.merge(run_dirs, out=results_dir / run_id)
    except UserError as exc:
        raise UserError(f"{exc} (the partial runs are in {parts})") from None
    if Path(experiment).is_file():  # shipped to a temporary folder: name the file here instead
        store.metadata["experiment"]["path"] = str(Path(experiment).resolve())
        store.metadata["command"] = merge.command(store.metadata["experiment"], store.metadata["command"])
    store.update(remote={
        "hosts": {h: {"error": host_errors.get(h)} for h in hosts},
        "cells": {c.id: {"status": c.status, "attempts": c.attempts,
                         "partial": str(c.run_dir) if c.run_dir else None} for c in cells},
    })
    return store


def run_on_hosts(experiment, hosts, extra_args=(), workdir="~/kernel-harness", results_dir=None, *,
                 cells=None, command=DEFAULT_COMMAND, known_hosts=None, identity=None,
                 connect_timeout=20, cell_timeout=None, exp=None, forward_agent=False):
    """Run the experiment's cells (or the ones named) on the hosts; return a RemoteRun. A cell is a
    group of workloads on every kernel (harness.ci.cells): one host measures all it compares.

    experiment: a name in experiments/ (the runners' checkout has it) or a local file (shipped).
    extra_args: more `harness run` flags for every cell (--kernel-src, --accel, ...).
    command: how to start the harness on a host; {workdir} is replaced by the quoted workdir.
    exp: the experiment with extra_args applied, when the caller has parsed them (see plan).
    """
    if "--cell" in extra_args or "--resume" in extra_args:
        raise UserError("give the cells with cells=[...] (--cell), not in the extra arguments")
    experiment, ids = plan(experiment, cells, exp)
    results_dir = Path(results_dir or paths.results())
    run_id = new_run_id()
    parts = results_dir / f"{run_id}.parts"
    cell_list = [Cell(i) for i in ids]
    runners = [_Host(spec, known_hosts, identity, connect_timeout, forward_agent) for spec in hosts]
    job = {"experiment": str(experiment), "extra_args": list(extra_args), "workdir": workdir,
           "command": command, "timeout": cell_timeout, "parts": parts}
    host_errors = _Dispatch(cell_list, runners, job).run()
    store = merge_parts(cell_list, experiment, results_dir, run_id, parts, hosts, host_errors)
    result = RemoteRun(cell_list, store, hosts)
    for c in cell_list:
        last = c.attempts[-1] if c.attempts else {}
        say(last.get("host") or "no host", f"cell {c.id}: {c.status}"
            + (f" after {len(c.attempts)} attempts" if len(c.attempts) > 1 else ""))
    return result
