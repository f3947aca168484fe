"""The supervisor under which harness.tools runs every host command, so that nothing the harness
starts outlives it, SIGKILL included.

This file is also a program (standard library only, run as `python -I -S supervise.py PID -- ARGV`):
it forks the command into a process group of its own and waits for it. When the harness (PID) goes
away for any reason, it kills that whole group: tuxmake's make and gcc, debootstrap, QEMU. It
learns of the harness's death at once from the kernel (prctl PR_SET_PDEATHSIG, checked against
the harness's pid, so that the end of the thread that started it is not taken for it) and, as a
fallback, from a timer that looks at its parent every POLL seconds. A SIGTERM, SIGINT or SIGHUP
sent to the supervisor (Machine.stop, Ctrl-C) is passed to the group, which gets GRACE seconds
before SIGKILL. The command itself dies if the supervisor is SIGKILLed. The command's exit status
is the supervisor's, a death by a signal included.
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
POLL = 0.5
GRACE = 3.0
ORPHANED = signal.SIGUSR1       # the kernel's word that the harness is gone
INTERPRETER = sys.executable    # the harness's own Python, as it started


def wrap(argv):
    """argv run under the supervisor."""
    return [INTERPRETER, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), "--", *map(str, argv)]


class Stop(Exception):
    """The group is to be stopped: signum 0 when the harness is gone (SIGKILL at once)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _prctl_death_signal(signum):
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _child(argv):
    try:
        os.setpgid(0, 0)
        _prctl_death_signal(signal.SIGKILL)
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"harness supervisor: cannot run {argv[0]}: {exc}\n".encode())
    os._exit(127)


def _stop_group(pid, grace):
    """SIGTERM to the group, SIGKILL after grace seconds; the command's wait status."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, ORPHANED, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)
    status = None
    try:
        if grace:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, ChildProcessError):
        pass
    if status is None or not os.WIFEXITED(status) and not os.WIFSIGNALED(status):
        try:
            status = os.waitpid(pid, 0)[1]
        except ChildProcessError:
            status = 0
    return status


def main(args):
    parent, argv = int(args[0]), args[2:]
    _prctl_death_signal(ORPHANED)
    if os.getppid() != parent:          # the harness died before the death signal was set
        return 128 + signal.SIGKILL
    pid = os.fork()
    if pid == 0:
        _child(argv)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass

    def stop(signum, _):
        raise Stop(signum)

    def check_parent(*_):
        if os.getppid() != parent:
            raise Stop(0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(ORPHANED, check_parent)
    signal.signal(signal.SIGALRM, check_parent)
    signal.setitimer(signal.ITIMER_REAL, POLL, POLL)
    asked = None
    try:
        status = os.waitpid(pid, 0)[1]
    except Stop as why:
        asked = why.signum
        status = _stop_group(pid, GRACE if asked else 0)
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    code = os.waitstatus_to_exitcode(status)
    for signum in (asked, -code if code < 0 else None):   # die as the command (or as asked)
        if signum:
            if signum not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
