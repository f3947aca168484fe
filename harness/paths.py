"""Where the harness finds its data folders and writes results.

The data folders (kernel-config/, vm-images/, workloads/, experiments/, features/) are the
checkout's top level when the harness runs from a checkout (or an editable install); a `pip
install .` or pipx install carries them inside the package as harness/data/ (pyproject.toml), and
then results go to ./results unless HARNESS_RESULTS says otherwise. HARNESS_ROOT overrides both.
"""
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALLED_DATA = HERE / "data"


def _root():
    if os.environ.get("HARNESS_ROOT"):
        return Path(os.environ["HARNESS_ROOT"])
    checkout = HERE.parent
    return checkout if (checkout / "kernel-config").is_dir() else INSTALLED_DATA


ROOT = _root()
KERNEL_CONFIG = ROOT / "kernel-config"
VM_IMAGES = ROOT / "vm-images"
WORKLOADS = ROOT / "workloads"


def results():
    """Where runs are stored: results/ in the checkout (./results for an installed harness) unless
    HARNESS_RESULTS says otherwise."""
    if os.environ.get("HARNESS_RESULTS"):
        return Path(os.environ["HARNESS_RESULTS"])
    return Path.cwd() / "results" if ROOT == INSTALLED_DATA else ROOT / "results"
