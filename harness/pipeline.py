"""The pipeline as one object: for each kernel, source -> build -> boot -> workloads -> results.

`Run` is what `harness run` calls and what the Python API uses. A failure in one kernel (a build
error, a panic, a workload that refuses its clock) is recorded for that kernel with its log, and
the run goes on with the next one; nothing measured before is lost.
"""
import shlex
import tempfile
import time
from dataclasses import dataclass, field

from harness import accel as accel_mod
from harness import image as image_mod
from harness import kconfig, sources, tables, ui
from harness.build import Build
from harness.errors import HarnessError
from harness.machine import Machine, qemu_version
from harness.results import RunStore
from harness.workloads import Workload

DEFAULT_FRAGMENTS = ["guest-base"]


@dataclass
class KernelSpec:
    label: str
    source: str
    fragments: list = field(default_factory=lambda: list(DEFAULT_FRAGMENTS))


@dataclass
class Experiment:
    kernels: list
    workloads: list = field(default_factory=lambda: [("fork-memory", {})])
    accel: str = "auto"
    memory_mib: int = 3072
    cpus: int = 2
    image: str = "debian-minimal"
    mirror: str = None
    jobs: int = None
    boot_timeout: int = 120

    def command_line(self):
        """The harness command that repeats this experiment."""
        argv = ["harness", "run"]
        for k in self.kernels:
            argv += ["--kernel-src", k.source, "--label", k.label]
            for frag in k.fragments:
                argv += ["--config", frag]
        for name, params in self.workloads:
            argv += ["--workload", name]
            for key, value in sorted(params.items()):
                argv += ["--param", f"{key}={value}"]
        argv += ["--accel", self.accel, "--memory", str(self.memory_mib), "--cpus", str(self.cpus),
                 "--image", self.image]
        return shlex.join(argv)


class Run:
    def __init__(self, experiment, store=None):
        self.exp = experiment
        self.failures = []
        self.image = None
        # Check every name now, so a typo fails before anything is built or stored.
        self.workloads = [(Workload.load(name), Workload.load(name).params(params))
                          for name, params in experiment.workloads]
        for k in experiment.kernels:
            [kconfig.fragment(f) for f in k.fragments]
        self.store = store or RunStore()

    def execute(self):
        exp = self.exp
        self.store.update(command=exp.command_line(), experiment={
            "kernels": [vars(k) for k in exp.kernels],
            "workloads": [{"name": w.name, "params": p} for w, p in self.workloads],
            "memory_mib": exp.memory_mib, "cpus": exp.cpus, "image": exp.image})
        ui.console.print(f"run {self.store.id} -> {self.store.dir}")
        for spec in exp.kernels:
            try:
                self.one_kernel(spec)
            except HarnessError as exc:
                self.failures.append((spec.label, exc))
                ui.error(f"[{spec.label}] {exc}")
                self.store.update_kernel(spec.label, status="failed", error=str(exc),
                                         error_type=type(exc).__name__)
        self.store.update(finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          failed=[label for label, _ in self.failures])
        return self

    @property
    def exit_code(self):
        return self.failures[0][1].exit_code if self.failures else 0

    def guest_image(self):
        if self.image is None:
            with ui.step(f"guest image {self.exp.image}") as say:
                self.image = image_mod.GuestImage(self.exp.image, self.exp.mirror).run(say)
            self.store.update(image={k: self.image.info[k] for k in ("key", "name", "mirror", "build_seconds")})
        return self.image

    def kernel(self, spec):
        with ui.step(f"[{spec.label}] kernel source {spec.source}") as say:
            source = sources.resolve(spec.source)
            say(source.id)
        build = Build(source, [kconfig.fragment(f) for f in spec.fragments],
                      **({"jobs": self.exp.jobs} if self.exp.jobs else {}))
        self.store.update_kernel(spec.label, source=source.as_dict(), build_key=build.key)
        with ui.step(f"[{spec.label}] build {source.id}") as say:
            kernel = build.run(say)
        self.store.keep(spec.label, kernel.path / "build.log", kernel.path / "kernel.json")
        self.store.update_kernel(spec.label, release=kernel.info["release"],
                                 config_sha=kernel.info["config_sha"], toolchain=kernel.info["toolchain"],
                                 fragments=kernel.info["fragments"], patches=kernel.info["patches"],
                                 cached_build=kernel.info.get("cached", False))
        return kernel

    def choose_accel(self, kernel):
        if "accel" not in self.store.metadata:
            with ui.step(f"accelerator ({self.exp.accel})") as say:
                chosen, reason = accel_mod.choose(self.exp.accel, kernel.image)
                say(f"{chosen}: {reason}")
            qemu = qemu_version("qemu-system-x86_64")
            self.store.update(accel=chosen, accel_reason=reason, qemu=qemu)
            if chosen != "kvm":
                ui.warn(f"guests run under {chosen.upper()} (software emulation), not KVM: {reason}. "
                        f"Times are emulated-CPU times; compare them only with runs of the same mode.")
        return self.store.metadata["accel"]

    def one_kernel(self, spec):
        kernel = self.kernel(spec)
        image = self.guest_image()
        chosen = self.choose_accel(kernel)
        logdir = self.store.kernel_dir(spec.label)
        with Machine(kernel, image, logdir, accel=chosen, memory_mib=self.exp.memory_mib,
                     cpus=self.exp.cpus) as m:
            with ui.step(f"[{spec.label}] boot {kernel.info['release']} under {chosen}") as say:
                seconds = m.wait_ready(self.exp.boot_timeout)
                say(f"first guest command after {seconds:.2f} s")
            _, uname, _ = m.run(["uname", "-r"])
            _, clocksource, _ = m.run(["cat", "/sys/devices/system/clocksource/clocksource0/"
                                              "current_clocksource"])
            self.store.update_kernel(spec.label, boot_seconds=round(seconds, 3), guest_uname=uname.strip(),
                                     guest_clocksource=clocksource.strip(), qemu_argv=m.argv)
            with tempfile.TemporaryDirectory() as staging:
                for workload, params in self.workloads:
                    with ui.step(f"[{spec.label}] workload {workload.name} {params}"):
                        records = workload.run(m, params, self.store.appender(spec.label, workload.name),
                                               staging)
                    self.report(spec.label, workload.name, records)
        self.store.update_kernel(spec.label, status="ok")

    def report(self, label, workload, records):
        if workload == "fork-memory" and records:
            table, extra = tables.fork_memory(records)
            tables.save_fork_memory(table, extra, self.store.kernel_dir(label))
            ui.out(tables.render_fork_memory(table, extra, title=f"{label}: fork-memory"))
            ui.out()
