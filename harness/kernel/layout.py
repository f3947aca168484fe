"""Layout variants: one kernel's source and config, its code placed differently.

A variant is the kernel's own object files linked with `pad(v)` bytes of never-executed space
ahead of the kernel's main text: the linker script that make generated for the build
(`arch/x86/kernel/vmlinux.lds`, in the object folder) gets `. = . + N;` right after the boot-entry
code (`.head.text`), so `.text` proper, and with it every function of kernel/, mm/, fs/, ..., the
sections after it and their symbols start N bytes later. Nothing is compiled again: make sees the
script newer than vmlinux and links again (with kallsyms' passes), so every object file is
byte for byte the base build's, and the instructions that run are the same; only the addresses
change: calls and RIP-relative operands are relocated by the linker as for any other link, and
the space is never jumped to (no symbol lies in it). The pad steps by 4096 + 64 + 16 bytes, so
successive variants differ in every function's offset in its cache line (mod 64), in its page
(mod 4096) and in which functions share a page; a multiple of 16 keeps the 16-byte alignment of
.S entry points.

Variants of a kernel are built one after the other in one object folder, a copy of the base
build's (harness/kernel/build.py keeps it under the cache): each costs a relink, not a build.
Variant 0 is the kernel as built. The variant's kernel.json records the pad, and `check` proves
the move on the System.map: every text symbol after the head code moved by exactly the pad.
"""
import re
import shutil

from harness import cache
from harness.errors import InfraError
from harness.kernel import sources
from harness.kernel.build import Build

STEP = 4096 + 64 + 16
SCRIPT = "arch/x86/kernel/vmlinux.lds"
ANCHOR = "KEEP(*(.head.text))"
MOVED = ("copy_page_range", "do_fork", "kernel_clone", "schedule", "memcpy")   # checked when present


def pad(index):
    """The bytes of never-executed space variant `index` puts ahead of the kernel's main text."""
    return index * STEP


def padded(script, size):
    """The linker script with `size` bytes of space after the head code."""
    if script.count(ANCHOR) < 1:
        raise InfraError(f"{SCRIPT} has no '{ANCHOR}': this architecture's link cannot take a layout pad")
    return script.replace(ANCHOR, f"{ANCHOR} . = . + {size}; /* kernel-harness layout variant */", 1)


def indices(first, variants):
    """The pad indices of a kernel's variants: first, first + 1, ... (variants of them)."""
    return [first + v for v in range(max(variants or 1, 1))]


def of_boot(boot, count):
    """Which of a kernel's `count` variants boot number `boot` runs: they take turns, so every
    round of the design boots the same variant position of every kernel."""
    return (boot - 1) % count


def symbols(system_map):
    """{name: address} of the text symbols (t/T) of a System.map."""
    out = {}
    for line in system_map.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            out.setdefault(parts[2], int(parts[0], 16))
    return out


def check(base, variant, size):
    """The text symbols that moved by exactly `size` between two System.maps, of MOVED's present
    ones; an InfraError when one did not (the pad did not take)."""
    a, b = symbols(base), symbols(variant)
    looked = [s for s in MOVED if s in a and s in b]
    wrong = [s for s in looked if b[s] - a[s] != size]
    if wrong or not looked:
        raise InfraError(f"layout variant +{size}: {', '.join(wrong) or 'no known symbol'} did not "
                         f"move by {size} bytes ({variant})")
    return looked


def _tree(base, index):
    """The source as variant `index`: the same tree at the same path (the object folder's .cmd
    files name it), under its own id (so its own cache entry)."""
    return sources.SourceTree(id=f"{base.id}+layout{pad(index)}", path=base.path,
                              spec=f"{base.spec} (layout +{pad(index)})", version=base.version,
                              commit=base.commit)


def _folder(plain, work, say):
    """The variants' object folder: a copy of the base build's (made once); the linker script as
    make wrote it is kept beside it."""
    objdir, kept = work / "obj", work / "vmlinux.lds.orig"
    if (objdir / SCRIPT).exists() and kept.exists():
        return objdir, kept
    shutil.rmtree(objdir, ignore_errors=True)
    if not (plain.objdir / SCRIPT).exists() or not (plain.objdir / "vmlinux.o").exists():
        # (a kernel found in a shared cache, or built in another folder): built once more here,
        # under an entry of its own, so that the shared one is not written
        say("the base build's object folder is not here: building it once for the variants")
        Build(_tree(plain.source, 0), plain.fragments, patches=plain.patches, objdir=plain.objdir,
              jobs=plain.jobs).run(say)
    say("copying the base build's object folder")
    shutil.copytree(plain.objdir, work / "obj.partial", symlinks=True, dirs_exist_ok=True)
    (work / "obj.partial").rename(objdir)
    shutil.copy(objdir / SCRIPT, kept)
    return objdir, kept


def build_variants(base, fragments, patches, wanted, jobs=None, progress=None):
    """{index: Kernel} of the layout variants `wanted` of base (index 0: base itself), the padded
    ones relinked one after the other in one object folder (cached ones are not built)."""
    say = progress or (lambda msg: None)
    opts = {"jobs": jobs} if jobs else {}
    plain = Build(base, list(fragments), patches=patches, **opts)
    kernels = {}
    if 0 in wanted or not all(Build(_tree(base, i), list(fragments), patches=patches).cached()
                              for i in wanted if i):
        kernels[0] = plain.run(say)
    work = cache.root() / "layout" / plain.key
    with cache.locked("layout", plain.key):
        for index in [i for i in wanted if i]:
            build = Build(_tree(base, index), list(fragments), patches=patches, **opts)
            if not build.cached():
                objdir, kept = _folder(plain, work, say)
                (objdir / SCRIPT).write_text(padded(kept.read_text(), pad(index)))
                build = Build(_tree(base, index), list(fragments), patches=patches, objdir=objdir, **opts)
            kernel = build.run(lambda msg, i=index: say(f"layout +{pad(i)}: {msg}"))
            check(kernels[0].path / "System.map", kernel.path / "System.map", pad(index)) \
                if 0 in kernels else None
            kernels[index] = kernel
    return {i: kernels[i] for i in wanted}
