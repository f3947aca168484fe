"""Line counts from a gcov coverage kernel, one set per task (harness.kernel.gcov builds it).

Before each task the guest's counters are reset (/sys/kernel/debug/gcov/reset); after it the
profiled objects' .gcda files are copied over the guest channel and turned into per-line counts on
the host, stored in the run as <label>/gcov-<task>.json: {"task", "boot", "way", "counts": {file:
[[line, count], ...]}}. A task that kills the guest loses only its own counts. What the kernel
ran while booting is kept as the task "boot" (the counters run from the start).
"""
import base64
import json
from pathlib import Path

from harness import feature, ui
from harness.errors import GuestError, HarnessError, UserError
from harness.kernel import gcov

ROOT = "/sys/kernel/debug/gcov"
# in the guest: the .gcda of each profiled object (argv: root, then object-relative paths)
READ = """import base64, json, sys
root, out = sys.argv[1], {}
for rel in sys.argv[2:]:
    try:
        out[rel] = base64.b64encode(open(root + "/" + rel, "rb").read()).decode()
    except OSError:
        pass
print(json.dumps(out))
"""


class Untimed(UserError):
    """A timing comparison asked of coverage kernels' records only."""


class Collector:
    """The counts of one boot of a coverage kernel; `of` gives None for any other kernel."""

    def __init__(self, kernel, machine, store, label):
        self.kernel, self.machine, self.store, self.label = kernel, machine, store, label
        self.info = kernel.info["gcov"]
        self.ready = False

    @classmethod
    def of(cls, kernel, machine, store, label):
        return cls(kernel, machine, store, label) if kernel.info.get("gcov") else None

    def _prepare(self):
        if self.ready:
            return
        code, _, err = self.machine.run(["sh", "-c", f"test -d {ROOT} || mount -t debugfs none "
                                         f"/sys/kernel/debug; test -d {ROOT}"])
        if code != 0:
            raise GuestError(f"the coverage kernel has no {ROOT}: {err.strip()}")
        self.ready = True

    def reset(self):
        self._prepare()
        self.machine.run(["sh", "-c", f"echo 1 > {ROOT}/reset"])

    def collect(self, task, boot, way):
        """Copy the .gcda files, count their lines, store them; the counts, or None when the guest
        is gone (the task's counts are lost, nothing else)."""
        try:
            self._prepare()
            rels = [str(f)[:-2] + ".gcda" for f in self.info["files"]]
            code, out, err = self.machine.run(["python3", "-c", READ, ROOT + self.info["objdir"], *rels])
            if code != 0:
                raise GuestError(f"cannot read the gcov counts: {err.strip()[:300]}")
            data = {rel[:-5] + ".c": base64.b64decode(b) for rel, b in json.loads(out).items()}
            counts = gcov.line_counts(self.kernel.path, data, trees=(self.info["tree"], self.info["objdir"]))
        except HarnessError as exc:
            ui.warn(f"[{self.label}] {task}: line counts lost ({str(exc).splitlines()[0]})")
            return None
        record = {"task": task, "boot": boot, "way": way, "counts": gcov.compact(counts)}
        self.store.write(self.label, f"gcov-{task.replace(':', '-')}.json", json.dumps(record) + "\n")
        return counts


def way_of(params, profile):
    """A workload task's way: the profile's condition name for the feature asked, else "plain"."""
    if params.get(feature.PARAM) and profile is not None and profile.has_switch:
        return profile.conditions.get("way", profile.name)      # as selftests.ways names it
    return "plain"


def stored(run_dir, label):
    """The run's stored counts of kernel `label`: [record] with counts expanded, in task order."""
    found = []
    for path in sorted((Path(run_dir) / label).glob("gcov-*.json")):
        rec = json.loads(path.read_text())
        rec["counts"] = gcov.expand(rec["counts"])
        found.append(rec)
    return found


def untimed(df, metas):
    """The records without those of coverage (gcov) kernels: a profiled kernel's times are not
    its code's, they are never compared; a run holding nothing else is refused."""
    if "coverage" not in df or not df["coverage"].notna().any():
        return df
    marked = df["coverage"].notna()
    kernels = ", ".join(sorted(df.loc[marked, "kernel"].astype(str).unique()))
    if marked.all():
        runs = ", ".join(str(m.get("run_id")) for m in metas)
        raise Untimed(f"run {runs}: every record is from a coverage (gcov) kernel ({kernels}); "
                        "coverage kernels are never timed, their times compare with nothing")
    ui.warn(f"left out of every timing comparison: {int(marked.sum())} records of coverage (gcov) "
            f"kernel(s) {kernels}")
    return df[~marked].drop(columns="coverage").reset_index(drop=True)
