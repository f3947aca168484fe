"""The guest factory: every Machine of an experiment is made here, with all of its guest settings
(memory, vCPUs, command line, stall probe, host CPUs, RAM preallocation), so no caller can drop
one. The guest image is built once and the accelerator chosen once per factory; both are
recorded in the store (metadata.json), which `harness build` and `harness boot` give as a
NullStore.

A test or a caller that must watch the guests it gets gives Run another factory (a subclass whose
`machine` keeps what it made): the factory is the seam, not the run.
"""
from harness import ui
from harness.guest import accel as accel_mod, image as image_mod
from harness.guest.machine import Machine, qemu_version

COARSE_CLOCK_ATTEMPTS = 5       # boots of one slot before a coarse clock is accepted


class Guests:
    """image: the guest image when the caller has it already; accel: the QEMU mode ('kvm', 'tcg'
    or 'icount') when the caller chose it already (no probe)."""

    def __init__(self, exp, store, image=None, accel=None):
        self.exp, self.store = exp, store
        self.image, self.chosen = image, accel
        self.remote = None          # harness.guest.remote.RemoteGuests, with --machine

    def guest_image(self):
        if self.image is None:
            with ui.step(f"guest image {self.exp.image}") as say:
                self.image = image_mod.GuestImage(self.exp.image, self.exp.mirror).run(say)
            self.store.update(image={k: self.image.info[k] for k in ("key", "name", "mirror", "build_seconds")})
        return self.image

    def accel(self, kernel):
        """The QEMU mode for this experiment's guests: 'kvm', 'tcg' or 'icount' (TCG counting
        instructions); chosen at the first call and kept in the store."""
        if self.chosen:
            return self.chosen
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

    def machine(self, kernel, logdir):
        """A Machine (not started) for this kernel, with every guest setting of the experiment."""
        exp = self.exp
        return Machine(kernel, self.guest_image(), logdir, accel=self.accel(kernel),
                       memory_mib=exp.memory_mib, cpus=exp.cpus, extra_cmdline=exp.extra_cmdline,
                       stall=exp.stall_s, pin=exp.pin, prealloc=exp.prealloc)

    def boot(self, kernel, logdir, title, attempts=COARSE_CLOCK_ATTEMPTS):
        """(a booted, ready guest, the boots it took). A boot whose clocksource fell back to
        jiffies cannot time anything: it is logged, set aside and booted again. With --machine
        the boot is a kexec on that machine (harness.guest.remote)."""
        if getattr(self.exp, "machine", None):
            if self.remote is None:
                from harness.guest.remote import RemoteGuests
                self.remote = RemoteGuests(self.exp, self.store)
            return self.remote.boot(kernel, logdir, title)
        for attempt in range(1, attempts + 1):
            m = self.machine(kernel, logdir)
            m.start()
            try:
                with ui.step(f"{title}: {kernel.info['release']} under {m.accel}") as say:
                    seconds = m.wait_ready(self.exp.boot_timeout)
                    say(f"first guest command after {seconds:.2f} s")
            except BaseException:
                m.stop()
                raise
            trouble = m.clock_trouble()
            if not trouble or attempt == attempts:
                if trouble and attempts > 1:
                    ui.warn(f"{title}: the guest clock is coarse after {attempts} boots: {trouble[0]}")
                return m, attempt
            m.stop()
            for log in (m.console_log, m.qemu_log):
                log.rename(log.with_name(f"{log.stem}.attempt-{attempt}{log.suffix}"))
            ui.warn(f"{title}, attempt {attempt}: {trouble[0]}: the clock would be coarse; booting again")
        raise AssertionError("unreachable")
