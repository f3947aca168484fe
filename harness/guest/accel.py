"""Choosing the accelerator once per host boot: KVM when a probe boot works, TCG otherwise."""
import json
from pathlib import Path

from harness.guest import arch, machine
from harness import cache


def boot_id():
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def choose(requested, kernel_image):
    """(accel, reason); the 'auto' probe result is cached until the host reboots or QEMU changes."""
    if requested != "auto":
        return machine.choose_accel(requested, kernel_image, None)
    key = cache.digest(boot_id(), machine.qemu_version(arch.load()["qemu"]))
    found = cache.entry("probe", key) / "accel.json"
    with cache.locked("probe", key):
        if found.exists():
            data = json.loads(found.read_text())
            return data["accel"], data["reason"] + " (cached probe)"
        workdir = cache.entry("probe", key)
        accel, reason = machine.choose_accel("auto", kernel_image, workdir)
        found.parent.mkdir(parents=True, exist_ok=True)
        found.write_text(json.dumps({"accel": accel, "reason": reason}) + "\n")
        return accel, reason
