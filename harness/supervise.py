"""Every child of the harness dies with it, SIGKILL included.

popen() and wrap() start a command under a small supervisor (this file run as a program, standard
library only): the supervisor puts the command in a process group of its own and, when the harness
goes away for any reason, kills that whole group, so tuxmake's make and gcc, debootstrap and QEMU
never outlive the harness that started them. The supervisor learns of the harness's death at once
from the kernel (prctl PR_SET_PDEATHSIG, checked against the harness's pid so a thread's end is not
taken for it) and, as a fallback, by polling its parent every POLL seconds. A SIGTERM, SIGINT or
SIGHUP sent to the supervisor (Machine.stop, Ctrl-C) is passed to the group, which gets GRACE
seconds before SIGKILL. The command's exit status is the supervisor's (a signal death included).
"""
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
POLL = 0.2
GRACE = 3.0
ORPHANED = signal.SIGUSR1       # the kernel's word that the harness is gone
INTERPRETER = sys.executable    # the harness's own Python, as it started


def wrap(argv):
    """argv run under the supervisor."""
    return [INTERPRETER, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), "--", *map(str, argv)]


def popen(argv, **kw):
    return subprocess.Popen(wrap(argv), **kw)


def run(argv, **kw):
    return subprocess.run(wrap(argv), **kw)


def _stop_group(pgid, child, grace):
    try:
        os.killpg(pgid, signal.SIGTERM)
        child.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(args):
    parent, argv = int(args[0]), args[2:]
    asked = []
    signal.signal(ORPHANED, lambda *_: asked.append(0) if os.getppid() != parent else None)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: asked.append(signum))
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, ORPHANED, 0, 0, 0)
    if os.getppid() != parent:          # the harness died before the death signal was set
        return 128 + signal.SIGKILL
    try:
        child = subprocess.Popen(argv, process_group=0)
    except OSError as exc:
        sys.stderr.write(f"harness supervisor: cannot run {argv[0]}: {exc}\n")
        return 127
    while True:
        try:
            code = child.wait(timeout=POLL)
            break
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != parent and not asked:
            asked.append(0)
        if asked:
            _stop_group(child.pid, child, 0 if asked[0] == 0 else GRACE)
            code = child.wait()
            break
    if asked and asked[0]:
        _die_of(asked[0])
    if code < 0:                        # the command died of a signal: so does the supervisor
        _die_of(-code)
    return code


def _die_of(signum):
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return 128 + signum


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
