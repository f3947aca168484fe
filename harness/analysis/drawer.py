"""The report's plots, drawn here or in a child process beside the statistics.

matplotlib is imported by harness.analysis.plots only, and that only when a plot is drawn: a
report without plots, and every importer of this module, never waits for it. This module imports
nothing heavy itself: `report` starts the child before it loads pandas, so the two processes load
their libraries side by side (the child never loads scipy).
"""
import multiprocessing
from pathlib import Path

from harness.errors import HarnessError


def draw(df, out_dir):
    """{workload: PNG} in out_dir/plots."""
    from harness.analysis import plots as plots_mod
    return plots_mod.write_all(df, out_dir / "plots")


class Plots:
    """The plots drawn in a child process while this one computes the statistics: on two cores a
    report waits for the slower of the two, not for their sum. The child loads the runs itself
    (nothing is sent to it) and sends back {workload: png}, or the error it met; started (fork)
    before anything heavy is imported, waited for where the report needs the images."""

    def __init__(self, run_dirs, out_dir):
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=self._child, args=(run_dirs, out_dir, child), daemon=True)
        self.proc.start()
        child.close()

    @staticmethod
    def _child(run_dirs, out_dir, conn):
        try:
            from harness.analysis import stats
            _, df = stats.load_runs(run_dirs)
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            conn.send({"pngs": {k: str(v) for k, v in draw(df, Path(out_dir)).items()}})
        except Exception as exc:                     # noqa: BLE001 (sent back, raised there)
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
        finally:
            conn.close()

    def wait(self):
        """{workload: Path}; the child's error as a HarnessError."""
        try:
            answer = self.conn.recv()
        except EOFError:
            answer = {"error": f"the plotting process ended with exit code {self.proc.exitcode}"}
        finally:
            self.proc.join()
            self.conn.close()
        if "error" in answer:
            raise HarnessError(f"plots: {answer['error']}")
        return {k: Path(v) for k, v in answer["pngs"].items()}
