"""The run store: results/<run-id>/ with metadata.json, raw JSONL records, logs and tables.

Written as the run goes: each record is appended and flushed to disk when it arrives, and
metadata.json is rewritten (atomically) after every stage, so a crash keeps everything before it.

  results/<run-id>/metadata.json            the run: host, harness sha, reproducer command, kernels
  results/<run-id>/<kernel>/kernel.json     build facts; build.log beside it
  results/<run-id>/<kernel>/console.log     serial console; qemu.log: QEMU's own messages (boot 1;
                                            boot N's logs are in <kernel>/boot-N/)
  results/<run-id>/<kernel>/<workload>.jsonl raw records, one per line
"""
import datetime
import fcntl
import json
import os
import platform
import secrets
import shutil
from pathlib import Path

from harness import feature, paths, safety, stored, tools
from harness.guest import fingerprint
from harness.errors import GuestError, InfraError, UserError

# record fields that are never parameters: bookkeeping, the verdict (it is the condition),
# repetition counters (here, not in analysis.stats: `harness cells` needs them without pandas)
NOT_PARAMS = {"rep", "round", "warmup", "task", "cell", "kernel", "workload", "run_id", "type",
              feature.PARAM, feature.STATE, feature.REQUESTED, feature.EVIDENCE, *feature.LEGACY_PARAMS,
              "repeat", "reps", "rounds", "kind",
              "condition", "boot", "host", "timing", "from_run", "variant", "coverage"}


