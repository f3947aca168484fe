"""The pipeline as one object: for each kernel, prepare (source + series -> build) -> boot -> tasks.

`Run` is what `harness run` calls and what the Python API uses. It puts small services together
and keeps the order of things: the kernels come from a preparer (harness.kernel.prepare: built,
or built beforehand), the guests from a guest factory (harness.guest.factory), the work in each
boot from a task plan (harness.measure.session), the boots' order and the stopping rule from the
design (harness.schedule), and the tables from the output (harness.output). A caller that needs
another kernel source, guest or task plan passes its own; nothing subclasses Run.

A failed task (a workload that refuses its clock, a WARNING in dmesg) is recorded with its log and
the kernel's next task runs; a task in which the guest dies (panic, hang, QEMU gone) is recorded as
crashed and the same kernel is booted again for the next task; a kernel that does not build or boot
is recorded for that kernel and the run goes on with the next kernel. Nothing measured is lost.
"""
import time
from dataclasses import replace

from harness import feature, schedule, ui, validate
from harness.errors import HarnessError, UserError
from harness.experiment import Experiment, kernel_needs, resolved
from harness.guest.factory import Guests
from harness.kernel import kconfig, layout, prepare
from harness.measure import session
from harness.measure.workloads import Workload
from harness.output import Output
from harness.results import RunStore


def decided(experiment):
    """The experiment with what a run decides itself: one boot unless asked, a seed for a random
    order (recorded in metadata)."""
    if experiment.boots is None:
        experiment = replace(experiment, boots=1)
    if experiment.order == "random" and experiment.seed is None:
        experiment = replace(experiment, seed=schedule.new_seed())
    return experiment


def same_tasks(experiment):
    """The task plan of a plain run: every kernel runs the experiment's workloads."""
    return session.Same([(w, w.params(spec.params)) for spec in experiment.workloads
                         for w in [Workload.load(spec.name)]])


