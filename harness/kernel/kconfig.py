"""Config fragments: parse, merge, and check that the final .config holds every request.

olddefconfig silently drops an option whose dependencies are not met, and ignores a symbol the
kernel does not know. After the merge the harness reads the final .config back and refuses it when
any requested option did not land, naming the option, why (unknown symbol or unmet dependency) and
the 'depends on' lines from the kernel's own Kconfig.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness import paths, tools
from harness.errors import UserError

SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
SYMBOL = re.compile(r"CONFIG_[A-Za-z0-9_]+")


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
    """A fragment by name (kernel-config/NAME.config, or a feature profile's features/*/NAME.config)
    or by path."""
    from harness import feature
    candidate = Path(name_or_path)
    if not candidate.exists():
        candidate = paths.KERNEL_CONFIG / f"{name_or_path}.config"
    if not candidate.exists():
        candidate = next((p for d in feature.folders() for p in sorted(d.glob(f"*/{name_or_path}.config"))
                          if "/" not in str(name_or_path)), candidate)
    if not candidate.exists():
        known = ", ".join(sorted({p.stem for p in paths.KERNEL_CONFIG.glob("*.config")}
                                 | {p.stem for d in feature.folders() for p in d.glob("*/*.config")}))
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


# --- what the workloads need from the kernel ---------------------------------------------------

def needed(fragments, needs, label="the kernel"):
    """The options of needs ({CONFIG_X: [who needs it]}: the workloads' and selftests' kernel_config)
    that the fragments do not already ask for, as {CONFIG_X: "y"}. A fragment turning a needed
    option off is refused before anything is built, naming the option, the fragment and who needs it."""
    have, origin = {}, {}
    for frag in fragments:
        for symbol, value in frag.values.items():
            have[symbol], origin[symbol] = value, frag.name
    off = [f"{s} (fragment {origin[s]} sets it off; needed by {', '.join(needs[s])})"
           for s in sorted(needs) if have.get(s) == "n"]
    if off:
        raise UserError(f"kernel {label!r} cannot run what it was asked to: " + "; ".join(off)
                        + ": drop the '# ... is not set' line or the workload")
    return {s: "y" for s in sorted(needs) if s not in have}


def with_needs(fragments, needs, label="the kernel"):
    """fragments, plus one fragment holding what needs adds to them (nothing when they ask for it
    all already, so a kernel whose fragments have it keeps its cache key). The added fragment's
    text (CONFIG_X=y lines, sorted) is in the build's cache key and is checked in the final
    .config after olddefconfig like any fragment: an option that cannot be set is refused there,
    by name, before anything boots. It is kept in the cache by its content, for tuxmake to read."""
    added = needed(fragments, needs, label)
    if not added:
        return list(fragments)
    text = "".join(f"{s}={v}\n" for s, v in added.items())
    from harness import cache
    path = cache.root() / "fragments" / f"{cache.digest(text)}.config"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}")
        partial.write_text(text)
        partial.replace(path)                # whole or absent, for a harness reading it meanwhile
    who = sorted({w for s in added for w in needs[s]})
    return list(fragments) + [Fragment("needs-" + "-".join(w.replace(" ", "-") for w in who), path, text)]


def require(kernels, needs, label="the kernel"):
    """kernels ([(layout index, Kernel)]), refused before they boot when one's .config lacks an
    option of needs: a kernel the harness did not build with them (attribute's, built from its
    own config sets) is named with what it lacks and who needs it."""
    for _, kernel in kernels:
        final = parse(kernel.config, "the kernel's .config")
        lacks = [f"{s} (needed by {', '.join(needs[s])})" for s in sorted(needs) if final.get(s, "n") == "n"]
        if lacks:
            raise UserError(f"kernel {label!r} ({kernel.key}) was built without " + "; ".join(lacks)
                            + ": not booted; build it with them (a fragment, or a run that adds them)")
    return kernels


# --- the base config the fragments go on ------------------------------------------------------

BASES = ("tinyconfig", "defconfig")
# Distribution configs name signing certificates kept in the distribution's own tree (Debian:
# debian/certs/...); a kernel.org tree has none, so the build would stop. They are emptied.
CERTIFICATES = ("CONFIG_SYSTEM_TRUSTED_KEYS", "CONFIG_SYSTEM_REVOCATION_KEYS")


@dataclass(frozen=True)
class Base:
    """The config a build starts from: one of the kernel's make targets, or a config file."""
    name: str                    # tinyconfig, defconfig, or the file's name
    path: Path = None            # the file, when it is one
    text: str = None             # the file's text as the build uses it (certificates emptied)
    emptied: tuple = ()          # the certificate options emptied

    @property
    def key(self):
        """What the build's cache key holds: the target's name (as before there were bases) or
        the digest of the file's text, so a file renamed is the same base and a file edited is not."""
        if self.text is None:
            return self.name
        from harness import cache
        return "file:" + cache.digest(self.text)

    def as_dict(self):
        if self.text is None:
            return {"name": self.name}
        return {"name": self.name, "path": str(self.path), "key": self.key, "emptied": list(self.emptied)}


def base(spec, where="--base"):
    """The Base a --base names, checked: tinyconfig, defconfig or a config file ('target', the
    running config of a real machine, waits for the real-machine target: docs/roadmap.md)."""
    if isinstance(spec, Base):
        return spec
    if spec in BASES:
        return Base(spec)
    if spec == "target":
        raise UserError(f"{where} target: the running config of a real machine needs the real-machine "
                        f"target, which is not built yet; copy the machine's config and give it as a "
                        f"file: scp HOST:/boot/config-$(ssh HOST uname -r) config && --base config")
    path = Path(str(spec)).expanduser()
    if not path.is_file():
        raise UserError(f"{where} {spec!r}: not {', '.join(BASES)}, target or a config file "
                        f"({'a directory' if path.exists() else 'no such file'})")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where} {spec!r}: cannot be read: {exc}") from None
    if not parse(text, str(path)):
        raise UserError(f"{where} {spec!r}: no CONFIG_ line in it; not a kernel config")
    lines, emptied = [], []
    for line in text.splitlines():
        m = SET.match(line.strip())
        if m and m[1] in CERTIFICATES and m[2] not in ('""', "n"):
            line = f'{m[1]}=""'
            emptied.append(m[1])
        lines.append(line)
    return Base(path.name, path.resolve(), "\n".join(lines) + "\n", tuple(emptied))
