"""Progress on the terminal (rich): a spinner with elapsed time per step, loud warnings."""
import contextlib
import sys
import time

from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def step(message):
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


def warn(message):
    console.print(f"[bold yellow]WARNING:[/bold yellow] {escape(message)}")


def error(message):
    console.print(f"[bold red]error:[/bold red] {escape(message)}")


def out(text=""):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
