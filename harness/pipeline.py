"""The pipeline as one object: for each kernel, source (+ series) -> build -> boot -> workloads.

`Run` is what `harness run` calls and what the Python API uses. A task is one workload run on one
kernel in one boot. A failed task (a workload that refuses its clock, a WARNING in dmesg) is
recorded with its log and the kernel's next task runs; a failure of the kernel itself (build error, panic, hang)
is recorded for that kernel and the run goes on with the next kernel. Nothing measured is lost.
"""
import os
import tempfile
import time
from dataclasses import replace

from harness.guest import accel as accel_mod
from harness.measure import activity, dmesg, selftests
from harness.kernel import kconfig, layout, series as series_mod, sources
from harness import safety, schedule, ui, validate
from harness.analysis import tables          # its pandas loads only when a table is made
from harness.guest import image as image_mod
from harness.kernel.build import Build
from harness.errors import ChannelLost, GuestError, GuestPanic, GuestTimeout, HarnessError, UserError, WorkloadError
from harness.experiment import Experiment, kernel_needs
from harness.guest.machine import Machine, qemu_version
from harness.results import RunStore
from harness.measure.workloads import Workload


class Run:
    def __init__(self, experiment, store=None):
        if experiment.boots is None:
            experiment = replace(experiment, boots=1)
        if experiment.order == "random" and experiment.seed is None:
            experiment = replace(experiment, seed=schedule.new_seed())     # recorded in metadata
        validate.request(experiment)      # the whole request, before anything is built or stored
        self.exp = experiment
        self.failures = []
        self.image = None
        self._series = {}
        self.trees = {}
        self.skip = set()              # kernels already done (resume)
        self.selftest_results = []
        self.selftest_new_failures = []
        # Check every name now, so a typo fails before anything is built or stored.
        loaded = [Workload.load(w.name) for w in experiment.workloads]
        self.tasks = [(w, w.params(spec.params)) for w, spec in zip(loaded, experiment.workloads)]
        for k in experiment.kernels:
            [kconfig.fragment(f) for f in k.fragments]
        for w in loaded:
            if w.manifest.get("table"):
                tables.known(w.manifest["table"])
        if experiment.timing == "icount" and experiment.accel == "kvm":
            raise UserError("--timing icount runs under TCG: it cannot go with --accel kvm")
        self.store = store or RunStore()

    # --- the run --------------------------------------------------------------------------------

    @classmethod
    def resume(cls, run_dir):
        """Continue an interrupted run: the boots that finished are kept, the others run again."""
        store = RunStore.open(run_dir)
        if "experiment" not in store.metadata:
            raise UserError(f"{store.dir} has no experiment in its metadata.json; cannot resume it")
        exp = Experiment.from_dict(store.metadata["experiment"])
        run = cls(exp, store=store)
        run.skip = store.finished_boots()
        return run

    def execute(self):
        exp = self.exp
        if not self.skip:
            self.store.update(command=exp.command_line(), experiment=exp.to_dict())
        plan = schedule.plan(exp)
        self.store.update(design=plan.as_dict())
        ui.console.print(f"run {self.store.id} -> {self.store.dir} ({plan.describe()})")
        built = self.build_all()
        boot = 0
        while built and (boot < plan.boots or self.replayed(built, boot + 1)
                         or self.more_boots(plan, boot, built)):
            slots, boot = plan.batch(boot)
            for b, label in slots:
                self.one_slot(plan, built, b, label)
        self.store.update(design=plan.as_dict())
        for label in built:
            self.set_kernel_status(label, boot)
        self.store.update(finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          failed=sorted({label for label, _ in self.failures}))
        self.compare()
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
        self.variant, kernel = built[label][layout.of_boot(boot, len(built[label]))]
        try:
            self.one_boot(label, kernel, boot)
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

    def replayed(self, built, boot):
        """True when round `boot` finished in an earlier attempt (resume): it is run again as a
        skip, and the stopping rule judges only after the rounds already on disk."""
        return bool(self.skip) and all((label, boot) in self.skip for label in built)

    def more_boots(self, plan, done, built):
        """With --until-ci: True while a headline comparison's interval between the kernels still
        booting is wider than ±until of its ratio (and fewer than max_boots rounds have run, and
        two kernels are left to compare); where it stopped is recorded."""
        if not plan.until:
            return False
        from harness.analysis import stats      # the analysis stack loads where it is used
        widest = stats.widest_interval(self.store.dir, kernels=list(built))
        why = None
        if widest <= plan.until:
            why = f"every headline interval within ±{plan.until:.1%} (widest ±{widest:.2%})"
        elif done >= plan.max_boots:
            why = f"max_boots ({plan.max_boots}) reached; widest headline interval ±{widest:.2%}"
        elif len(built) < 2 and len(self.exp.kernels) > 1:
            why = "fewer than two kernels left to compare"
        if why:
            plan.stopped = f"after {done} boots per kernel: {why}"
            self.store.update(design=plan.as_dict())
            ui.console.print(f"design: stopped after {done} boots per kernel: {why}", markup=False)
            return False
        ui.console.print(f"design: widest headline interval ±{widest:.2%} after {done} boots: "
                         "one more round", markup=False)
        return True

    def build_all(self):
        """{label: Kernel} for every kernel that builds; a kernel that fails is recorded."""
        built = {}
        for spec in self.exp.kernels:
            if not self.skip_all(spec.label):
                self.store.start_kernel(spec.label, kept={n for lb, n in self.skip if lb == spec.label})
            try:
                built[spec.label] = kconfig.require(self.kernel(spec), kernel_needs(self.exp), spec.label)
            except HarnessError as exc:
                self.fail(spec.label, exc)
            except KeyboardInterrupt:
                self.interrupted(spec.label)
                raise
        return built

    def skip_all(self, label):
        return all((label, n) in self.skip for n in range(1, self.exp.boots + 1))

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

    # --- stages ---------------------------------------------------------------------------------

    def guest_image(self):
        if self.image is None:
            with ui.step(f"guest image {self.exp.image}") as say:
                self.image = image_mod.GuestImage(self.exp.image, self.exp.mirror).run(say)
            self.store.update(image={k: self.image.info[k] for k in ("key", "name", "mirror", "build_seconds")})
        return self.image

    def tree(self, spec):
        """The source tree to build: the pristine source, or the source with the series applied."""
        with ui.step(f"[{spec.label}] kernel source {safety.redact(spec.source)}") as say:
            source = sources.resolve(spec.source, insecure=self.exp.insecure_download)
            say(source.id)
        if not spec.series:
            return source, []
        key = (source.id, spec.series)
        if key not in self._series:
            with ui.step(f"[{spec.label}] series {spec.series}") as say:
                series = series_mod.load(spec.series)
                say(f"{len(series.patches)} patches, v{series.version}, based on {series.base or '?'}")
            with ui.step(f"[{spec.label}] apply {len(series.patches)} patches to {source.id}"):
                patched, report = series_mod.apply(series, source)
            ui.console.print(report.table(), markup=False, highlight=False)
            self._series[key] = (patched, series, report)
        patched, series, report = self._series[key]
        self.store.update_kernel(spec.label, series={**series.as_dict(), "apply": [
            {"index": r.index, "status": r.status, "detail": r.detail} for r in report.results]})
        return patched, series_mod.patch_ids(series)

    def kernel(self, spec):
        """[(layout index, Kernel)]: the kernel's layout variants (one: the kernel as it is)."""
        tree, patches = self.tree(spec)
        self.trees[spec.label] = tree
        fragments = kconfig.with_needs([kconfig.fragment(f) for f in spec.fragments],
                                       kernel_needs(self.exp), spec.label)
        config = spec.base or self.exp.base
        build = Build(tree, fragments, patches=patches, base=config,
                      **({"jobs": self.exp.jobs} if self.exp.jobs else {}))
        self.store.update_kernel(spec.label, source=tree.as_dict(), build_key=build.key)
        wanted = layout.indices(spec.layout, self.exp.variants)
        with ui.step(f"[{spec.label}] build {tree.id}"
                     + (f" as {len(wanted)} layout variants" if wanted != [0] else "")) as say:
            if wanted == [0]:
                kernels = {0: build.run(say)}
            else:
                kernels = layout.build_variants(tree, fragments, patches, wanted, self.exp.jobs, say, config)
        self.record_kernel(spec.label, kernels[wanted[0]])
        if wanted != [0]:
            self.store.update_kernel(spec.label, variants=[
                {"variant": i, "pad": layout.pad(i), "build_key": k.key, "release": k.info["release"],
                 "cached_build": k.info.get("cached", False), "build_seconds": k.info.get("build_seconds")}
                for i, k in kernels.items()])
        return sorted(kernels.items())

    def record_kernel(self, label, kernel):
        """Keep a built kernel's log and facts in the run."""
        self.store.keep(label, kernel.path / "build.log", kernel.path / "kernel.json")
        self.store.update_kernel(label, release=kernel.info["release"],
                                 config_sha=kernel.info["config_sha"], toolchain=kernel.info["toolchain"],
                                 fragments=kernel.info["fragments"], patches=kernel.info["patches"],
                                 base=kernel.info.get("base", {"name": kernel.info.get("base_config")}),
                                 config_cow_pte=kconfig.parse(kernel.config).get("CONFIG_COW_PTE", "n"),
                                 cached_build=kernel.info.get("cached", False))

    def choose_accel(self, kernel):
        """The QEMU mode for this run's guests: 'kvm', 'tcg' or 'icount' (TCG counting instructions)."""
        if "accel" not in self.store.metadata:
            with ui.step(f"accelerator ({self.exp.accel})") as say:
                if self.exp.timing == "icount":
                    chosen, reason = "tcg", "icount timing runs under TCG"
                else:
                    chosen, reason = accel_mod.choose(self.exp.accel, kernel.image)
                say(f"{chosen}: {reason}")
            timing = self.exp.timing
            if timing == "auto":
                timing = "real" if chosen == "kvm" else "icount"
            self.store.update(accel=chosen, accel_reason=reason, timing=timing,
                              qemu=qemu_version("qemu-system-x86_64"))
            if timing == "icount":
                ui.warn("timing mode icount: the guest's clock advances with the instructions it executes "
                        "(1 ns per instruction, one vCPU). Times are instruction counts, deterministic "
                        "and comparable between kernels of this mode only, not memory latency or hardware time.")
            elif chosen != "kvm":
                ui.warn(f"guests run under {chosen.upper()} (software emulation), not KVM: {reason}. "
                        f"Times are emulated-CPU times; compare them only with runs of the same mode.")
        meta = self.store.metadata
        return "icount" if meta.get("timing") == "icount" else meta["accel"]

    def one_boot(self, label, kernel, boot):
        """Boot the kernel once (boot number `boot`) and run every task in that boot."""
        spec = next(k for k in self.exp.kernels if k.label == label)
        image = self.guest_image()
        chosen = self.choose_accel(kernel)
        self.store.reset_boot(label, boot)
        info = {"status": "interrupted"}
        self.store.set_boot(label, boot, info)
        try:
            with self.boot(spec, kernel, image, chosen, boot) as m:
                self.current_machine = m
                _, uname, _ = m.run(["uname", "-r"])
                _, clocksource, _ = m.run(["cat", "/sys/devices/system/clocksource/clocksource0/"
                                                  "current_clocksource"])
                info.update(boot_seconds=round(m.boot_seconds, 3), boot_phases=m.boot_phases,
                            clocksource=clocksource.strip(), host_load=round(os.getloadavg()[0], 2))
                facts = {"boot_seconds": info["boot_seconds"], "boot_phases": m.boot_phases,
                         "guest_uname": uname.strip(), "guest_clocksource": clocksource.strip(),
                         "qemu_argv": m.argv}
                if boot == 1 or "boot_seconds" not in self.store.kernel_info(label):
                    self.store.update_kernel(label, **facts)
                self.store.set_boot(label, boot, info)
                # what the kernel logged while booting (a WARNING, a lockdep splat, a taint) fails
                # the kernel; the tasks still run, each judged on what it adds
                boot_hits = self.kernel_log(label, m, "boot", boot) if self.exp.dmesg_check else []
                if boot_hits:
                    self.store.update_kernel(label, boot_dmesg=boot_hits)
                    ui.warn(f"[{label}] kernel log at boot: "
                            + "; ".join(f"{k}: {line}" for k, line in boot_hits[:5]))
                with tempfile.TemporaryDirectory() as staging:
                    for number, (workload, params) in enumerate(self.tasks, 1):
                        self.task(label, m, number, workload, params, staging, boot)
                if self.exp.selftests and boot == 1:
                    self.run_selftests(label, m)
        except HarnessError:
            info["status"] = "failed"
            self.store.set_boot(label, boot, info)
            raise
        tasks = self.store.tasks(label, boot)
        info["status"] = "failed" if boot_hits or any(t["status"] != "ok" for t in tasks) else "ok"
        self.store.set_boot(label, boot, info)
        self.set_kernel_status(label, self.exp.boots, final=False)

    def boot(self, spec, kernel, image, chosen, boot=1, attempts=5):
        """A booted, ready guest. A boot whose clocksource fell back to jiffies cannot time
        anything: it is logged, set aside and booted again."""
        logdir = self.store.boot_dir(spec.label, boot)
        for attempt in range(1, attempts + 1):
            m = Machine(kernel, image, logdir, accel=chosen, memory_mib=self.exp.memory_mib,
                        cpus=self.exp.cpus, extra_cmdline=self.exp.extra_cmdline, stall=self.exp.stall_s,
                        pin=self.exp.pin, prealloc=self.exp.prealloc)
            m.start()
            try:
                of = f"/{self.exp.boots}" if boot <= self.exp.boots else " (one more round)"
                with ui.step(f"[{spec.label}] boot {boot}{of}: "
                             f"{kernel.info['release']} under {chosen}") as say:
                    seconds = m.wait_ready(self.exp.boot_timeout)
                    say(f"first guest command after {seconds:.2f} s")
            except BaseException:
                m.stop()
                raise
            trouble = m.clock_trouble()
            if not trouble or attempt == attempts:
                if trouble:
                    ui.warn(f"[{spec.label}] the guest clock is coarse after {attempts} boots: {trouble[0]}")
                self.store.set_boot(spec.label, boot, {"attempts": attempt})
                return m
            m.stop()
            for log in (m.console_log, m.qemu_log):
                log.rename(log.with_name(f"{log.stem}.attempt-{attempt}{log.suffix}"))
            ui.warn(f"[{spec.label}] boot {attempt}: {trouble[0]}: the clock would be coarse; booting again")
        raise AssertionError("unreachable")

    def task(self, label, machine, number, workload, params, staging, boot=1):
        name = f"{number}:{workload.name}"
        entry = {"task": name, "boot": boot, "workload": workload.name, "params": params, "status": "ok"}
        host = self.store.metadata["host"].get("hostname")
        append = self.store.appender(label, workload.name)

        def store(record):
            append({**record, "task": name, "kernel": label, "boot": boot, "host": host,
                    "timing": self.store.metadata.get("timing"),
                    **({"variant": self.variant} if self.exp.variants else {})})

        try:
            self._task(label, machine, workload, params, staging, store, entry)
        finally:
            self.store.add_task(label, entry)

    def _task(self, label, machine, workload, params, staging, store, entry):
        name = entry["task"]
        entry["host_load_before"] = round(os.getloadavg()[0], 2)   # a busy host distorts timings
        try:
            try:
                with ui.step(f"[{label}] workload {workload.name} {params}"):
                    records = workload.run(machine, params, store, staging)
            except WorkloadError:
                machine.settle()               # a workload killed by a panic is the panic
                raise
            judged = {r["cow_pte"] for r in records if "cow_pte" in r}
            if judged:
                entry["cow_pte"] = sorted(judged)
            entry["records"] = len(records)
            entry["host_load_after"] = round(os.getloadavg()[0], 2)
            self.show(label, workload, records)
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
        if self.exp.dmesg_check:
            hits = self.kernel_log(label, machine, name.replace(":", "-"), entry["boot"])
            if hits:
                entry.update(status="failed", dmesg=hits)
                self.fail(label, WorkloadError(f"kernel log after {workload.name}: "
                                               + "; ".join(f"{k}: {line}" for k, line in hits[:5])), task=name)

    def run_selftests(self, label, machine):
        """The kernel's own vm selftests, plainly and under the COW PTE launcher, as tasks."""
        prepared = None
        for name in self.exp.selftests:
            test = selftests.spec(name)         # a name the catalog lacks: UserError
            entry = {"task": f"selftest:{name}", "boot": 1, "workload": f"selftest-{name}", "status": "ok"}
            try:
                with ui.step(f"[{label}] selftest {name}: build and prepare the guest") as say:
                    binary = selftests.build_test(name, self.trees[label].path,
                                                  test_source=self.exp.selftest_source)
                    launcher = selftests.build_launcher()
                    entry["setup"] = prepared = prepared or selftests.prepare_guest(machine)
                    say(f"{entry['setup']['hugepages_2m']} hugetlb pages, swap {entry['setup']['swap_kib']} kB")
                for way, launch in (("plain", None), ("cow-pte", launcher)):
                    with ui.step(f"[{label}] selftest {name} ({way})") as say:
                        result = selftests.run_test(machine, binary, launch, label=label, name=name,
                                                    args=test.get("args", ()),
                                                    timeout=test.get("timeout", 900))
                        say(result.get("error") or result.get("launcher") or f"{len(result['cases'])} cases")
                    self.store.write(label, f"selftest-{name}-{way}.tap", result["output"])
                    self.store.appender(label, f"selftest-{name}")(
                        {k: v for k, v in result.items() if k not in ("output", "stderr")})
                    self.selftest_results.append(result)
                    if way == "plain" and result.get("error"):
                        entry.update(status="failed", error=result["error"])
            except HarnessError as exc:
                entry.update(status="failed", error=str(exc))
                self.fail(label, exc, task=entry["task"])
                if isinstance(exc, (GuestPanic, GuestTimeout)):
                    self.store.add_task(label, entry)
                    raise
            hits = self.kernel_log(label, machine, f"selftest-{name}") if self.exp.dmesg_check else []
            if hits:
                entry.update(status="failed", dmesg=hits)
                self.fail(label, WorkloadError(f"kernel log after selftest {name}: "
                                               + "; ".join(f"{k}: {line}" for k, line in hits[:5])),
                          task=entry["task"])
            self.store.add_task(label, entry)

    def kernel_log(self, label, machine, name, boot=1):
        """Keep the guest's kernel log since the last look; return what a reviewer would flag: its
        BUGs, WARNINGs, lockdep reports ..., and the taint flags set since the last look (a taint
        stays for the rest of the boot: the task that set it fails, not every task after it)."""
        log, hits = dmesg.check(machine)
        self.store.write(label, f"{self.store.boot_prefix(boot)}dmesg-{name}.log", log)
        return hits

    # --- output ---------------------------------------------------------------------------------

    def show(self, label, workload, records):
        """The table the workload's manifest names (`table`), printed and saved per kernel."""
        kind = workload.manifest.get("table")
        if kind not in tables.KERNEL_TABLES or not records:
            return                              # "headline": one table at the end (compare)
        ui.out(tables.render(kind, records, title=f"{label}: {workload.name}, {activity.kind(records)}"))
        ui.out()
        name = f"{workload.name}-cow-pte" if records[0].get("cow_pte_requested") else workload.name
        tables.save_kernel_table(kind, records, self.store.kernel_dir(label), name)

    def compare(self):
        if self.selftest_results:
            stock = self.exp.kernels[0].label
            ui.out(f"kernel selftests (case x kernel/way; '!!' = fails where {stock}/plain passes):")
            ui.out(selftests.render(self.selftest_results, stock=stock))
            ui.out()
            table = selftests.table(self.selftest_results)
            table.to_csv(self.store.dir / "selftests.csv")
            if (stock, "plain") in table.columns:
                self.selftest_new_failures = selftests.new_failures(table, stock)
            self.store.update(selftest_new_failures=self.selftest_new_failures)
        from harness.analysis import summary
        summary.show(self.store.dir, list(dict.fromkeys(w.name for w, _ in self.tasks)), ui.out)
        if len(self.exp.kernels) < 2 and len(self.tasks) < 2:
            return
        shown = {}
        for workload, _ in self.tasks:
            if workload.manifest.get("table") in tables.COMPARISONS:
                shown[workload.name] = workload.manifest["table"]
        for name, kind in shown.items():
            rows = [r for spec in self.exp.kernels for r in self.store.records(spec.label, name)]
            if not rows:
                continue
            table = tables.comparison(kind, rows)
            tables.save(table, self.store.dir, f"{name}-comparison")
            ui.out(f"{name}, all kernels (medians; COW PTE judged from PageTables, not from prctl):")
            ui.out(table.to_string())
            ui.out()
