"""Per-architecture data (QEMU binary, machine, devices, kernel command line) lives in TOML files."""
import tomllib
from importlib import resources
from pathlib import Path

from harness import cache, tools
from harness.errors import BuildError, UserError


def load(name="x86_64"):
    try:
        text = resources.files(__name__).joinpath(f"{name}.toml").read_text()
    except FileNotFoundError:
        raise UserError(f"unsupported architecture '{name}'") from None
    return tomllib.loads(text)


def host_tsc_khz():
    """This host's TSC rate in kHz (a guest's TSC under TCG runs at it); cached per host boot."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    known = cache.root() / "probe" / f"tsc-khz-{boot}"
    if known.exists():
        return int(known.read_text())
    source = resources.files(__name__).joinpath("tsc_khz.c")
    binary = cache.root() / "tools" / "tsc_khz"
    binary.parent.mkdir(parents=True, exist_ok=True)
    proc = tools.run(["gcc", "-O2", "-o", str(binary), str(source)], check=False)
    if proc.returncode != 0:
        raise BuildError("cannot compile the TSC rate probe", log_tail=proc.stderr)
    khz = int(tools.run([str(binary)]).stdout.strip())
    known.parent.mkdir(parents=True, exist_ok=True)
    known.write_text(f"{khz}\n")
    return khz
