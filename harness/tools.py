"""Running host tools: one place that turns a missing tool into a clear InfraError, and runs
every tool under harness.supervise (its process group dies with the harness, SIGKILL included)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness import supervise
from harness.errors import InfraError

# Which Debian package brings each tool the harness calls, for the error message.
PACKAGES = {
    "git": "git",
    "tar": "tar",
    "make": "make",
    "gcc": "gcc",
    "ccache": "ccache",
    "flex": "flex",
    "bison": "bison",
    "debootstrap": "debootstrap",
    "mmdebstrap": "mmdebstrap",
    "fakeroot": "fakeroot",
    "newuidmap": "uidmap",
    "newgidmap": "uidmap",
    "mkfs.ext4": "e2fsprogs",
    "dropbearkey": "dropbear-bin",
    "qemu-system-x86_64": "qemu-system-x86",
    "apt-get": "apt",
    "tuxmake": "tuxmake (pip)",
    "b4": "b4 (pip)",
    "afl-cc": "afl++",
    "perl": "perl",
    "patch": "patch",
    "taskset": "util-linux",
    "dpkg-query": "dpkg",
    "gpgv": "gpgv",
}


def which(tool):
    """A tool's path: beside the harness's own interpreter first (tuxmake and b4 installed with
    it in a virtualenv or by pipx, whose bin/ need not be on PATH), then on PATH."""
    beside = Path(sys.executable).parent / tool
    if "/" not in tool and beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    # then the sbin folders, which a normal user's PATH lacks on Debian (mkfs.ext4 is there)
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def require(tool):
    path = which(tool)
    if not path:
        pkg = PACKAGES.get(tool, tool)
        raise InfraError(f"'{tool}' is not installed; install it (Debian package: {pkg})")
    return path


def run(argv, *, cwd=None, env=None, log=None, check=True, input=None, timeout=None):
    """Run argv (a list, never a shell string): the one way the harness runs a host command.

    Returns the CompletedProcess, always: stdout and stderr as text (undecodable bytes replaced),
    or both "" when they went to `log` (a path, appended to). A tool that is not installed is an
    InfraError naming its Debian package; with check, so is a non-zero exit (with the end of the
    output, or the log's path); with timeout, running longer is an InfraError too. `input` is
    text, or bytes (then the output is bytes as well).
    """
    argv = [require(str(argv[0])), *map(str, argv[1:])]
    text = not isinstance(input, bytes)
    try:
        if log is not None:
            with open(log, "ab") as fh:
                proc = supervised(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                  input=input, timeout=timeout)
            proc.stdout = proc.stderr = ""
            _redact_log(log, argv)
        else:
            proc = supervised(argv, cwd=cwd, env=env, capture_output=True, input=input,
                              timeout=timeout, **({"text": True, "errors": "replace"} if text else {}))
    except subprocess.TimeoutExpired:
        raise InfraError(f"{' '.join(argv[:3])} ... took more than {timeout} s") from None
    if check and proc.returncode != 0:
        detail = f"see {log}" if log is not None else (proc.stderr or proc.stdout).strip()[-2000:]
        raise InfraError(f"{' '.join(argv[:3])} ... failed (exit {proc.returncode}): {detail}")
    return proc


def _redact_log(log, argv):
    """A tool given a URL with credentials may print it: its log is rewritten without them."""
    from harness import safety
    if any(safety.redact(a) != a for a in argv):
        path = Path(log)
        path.write_bytes(safety.redact(path.read_bytes().decode(errors="replace")).encode())


def popen(argv, **kw):
    """subprocess.Popen of argv under harness.supervise: its process group dies with the harness."""
    return subprocess.Popen(supervise.wrap(argv), **kw)


def supervised(argv, *, input=None, timeout=None, capture_output=False, **kw):
    """subprocess.run under harness.supervise, except that a timeout or an exception here (Ctrl-C,
    SIGTERM) stops the command's whole group through the supervisor instead of killing the
    supervisor alone."""
    if capture_output:
        kw["stdout"] = kw["stderr"] = subprocess.PIPE
    if input is not None:
        kw["stdin"] = subprocess.PIPE
    with popen(argv, **kw) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:
            proc.terminate()
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def pipe(first, second, *, cwd=None):
    """first | second (two argv lists, no shell); True when both exited 0."""
    a = popen([require(first[0]), *first[1:]], cwd=cwd, stdout=subprocess.PIPE)
    b = supervised([require(second[0]), *second[1:]], cwd=cwd, stdin=a.stdout)
    a.stdout.close()
    return a.wait() == 0 and b.returncode == 0


def start(argv, log):
    """Start argv in the background (QEMU), its output appended to `log`; the Popen (of its
    supervisor). It dies with the harness (harness.supervise), so no guest outlives it."""
    argv = [require(str(argv[0])), *map(str, argv[1:])]
    with open(log, "ab") as fh:
        return popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh)


def stop(proc, grace=5):
    """Stop a process that start() began: SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def first_line(argv):
    """The first line a tool prints about itself (its version), or '' if it is missing."""
    if not which(argv[0]):
        return ""
    proc = run(argv, check=False)
    out = proc.stdout or proc.stderr
    return out.splitlines()[0].strip() if out.strip() else ""
