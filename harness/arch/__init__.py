"""Per-architecture data (QEMU binary, machine, devices, kernel command line) lives in TOML files."""
import tomllib
from importlib import resources

from harness.errors import UserError


def load(name="x86_64"):
    try:
        text = resources.files(__name__).joinpath(f"{name}.toml").read_text()
    except FileNotFoundError:
        raise UserError(f"unsupported architecture '{name}'") from None
    return tomllib.loads(text)