class Run:
    def __init__(self, experiment, store=None, kernels=None, guests=None, tasks=None, checked=False):
        """kernels: the preparer (default: build the experiment's kernels); guests: the guest
        factory; tasks: the task plan (default: the experiment's workloads on every kernel);
        checked: the caller validated this request already (validate.request)."""
        experiment = decided(experiment)
        if not checked:
            validate.request(experiment)      # the whole request, before anything is built or stored
        self.exp = experiment
        self.profile = feature.of(experiment)     # resolved once, handed to the parts that need it
        self.plan = tasks or same_tasks(experiment)
        self.store = store or RunStore()
        self.kernels = kernels or prepare.Kernels(experiment, self.profile)
        self.guests = guests or Guests(experiment, self.store)
        self.output = Output(self.store, self.profile)
        self.failures = []
        self.skip = set()              # (label, boot) done already (resume)
        self.selftest_results = []
        self.selftest_new_failures = []

    @classmethod
    def resume(cls, run_dir):
        """Continue an interrupted run: the boots that finished are kept, the others run again."""
        store = RunStore.open(run_dir)
        if "experiment" not in store.metadata:
            raise UserError(f"{store.dir} has no experiment in its metadata.json; cannot resume it")
        run = cls(Experiment.from_dict(store.metadata["experiment"]), store=store)
        run.skip = store.finished_boots()
        return run

    def execute(self):
        exp = self.exp
        if not self.skip:
            self.store.update(command=exp.command_line(), experiment=exp.to_dict(), feature=self.profile.name)
            self.store.save_experiment(resolved(exp))
        plan = schedule.plan(exp)
        self.store.update(design=plan.as_dict())
        ui.console.print(f"run {self.store.id} -> {self.store.dir} ({plan.describe()})")
        built = self.build_all()
        boot = 0
        while built and (boot < plan.boots or schedule.replayed(self.skip, built, boot + 1)
                         or self.more_boots(plan, boot, built)):
            slots, boot = plan.batch(boot)
            for b, label in slots:
                self.one_slot(plan, built, b, label)
        self.store.update(design=plan.as_dict())
        for label in built:
            self.set_kernel_status(label, boot)
        self.store.update(finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          failed=sorted({label for label, _ in self.failures}))
        self.end()
        return self

    def one_slot(self, plan, built, boot, label):
        """One boot of one kernel, unless it is done or the kernel failed."""
        if label not in built:
            return
        plan.ran.append((boot, label))
        ui.context(f"{len(plan.ran) - 1} boots done, this is boot {boot} of {label}")
        if (label, boot) in self.skip:
            ui.console.print(f"[{label}] boot {boot} finished in an earlier attempt: kept", markup=False)
            return
        variant, kernel = built[label][layout.of_boot(boot, len(built[label]))]
        try:
            self.one_boot(label, kernel, boot, variant)
        except HarnessError as exc:      # a kernel that panics or hangs gets no more boots
            self.fail(label, exc)
            built.pop(label)
        except KeyboardInterrupt:
            self.interrupted(label)
            raise

    def interrupted(self, label):
        """Ctrl-C or SIGTERM: what was recorded stays; `harness run --resume` runs the unfinished
        boots again."""
        self.store.update_kernel(label, status="interrupted")
        self.store.update(interrupted=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def more_boots(self, plan, done, built):
        """With --until-ci: one more round unless the design's stopping rule (schedule.stop_reason)
        says why not; where it stopped is recorded."""
        if not plan.until:
            return False
        from harness.analysis import stats      # the analysis stack loads where it is used
        widest = stats.widest_interval(self.store.dir, kernels=list(built))
        why = schedule.stop_reason(widest, plan.until, done, plan.max_boots, len(built), len(self.exp.kernels))
        if why:
            plan.stopped = f"after {done} boots per kernel: {why}"
            self.store.update(design=plan.as_dict())
            ui.console.print(f"design: stopped after {done} boots per kernel: {why}", markup=False)
            return False
        ui.console.print(f"design: widest headline interval ±{widest:.2%} after {done} boots: "
                         "one more round", markup=False)
        return True

    def build_all(self):
        """{label: [(layout, Kernel)]} for every kernel that builds; a kernel that fails is recorded."""
        built = {}
        for spec in self.exp.kernels:
            if not all((spec.label, n) in self.skip for n in range(1, self.exp.boots + 1)):
                self.store.start_kernel(spec.label, kept={n for lb, n in self.skip if lb == spec.label})
            try:
                built[spec.label] = kconfig.require(self.kernels.kernel(spec, self.store), kernel_needs(self.exp),
                                                    spec.label)
            except HarnessError as exc:
                self.fail(spec.label, exc)
            except KeyboardInterrupt:
                self.interrupted(spec.label)
                raise
        return built

    def set_kernel_status(self, label, boots, final=True):
        """A kernel is ok when every one of its boots is; failed when one failed (or, at the end,
        did not finish); running while boots are still to come."""
        info = self.store.kernel_info(label)
        states = [(info.get("boots") or {}).get(str(n), {}).get("status") for n in range(1, boots + 1)]
        if info.get("status") == "failed":
            return
        if all(s == "ok" for s in states):
            status = "ok"
        elif final or "failed" in states:
            status = "failed"
        else:
            status = "running"
        self.store.update_kernel(label, status=status)

    def fail(self, label, exc, task=None):
        self.failures.append((label, exc))
        where = f"[{label}]" + (f" {task}" if task else "")
        ui.error(f"{where} {exc}")
        if task is None:
            self.store.update_kernel(label, status="failed", error=str(exc), error_type=type(exc).__name__)

    @property
    def exit_code(self):
        return self.failures[0][1].exit_code if self.failures else 0

    def one_boot(self, label, kernel, boot, variant=0):
        """Boot the kernel once (boot number `boot`) and run the plan's tasks in that boot."""
        self.store.reset_boot(label, boot)
        info = {"status": "interrupted"}
        self.store.set_boot(label, boot, info)
        started = time.monotonic()
        of = f"/{self.exp.boots}" if boot <= self.exp.boots else " (one more round)"
        logdir = self.store.boot_dir(label, boot)

        def reboot(n):                  # the kernel died in a task: boot it again for the next ones
            machine, _ = self.guests.boot(kernel, logdir / f"after-death-{n}", f"[{label}] boot {boot}, again ({n})")
            return machine
        try:
            machine, attempts = self.guests.boot(kernel, logdir, f"[{label}] boot {boot}{of}")
            self.store.set_boot(label, boot, {"attempts": attempts})
            work = None
            try:
                work = session.Session(self.exp, self.store, self.fail, self.output, label, machine,
                                       boot, variant, profile=self.profile, reboot=reboot)
                info.update(work.facts())
                self.store.set_boot(label, boot, info)
                boot_hits = work.boot_log()
                work.counted(kernel)
                work.run(self.plan.of(label))
                if self.exp.selftests and boot == 1:
                    work.selftests(self.kernels.trees[label], self.selftest_results)
            finally:
                (work.machine if work else machine).stop()
        except HarnessError:
            info["status"] = "failed"
            self.store.set_boot(label, boot, info)
            raise
        finally:
            self.plan.done(label, boot, time.monotonic() - started)
        tasks = self.store.tasks(label, boot)
        info["status"] = "failed" if boot_hits or any(t["status"] != "ok" for t in tasks) else "ok"
        self.store.set_boot(label, boot, info)
        self.set_kernel_status(label, self.exp.boots, final=False)

    def end(self):
        """The tables at the end of the run (harness.output)."""
        labels = [spec.label for spec in self.exp.kernels]
        if self.selftest_results:
            self.selftest_new_failures = self.output.selftest_diff(self.selftest_results, labels[0])
        self.output.end(labels, [w for label in labels for w, _ in self.plan.of(label)])
