"""Config fragments: parse, merge, and check that the final .config holds every request.

olddefconfig silently drops an option whose dependencies are not met, and ignores a symbol the
kernel does not know. After the merge the harness reads the final .config back and refuses it when
any requested option did not land, naming the option, why (unknown symbol or unmet dependency) and
the 'depends on' lines from the kernel's own Kconfig.
"""
import re
from dataclasses import dataclass
from pathlib import Path

from harness import paths, tools
from harness.errors import UserError

SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse(text, origin="<text>"):
    """{symbol: value} of a fragment or .config; 'n' for '# CONFIG_X is not set'."""
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = SET.match(line) or UNSET.match(line)
        if m:
            values[m[1]] = m[2] if m.re is SET else "n"
        elif line and not line.startswith("#"):
            raise UserError(f"{origin}:{number}: not a config line: {raw!r} "
                            f"(expected CONFIG_X=y or '# CONFIG_X is not set')")
    return values


@dataclass(frozen=True)
class Fragment:
    name: str
    path: Path
    text: str

    @property
    def values(self):
        return parse(self.text, str(self.path))


def fragment(name_or_path):
    """A fragment by name (kernel-config/NAME.config) or by path."""
    candidate = Path(name_or_path)
    if not candidate.exists():
        candidate = paths.KERNEL_CONFIG / f"{name_or_path}.config"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in paths.KERNEL_CONFIG.glob("*.config")))
        raise UserError(f"config fragment '{name_or_path}' not found (known: {known})")
    frag = Fragment(candidate.stem, candidate.resolve(), candidate.read_text())
    frag.values  # parse now, so a malformed fragment fails before any build
    return frag


def requested(fragments):
    """What the fragments ask for, later fragments overriding earlier ones (as merge_config does)."""
    merged = {}
    for frag in fragments:
        merged.update(frag.values)
    return merged


def kconfig_entry(srctree, symbol):
    """The Kconfig lines defining symbol (without CONFIG_), or None if the kernel has no such symbol."""
    name = symbol[len("CONFIG_"):]
    proc = tools.run(["git", "-C", str(srctree), "grep", "-n", "-E",
                      rf"^\s*(menu)?config\s+{name}\s*$", "--", "*Kconfig*"], check=False)
    hits = proc.stdout.splitlines()
    if not hits:
        return None
    file, line = hits[0].split(":")[:2]
    lines = (Path(srctree) / file).read_text(errors="replace").splitlines()[int(line):int(line) + 40]
    deps = []
    for text in lines:
        if re.match(r"^\s*(menu)?config\s", text) or re.match(r"^(if|endif|menu|endmenu|choice)\b", text):
            break
        if re.match(r"^\s*(depends on|select|visible if)\b", text.strip()):
            deps.append(text.strip())
    return f"{file}:{line}", deps


def verify(config_text, wanted, srctree):
    """Raise UserError naming every requested option missing from the final config."""
    final = parse(config_text, ".config")
    problems = []
    for symbol, value in wanted.items():
        got = final.get(symbol, "n")
        if got == value:
            continue
        entry = kconfig_entry(srctree, symbol)
        if entry is None:
            problems.append(f"{symbol}: unknown symbol (this kernel's Kconfig does not define it)")
        else:
            where, deps = entry
            because = "; ".join(deps) if deps else "no 'depends on' line; see the choice or menu around it"
            problems.append(f"{symbol}: requested {value}, final .config has {got} "
                            f"(dropped by olddefconfig; {where}: {because})")
    if problems:
        raise UserError("config fragments asked for options that the final .config does not have:\n  "
                        + "\n  ".join(problems))
