"""Running host tools: one place that turns a missing tool into a clear InfraError, and runs
every tool under harness.supervise (its process group dies with the harness)."""
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


def run(argv, *, cwd=None, env=None, log=None, check=True, input=None):
    """Run argv (a list, never a shell string). Output goes to `log` (a path) or is returned."""
    argv = [require(argv[0]), *argv[1:]]
    if log is not None:
        with open(log, "ab") as fh:
            proc = supervise.run(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                 input=input)
        out = ""
    else:
        proc = supervise.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                             input=input)
        out = proc.stdout
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() if log is None else f"see {log}"
        raise InfraError(f"{' '.join(argv[:3])} ... failed (exit {proc.returncode}): {detail}")
    return out if check else proc


def first_line(argv):
    """The first line a tool prints about itself (its version), or '' if it is missing."""
    path = which(argv[0])
    if not path:
        return ""
    proc = supervise.run([path, *argv[1:]], capture_output=True, text=True)
    return (proc.stdout or proc.stderr).splitlines()[0].strip() if (proc.stdout or proc.stderr) else ""
