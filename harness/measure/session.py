"""The work of one boot: a task plan run in a booted guest, every task recorded.

A task is one workload run with one set of parameters. A failed task (a workload that refuses
its clock, a WARNING in dmesg) is recorded with its log and the next task runs; a lost SSH
connection fails its task and the next one runs on a new connection; a dead kernel (panic, hang,
QEMU gone) ends the boot with a GuestError for the caller. The kernel's log is read after every
task, and the kernel's own selftests run (plainly and under the feature's launcher) when asked.

Which tasks a kernel's boots run is the task plan's answer: `Same` (every kernel runs the
experiment's workloads) or a plan of the caller's (attribute runs its own tasks per step).
"""
import os
import tempfile

from harness import feature, ui
from harness.errors import ChannelLost, GuestError, GuestPanic, GuestTimeout, HarnessError, WorkloadError
from harness.measure import coverage, dmesg, selftests


class Same:
    """The task plan of a plain run: every kernel's boots run the same tasks."""

    def __init__(self, tasks):
        self.tasks = tasks

    def of(self, label):
        return self.tasks

    def done(self, label, boot, seconds):
        """Called after each boot with the seconds it took (boot and tasks)."""


class Session:
    """The tasks of one kernel's boot, recorded in the store; `fail(label, exc, task)` is told of
    every failure, `output.kernel_table(label, workload, records)` gets every task's records."""

    def __init__(self, exp, store, fail, output, label, machine, boot, variant=None, *, profile):
        """profile: the experiment's feature profile, resolved once by the Run."""
        self.exp, self.store, self.fail, self.output = exp, store, fail, output
        self.label, self.machine, self.boot, self.variant = label, machine, boot, variant
        self.profile = profile
        self.coverage = None       # a coverage.Collector on a gcov kernel: counts per task

    def counted(self, kernel):
        """On a gcov coverage kernel, keep what the boot ran and count each task on its own."""
        self.coverage = coverage.Collector.of(kernel, self.machine, self.store, self.label)
        if self.coverage:
            self.coverage.collect("boot", self.boot, "boot")

    def facts(self):
        """The boot's facts (kept in its boot record; the first boot's also in the kernel's)."""
        m = self.machine
        _, uname, _ = m.run(["uname", "-r"])
        _, clocksource, _ = m.run(["cat", "/sys/devices/system/clocksource/clocksource0/current_clocksource"])
        info = dict(boot_seconds=round(m.boot_seconds, 3), boot_phases=m.boot_phases,
                    clocksource=clocksource.strip(), host_load=round(os.getloadavg()[0], 2),
                    **m.boot_facts())
        if self.boot == 1 or "boot_seconds" not in self.store.kernel_info(self.label):
            self.store.update_kernel(self.label, boot_seconds=info["boot_seconds"], boot_phases=m.boot_phases,
                                     guest_uname=uname.strip(), guest_clocksource=info["clocksource"],
                                     qemu_argv=m.argv)
        return info

    def boot_log(self):
        """The kernel's log while booting: what a reviewer would flag fails the kernel (the tasks
        still run, each judged on what it adds)."""
        hits = self.kernel_log("boot", self.boot) if self.exp.dmesg_check else []
        if hits:
            self.store.update_kernel(self.label, boot_dmesg=hits)
            ui.warn(f"[{self.label}] kernel log at boot: " + "; ".join(f"{k}: {line}" for k, line in hits[:5]))
        return hits

    def run(self, tasks):
        with tempfile.TemporaryDirectory() as staging:
            for number, (workload, params) in enumerate(tasks, 1):
                self.task(number, workload, params, staging)

    def task(self, number, workload, params, staging):
        label, boot = self.label, self.boot
        name = f"{number}:{workload.name}"
        entry = {"task": name, "boot": boot, "workload": workload.name, "params": params, "status": "ok"}
        host = self.store.metadata["host"].get("hostname")
        append = self.store.appender(label, workload.name)

        def store(record):
            append({**record, "task": name, "kernel": label, "boot": boot, "host": host,
                    "timing": self.store.metadata.get("timing"),
                    **({"coverage": "gcov"} if self.coverage else {}),     # never timed (stats)
                    **({"variant": self.variant} if self.exp.variants else {})})

        try:
            self._task(workload, params, staging, store, entry)
        finally:
            self.store.add_task(label, entry)

    def _task(self, workload, params, staging, store, entry):
        label, machine, name = self.label, self.machine, entry["task"]
        entry["host_load_before"] = round(os.getloadavg()[0], 2)   # a busy host distorts timings
        if self.coverage:
            self.coverage.reset()
        try:
            try:
                with ui.step(f"[{label}] workload {workload.name} {params}"):
                    records = workload.run(machine, params, store, staging, self.profile)
            except WorkloadError:
                machine.settle()               # a workload killed by a panic is the panic
                raise
            judged = {r[feature.STATE] for r in records if feature.STATE in r}
            if judged:
                entry[feature.STATE] = sorted(judged)
            entry["records"] = len(records)
            entry["host_load_after"] = round(os.getloadavg()[0], 2)
            self.output.kernel_table(label, workload, records)
        except WorkloadError as exc:
            entry.update(status="failed", error=str(exc))
            self.fail(label, exc, task=name)
        except ChannelLost as exc:
            # the connection dropped, not the guest: note it, reconnect, go on with the next task
            entry.update(status="failed", error=str(exc))
            self.fail(label, exc, task=name)
            machine.reconnect()
        except GuestError as exc:              # panic, hang, QEMU gone: this kernel is done
            entry.update(status="failed", error=str(exc))
            raise
        except KeyboardInterrupt:              # Ctrl-C, or SIGTERM (a CI or remote timeout)
            entry.update(status="interrupted")
            raise
        finally:
            if self.coverage and entry["status"] != "interrupted":
                self.coverage.collect(name, entry["boot"], coverage.way_of(params, self.profile))
        self.judge_log(entry, name.replace(":", "-"), f"kernel log after {workload.name}")

    def judge_log(self, entry, name, what):
        if not self.exp.dmesg_check:
            return
        hits = self.kernel_log(name, entry["boot"])
        if hits:
            entry.update(status="failed", dmesg=hits)
            self.fail(self.label, WorkloadError(f"{what}: " + "; ".join(f"{k}: {line}" for k, line in hits[:5])),
                      task=entry["task"])

    def selftests(self, tree, results):
        """The kernel's own vm selftests, plainly and under the profile's launcher, as tasks; each
        result is appended to `results`."""
        prepared = None
        label, machine = self.label, self.machine
        for name in self.exp.selftests:
            test = selftests.spec(name)         # a name the catalog lacks: UserError
            entry = {"task": f"selftest:{name}", "boot": 1, "workload": f"selftest-{name}", "status": "ok"}
            try:
                with ui.step(f"[{label}] selftest {name}: build and prepare the guest") as say:
                    binary = selftests.build_test(name, tree.path, test_source=self.exp.selftest_source)
                    launcher = selftests.build_launcher(self.profile)
                    entry["setup"] = prepared = prepared or selftests.prepare_guest(machine)
                    say(f"{entry['setup']['hugepages_2m']} hugetlb pages, swap {entry['setup']['swap_kib']} kB")
                for way, launch in selftests.ways(self.profile, launcher):
                    if self.coverage:
                        self.coverage.reset()
                    with ui.step(f"[{label}] selftest {name} ({way})") as say:
                        try:
                            result = selftests.run_test(machine, binary, launch, label=label, name=name,
                                                        way=way, args=test.get("args", ()),
                                                        timeout=test.get("timeout", 900))
                        finally:
                            if self.coverage:
                                self.coverage.collect(f"selftest:{name}:{way}", 1, way)
                        say(result.get("error") or result.get("launcher") or f"{len(result['cases'])} cases")
                    self.store.write(label, f"selftest-{name}-{way}.tap", result["output"])
                    self.store.appender(label, f"selftest-{name}")(
                        {k: v for k, v in result.items() if k not in ("output", "stderr")})
                    results.append(result)
                    if way == "plain" and result.get("error"):
                        entry.update(status="failed", error=result["error"])
            except HarnessError as exc:
                entry.update(status="failed", error=str(exc))
                self.fail(label, exc, task=entry["task"])
                if isinstance(exc, (GuestPanic, GuestTimeout)):
                    self.store.add_task(label, entry)
                    raise
            self.judge_log(entry, f"selftest-{name}", f"kernel log after selftest {name}")
            self.store.add_task(label, entry)

    def kernel_log(self, name, boot=1):
        """Keep the guest's kernel log since the last look; return what a reviewer would flag: its
        BUGs, WARNINGs, lockdep reports ..., and the taint flags set since the last look (a taint
        stays for the rest of the boot: the task that set it fails, not every task after it)."""
        log, hits = dmesg.check(self.machine)
        self.store.write(self.label, f"{self.store.boot_prefix(boot)}dmesg-{name}.log", log)
        return hits
