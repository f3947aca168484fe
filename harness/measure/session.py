"""The work of one boot: a task plan run in a booted guest, every task recorded.

A task is one workload run with one set of parameters. A failed task (a workload that refuses
its clock, a WARNING in dmesg) is recorded with its log and the next task runs; a lost SSH
connection fails its task and the next one runs on a new connection; a task whose guest dies
(panic, hang, QEMU gone, or no new connection) is recorded as crashed with the first lines of the
oops from the console (addresses named from System.map), and the same kernel is booted again
(the caller's `reboot`) before the next task: a death loses no other task's result. The kernel's
log is read after every task, and the kernel's own selftests run (plainly and under the feature's
launcher) when asked, each way a task of its own in this sense.

Which tasks a kernel's boots run is the task plan's answer: `Same` (every kernel runs the
experiment's workloads) or a plan of the caller's (attribute runs its own tasks per step).
"""
import os
import tempfile

from harness import feature, ui
from harness.errors import ChannelLost, GuestError, GuestPanic, GuestTimeout, HarnessError, WorkloadError
from harness.measure import coverage, dmesg, selftests

MAX_REBOOTS = 10        # deaths in one boot after which the kernel is given up


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

    def __init__(self, exp, store, fail, output, label, machine, boot, variant=None, reboot=None, *, profile):
        """profile: the experiment's feature profile, resolved once by the Run. reboot(n): the
        same kernel booted again after its n-th death in this boot (a ready machine); None: a
        death ends the boot (the GuestError goes to the caller)."""
        self.exp, self.store, self.fail, self.output = exp, store, fail, output
        self.label, self.machine, self.boot, self.variant = label, machine, boot, variant
        self.profile = profile
        self.reboot, self.dead, self.reboots, self.prepared = reboot, None, [], None
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
                self.revive()
                self.task(number, workload, params, staging)

    def revive(self):
        """Boot the kernel again if the last task killed it; its boot log is kept and read
        (so the next task is judged on its own lines)."""
        if self.dead is None:
            return
        if len(self.reboots) >= MAX_REBOOTS:
            raise GuestError(f"the kernel died {len(self.reboots) + 1} times in boot {self.boot}: given up")
        n = len(self.reboots) + 1
        with ui.step(f"[{self.label}] boot the kernel again after it died in {self.dead}"):
            self.machine = self.reboot(n)
        if self.coverage:           # the counts of the boots after a death: the new machine's
            self.coverage.machine, self.coverage.ready = self.machine, False
        self.reboots.append({"after": self.dead, "boot_seconds": round(self.machine.boot_seconds, 3)})
        self.store.set_boot(self.label, self.boot, {"reboots": self.reboots})
        self.dead, self.prepared = None, None
        if self.exp.dmesg_check:
            self.kernel_log(f"reboot-{n}", self.boot)

    def died(self, entry, exc, mark):
        """The guest died (or cannot be reached) in this task: the task is recorded as crashed
        with the console's evidence and the machine stopped; the next task boots it again."""
        evidence = self.machine.death_evidence(mark)
        message = exc.args[0] if exc.args else type(exc).__name__
        entry.update(status="crashed", error=message, console=evidence)
        self.fail(self.label, type(exc)(message, log_tail=evidence), task=entry["task"])
        if "error" not in self.store.kernel_info(self.label):      # the first death, for the kernel
            self.store.update_kernel(self.label, error=f"{entry['task']}: {message}\n{evidence}",
                                     error_type=type(exc).__name__)
        self.dead = entry["task"]
        if self.reboot is None:
            raise exc
        self.machine.stop()

    def recover(self, entry, exc, mark):
        """After a GuestError in a task: True when the guest is dead (recorded by died()); a
        dropped connection to a live guest is made again (the task failed) and gives False."""
        if isinstance(exc, ChannelLost):
            try:
                self.machine.reconnect()
                entry.update(status="failed", error=str(exc))
                self.fail(self.label, exc, task=entry["task"])
                return False
            except GuestError as again:
                exc = again
        self.died(entry, exc, mark)
        return True

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
        mark = machine.console_mark()
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
        except GuestError as exc:              # panic, hang, QEMU gone, or the connection dropped
            if self.recover(entry, exc, mark):
                return                          # dead: its counts are lost with it
        except KeyboardInterrupt:              # Ctrl-C, or SIGTERM (a CI or remote timeout)
            entry.update(status="interrupted")
            raise
        if self.coverage:
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
        result is appended to `results`. A way whose guest dies is recorded as crashed (its cases
        up to the death, and the case it was in); the kernel is booted again for the next way."""
        label = self.label
        for name in self.exp.selftests:
            test = selftests.spec(name)         # a name the catalog lacks: UserError
            entry = {"task": f"selftest:{name}", "boot": self.boot, "workload": f"selftest-{name}", "status": "ok"}
            try:
                with ui.step(f"[{label}] selftest {name}: build"):
                    binary = selftests.build_test(name, tree.path, test_source=self.exp.selftest_source)
                    launcher = selftests.build_launcher(self.profile)
                for way, launch in selftests.ways(self.profile, launcher):
                    self.revive()
                    result = self.selftest_way(entry, name, test, binary, way, launch)
                    self.store.appender(label, f"selftest-{name}")(
                        {k: v for k, v in result.items() if k not in ("output", "stderr")})
                    results.append(result)
                    if result.get("crashed"):
                        entry.setdefault("crashed", []).append({"way": way, "case": result["crashed_in"]})
                    elif way == "plain" and result.get("error") and entry["status"] == "ok":
                        entry.update(status="failed", error=result["error"])
            except GuestError as exc:
                if self.dead is not None:                # the kernel died and did not boot again
                    self.store.add_task(label, entry)
                    raise
                entry.update(status="failed", error=str(exc))   # e.g. no hugetlb pages: not a death
                self.fail(label, exc, task=entry["task"])
            except HarnessError as exc:
                entry.update(status="failed", error=str(exc))
                self.fail(label, exc, task=entry["task"])
            if self.dead is None:
                self.judge_log(entry, f"selftest-{name}", f"kernel log after selftest {name}")
            self.store.add_task(label, entry)

    def selftest_way(self, entry, name, test, binary, way, launch):
        """One selftest run in one way; its output goes to <kernel>/selftest-<name>-<way>.tap line
        by line as it comes, so a death keeps what the test printed up to it."""
        machine = self.machine
        mark, seen = machine.console_mark(), []
        if self.prepared is None:
            try:
                with ui.step(f"[{self.label}] prepare the guest for the selftests") as say:
                    self.prepared = entry["setup"] = selftests.prepare_guest(machine)
                    say(f"{self.prepared['hugepages_2m']} hugetlb pages, swap {self.prepared['swap_kib']} kB")
            except (GuestPanic, GuestTimeout, ChannelLost) as exc:   # the guest, not its config
                self.recover(entry, exc, mark)
                return selftests.crashed(name, way, self.label, "", exc, launch, case="(preparing the guest)")
        path = self.store.kernel_dir(self.label) / f"selftest-{name}-{way}.tap"
        with open(path, "w") as stream, ui.step(f"[{self.label}] selftest {name} ({way})") as say:
            def line(text):
                seen.append(text)
                stream.write(text + "\n")
                stream.flush()
            if self.coverage:
                self.coverage.reset()
            try:
                result = selftests.run_test(machine, binary, launch, label=self.label, name=name, way=way,
                                            args=test.get("args", ()), timeout=test.get("timeout", 900),
                                            on_line=line, script=test.get("script"))
            except GuestError as exc:
                self.recover(entry, exc, mark)
                result = selftests.crashed(name, way, self.label, "".join(t + "\n" for t in seen), exc, launch)
                say(result["error"])
                return result
            if self.coverage:
                self.coverage.collect(f"selftest:{name}:{way}", 1, way)
            say(result.get("error") or result.get("launcher") or f"{len(result['cases'])} cases")
            stream.seek(0)
            stream.truncate()
            stream.write(result["output"])
        return result

    def kernel_log(self, name, boot=1):
        """Keep the guest's kernel log since the last look; return what a reviewer would flag: its
        BUGs, WARNINGs, lockdep reports ..., and the taint flags set since the last look (a taint
        stays for the rest of the boot: the task that set it fails, not every task after it)."""
        log, hits = dmesg.check(self.machine)
        self.store.write(self.label, f"{self.store.boot_prefix(boot)}dmesg-{name}.log", log)
        return hits
