"""Where the harness finds its data folders (the repository's top level) and writes results."""
import os
from pathlib import Path

ROOT = Path(os.environ.get("HARNESS_ROOT") or Path(__file__).resolve().parent.parent)
KERNEL_CONFIG = ROOT / "kernel-config"
VM_IMAGES = ROOT / "vm-images"
WORKLOADS = ROOT / "workloads"


def results():
    """Where runs are stored: results/ in the repository unless HARNESS_RESULTS says otherwise."""
    return Path(os.environ.get("HARNESS_RESULTS") or ROOT / "results")