def plain(value):
    """A numpy scalar as a Python one; 16.0 as 16 (numeric columns turn float beside NaN)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def params_text(params, cols=None):
    """A group's parameters as text ("size_mib=16, thp=nohuge"; "–" for none), alike in the
    report, the summary, junit, kcidb and nightly. params: a dict, or a row with `cols` its keys."""
    keys = list(params) if cols is None else cols
    return ", ".join(f"{k}={plain(params[k])}" for k in keys) or "–"


def new_run_id():
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def harness_sha():
    if not tools.which("git"):
        return "unknown"
    sha = tools.run(["git", "-C", paths.ROOT, "rev-parse", "HEAD"], check=False).stdout.strip() or "unknown"
    dirty = tools.run(["git", "-C", paths.ROOT, "status", "--porcelain", "--untracked-files=no"],
                      check=False).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def host_facts():
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"hostname": platform.node(), "kernel": platform.release(), "cpu": cpu,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg": list(os.getloadavg()), "fingerprint": fingerprint.fingerprint()}




_HELD = {}          # run folder -> the open file that holds its lock, in this process


class RunStore:
    def __init__(self, run_id=None, root=None):
        self.id = run_id or new_run_id()
        self.dir = Path(root or paths.results()) / self.id
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "metadata.json"
        self.metadata = read_metadata(meta) if meta.exists() else {
            "run_id": self.id,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "harness_sha": harness_sha(),
            "host": host_facts(),
            "kernels": {},
        }

    @classmethod
    def open(cls, run_dir):
        """An existing run, by folder or by id in results/."""
        path = Path(run_dir)
        if not (path / "metadata.json").exists():
            path = paths.results() / str(run_dir)
        if not (path / "metadata.json").exists():
            raise UserError(f"no run at '{run_dir}' (no metadata.json there or in {paths.results()})")
        return cls(path.name, root=path.parent)

    def start_kernel(self, label, kept=()):
        """Start a kernel afresh, or (kept: boot numbers finished in an earlier attempt) keep those
        boots. What an earlier, unfinished attempt left is set aside in <label>.attempt-N/."""
        path = self.dir / label
        if not kept:
            if path.exists() and any(path.iterdir()):
                path.rename(self.attempt_dir(label))
            self.metadata["kernels"].pop(label, None)
        else:
            info = self.metadata["kernels"].setdefault(label, {})
            for key in ("status", "error", "error_type"):
                info.pop(key, None)         # the boots not kept are set aside by reset_boot
        self.save()

    def attempt_dir(self, label):
        n = 1
        while (self.dir / f"{label}.attempt-{n}").exists():
            n += 1
        return self.dir / f"{label}.attempt-{n}"

    @staticmethod
    def boot_prefix(boot):
        """Where a boot's logs go inside its kernel's folder: boot 1 at the top, boot N in boot-N/."""
        return "" if boot == 1 else f"boot-{boot}/"

    def boot_dir(self, label, boot):
        path = self.kernel_dir(label) / self.boot_prefix(boot)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def kernel_info(self, label):
        """What the run has recorded about this kernel (a copy: change it with update_kernel)."""
        return dict(self.metadata["kernels"].get(label, {}))

    def add_task(self, label, entry):
        """Record a finished (or failed) task of this kernel: one workload run in one boot."""
        self.metadata["kernels"].setdefault(label, {}).setdefault("tasks", []).append(entry)
        self.save()

    def tasks(self, label, boot=None):
        tasks = self.metadata["kernels"].get(label, {}).get("tasks", [])
        return [t for t in tasks if boot is None or t.get("boot", 1) == boot]

    def finished_boots(self):
        """{(label, boot number)} of every boot that ended ok."""
        return {(label, int(n)) for label, info in self.metadata["kernels"].items()
                for n, b in (info.get("boots") or {}).items() if b.get("status") == "ok"}

    def set_boot(self, label, boot, info):
        boots = self.metadata["kernels"].setdefault(label, {}).setdefault("boots", {})
        boots.setdefault(str(boot), {}).update(info)
        self.save()

    def reset_boot(self, label, boot):
        """Set aside what an unfinished attempt at this boot left: its records, tasks and logs."""
        kdir = self.dir / label
        info = self.metadata["kernels"].setdefault(label, {})
        info.setdefault("tasks", [])
        if str(boot) not in info.setdefault("boots", {}):
            return                          # never started: nothing to set aside
        info["tasks"] = [t for t in info["tasks"] if t.get("boot", 1) != boot]
        info["boots"].pop(str(boot))
        if not kdir.exists():
            return
        aside = None
        for path in sorted(kdir.glob("*.jsonl")):
            keep, drop = [], []
            for line in path.read_text().splitlines(keepends=True):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    rec = None
                # a line cut short by a crash, or one that is no record, goes aside with the boot
                mine = not isinstance(rec, dict) or rec.get("boot", 1) == boot
                (drop if mine else keep).append(line)
            if drop:
                aside = aside or self.attempt_dir(label)
                aside.mkdir(parents=True, exist_ok=True)
                (aside / path.name).write_text("".join(drop))
                path.write_text("".join(keep))
        logs = (list(kdir.glob("console*.log")) + list(kdir.glob("qemu*.log")) + list(kdir.glob("dmesg-*.log"))
                if boot == 1 else [kdir / f"boot-{boot}"])
        for log in [p for p in logs if p.exists()]:
            aside = aside or self.attempt_dir(label)
            aside.mkdir(parents=True, exist_ok=True)
            log.rename(aside / log.name)
        self.save()

    def kernel_dir(self, label):
        path = self.dir / label
        path.mkdir(parents=True, exist_ok=True)
        return path

    def lock(self):
        """Hold the run folder for this process from its first write on (a run, a resume, a
        merge, a nightly): another harness writing the same run is refused, not interleaved.
        The lock ends with the process."""
        key = str(self.dir.resolve())
        if key not in _HELD:
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(f"run {self.dir} is being written by another harness; wait for it "
                                f"to finish (or resume it afterwards)") from None
            _HELD[key] = fd

    def save(self):
        """metadata.json replaced whole and synced (file and folder), under the run's lock;
        credentials in URLs never reach it."""
        self.lock()
        tmp = self.dir / "metadata.json.tmp"
        try:
            data = json.dumps(safety.redact_all(self.metadata), indent=2, default=str) + "\n"
            with open(tmp, "w") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / "metadata.json")
            folder = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InfraError(f"cannot write {self.dir / 'metadata.json'}: {exc.strerror} "
                             f"(results disk full?); the last complete version is kept") from None

    def update(self, **fields):
        self.metadata.update(fields)
        self.save()

    def update_kernel(self, label, **fields):
        self.metadata["kernels"].setdefault(label, {}).update(fields)
        self.save()

    def appender(self, label, workload):
        """A function that appends one record to <kernel>/<workload>.jsonl and syncs it."""
        path = self.kernel_dir(label) / f"{workload}.jsonl"

        def append(record):
            bad = stored.non_finite(record)
            if bad:                 # the workload measured nothing there: its failure, not a figure
                raise GuestError(f"{workload}: a record with a non-finite number in {bad}; not stored")
            data = (json.dumps(record, sort_keys=True) + "\n").encode()
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.lseek(fd, 0, os.SEEK_END)
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    size = cut_line(fd, size)   # a line cut short by a crash: not glued to
                try:
                    if os.write(fd, data) != len(data):
                        raise OSError(28, "short write")
                    os.fsync(fd)
                except OSError as exc:
                    # never leave half a record: cut the file back to its last whole line
                    try:
                        os.ftruncate(fd, size)
                    except OSError:
                        pass
                    raise InfraError(f"cannot store a record in {path}: {exc.strerror} "
                                     f"(results disk full?)") from None
            finally:
                os.close(fd)
        return append

    def records(self, label, workload):
        path = self.dir / label / f"{workload}.jsonl"
        return read_records(path) if path.exists() else []

    def keep(self, label, *files):
        for f in files:
            if f and Path(f).exists():
                try:
                    shutil.copy(f, self.kernel_dir(label) / Path(f).name)
                except OSError as exc:
                    raise InfraError(f"cannot keep {f} in {self.dir}: {exc.strerror} "
                                     f"(results disk full?)") from None

    def save_experiment(self, text):
        """experiment.toml: the experiment as run, resolved (harness.experiment.resolved): what
        `harness run --experiment <run>/experiment.toml` runs again."""
        path = self.dir / "experiment.toml"
        try:
            path.write_text(text)
        except OSError as exc:
            raise InfraError(f"cannot write {path}: {exc.strerror} (results disk full?)") from None
        return path

    def write(self, label, name, text):
        """A log or table beside a kernel's records."""
        path = self.kernel_dir(label) / name
        try:
            path.write_text(text)
        except OSError as exc:
            raise InfraError(f"cannot write {path}: {exc.strerror} (results disk full?)") from None
        return path


def read_metadata(path):
    """A run's metadata.json, its shape checked (harness.stored)."""
    return stored.metadata(path)


def read_records(path):
    """The records of a JSONL file (harness.stored): a last line cut short by a crash is skipped,
    a broken line before it is an error."""
    return stored.records(path)


def cut_line(fd, size):
    """Cut an unfinished last line off the open file fd of `size` bytes; returns the new size."""
    start = max(0, size - (1 << 20))
    tail = os.pread(fd, size - start, start)
    keep = start + tail.rfind(b"\n") + 1 if b"\n" in tail else start
    os.ftruncate(fd, keep)
    return keep


class NullStore:
    """A store that keeps nothing, for `harness build` (which measures nothing)."""

    def __init__(self):
        self.metadata = {"kernels": {}}

    def update(self, **fields):
        self.metadata.update(fields)

    def save_experiment(self, text):
        pass

    def update_kernel(self, label, **fields):
        self.metadata["kernels"].setdefault(label, {}).update(fields)

    def keep(self, label, *files):
        pass

    def start_kernel(self, label, kept=()):
        pass

    def save(self):
        pass
