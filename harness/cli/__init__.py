"""The `harness` command: parses arguments and calls the pipeline's objects, nothing more.

Exit codes: 0 ok; 2 bad request (UserError); 3 this machine cannot do it (InfraError); 4 a kernel
or workload failed to compile (BuildError); 5 the guest failed: panic, timeout, workload error
(GuestError); 70 an internal error (harness.crash: the traceback is saved to a file); 130
interrupted. `harness nightly` also exits 1 on a regression, `harness verify` 1 when a section of
its verdict failed.
"""
import atexit
import os
import signal
import sys
import threading

from harness import errors, options, safety, ui
from harness.cli.flags import experiment
from harness.cli.parser import parser

__all__ = ["experiment", "main", "parser", "run"]


def _terminated(signum, frame):
    raise KeyboardInterrupt     # SIGTERM (a CI job's or a remote cell's timeout): stop like Ctrl-C


LEAVE = {"at_once": False}     # a command that set leave_at_once has finished


def run():
    """The `harness` command: main(), then exit. After a command whose parser sets
    leave_at_once (`report`) the process leaves without tearing down pandas', scipy's and
    matplotlib's modules one by one (a tenth of a second of the report's time): its output is
    flushed and the exit handlers run first; it has no threads, its child has been joined and
    every file it wrote was closed where it was written."""
    code = main()
    if LEAVE["at_once"]:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:         # a closed pipe (harness report RUN | head): nothing to say
                pass
        atexit._run_exitfuncs()
        os._exit(code)
    return code


def main(argv=None):
    args = parser().parse_args(argv)
    if args.quiet:
        ui.set_quiet()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        options.check_command(args.cmd, vars(args))    # the declared flags, before any work
        code = args.func(args) or 0
        LEAVE["at_once"] = getattr(args, "leave_at_once", False)
        return code
    except errors.HarnessError as exc:
        ui.error(safety.redact(str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130
    except Exception as exc:            # a bug: one line, the traceback in a file, exit 70
        from harness import crash
        ui.error(crash.report(exc))
        return crash.EXIT_CODE
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
