"""Progress: on a terminal a spinner with elapsed time per step (rich); in a log (stderr not a
terminal, e.g. CI) a line per step start and end and a heartbeat while it runs (steplog);
nothing but warnings and errors with --quiet."""
import contextlib
import os
import sys
import time

from rich.console import Console
from rich.markup import escape

from harness import safety, steplog


class SafeConsole(Console):
    """A console whose every byte passes harness.safety.redact: a URL with credentials that
    reaches a progress line, a warning or an error is printed without them."""

    def _render_buffer(self, buffer):
        return safety.redact(super()._render_buffer(buffer))


console = SafeConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)
loud = SafeConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)     # warnings and errors, never quiet


def set_quiet(quiet=True):
    """--quiet (or HARNESS_QUIET=1): no progress, no notes; warnings, errors and results stay."""
    console.quiet = quiet


def _log_line(text):
    console.print(text, markup=False, highlight=False)
    console.file.flush()


@contextlib.contextmanager
def step(message):
    if console.quiet:
        yield lambda text: None
        return
    if not console.is_terminal:
        with steplog.step(message, _log_line, steplog.ci_system()) as say:
            yield say
        return
    message = escape(message)
    started = time.monotonic()
    notes = []
    with console.status(f"{message} ...") as status:
        def say(text):
            notes.append(text)
            status.update(f"{message}: {escape(text)}")
        try:
            yield say
        except BaseException:
            console.print(f"[red]✗[/red] {message} ({time.monotonic() - started:.1f} s)")
            raise
    console.print(f"[green]✓[/green] {message} ({time.monotonic() - started:.1f} s)"
                  + (f" — {escape(notes[-1])}" if notes else ""))


def watch(fn):
    """fn() -> a short text of what is happening now (a build's current target); the running
    step's heartbeat lines in a log carry it."""
    steplog.watch(fn)


def context(text):
    """Where the whole run is ("3 of 10 boots done"), added to heartbeat lines."""
    steplog.set_context(text)


def warn(message):
    loud.print(f"[bold yellow]WARNING:[/bold yellow] {escape(message)}")


def error(message):
    loud.print(f"[bold red]error:[/bold red] {escape(message)}")


def out(text=""):
    sys.stdout.write(safety.redact(text) + "\n")
    sys.stdout.flush()


def rows(table, value_width):
    """A benchmark's (name, value, note) rows on stdout, names padded to the longest and values
    right-aligned in value_width (selfbench and selfbench --speed print theirs so)."""
    width = max((len(name) for name, _, _ in table), default=0)
    for name, value, note in table:
        out(f"  {name:<{width}}  {value:>{value_width}}  {note}")


set_quiet(bool(os.environ.get("HARNESS_QUIET")))
