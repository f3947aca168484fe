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
import contextlib
import json
import shutil
from pathlib import Path

from harness import cache
from harness.errors import InfraError
from harness.kernel import sources, workbench
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


def _tree(base, index, path=None):
    """The source as variant `index`: the same tree at the path the base's objects were compiled
    from (the object folder's .cmd files name it), under its own id (so its own cache entry)."""
    return sources.SourceTree(id=f"{base.id}+layout{pad(index)}", path=path or base.path,
                              spec=f"{base.spec} (layout +{pad(index)})", version=base.version,
                              commit=base.commit)


def _base_objects(plain):
    """(object folder, tree it was compiled from, workbench or None) of the base build, or None:
    a folder of its own (a kernel built in place), or the workbench slot whose last kernel it is."""
    own = cache.root() / "objects" / plain.key
    if (own / "vmlinux.o").exists() and (own / SCRIPT).exists():
        return own, plain.source.path, None
    bench, _ = workbench.for_source(plain.source)
    if bench is None:
        return None
    want = {"key": plain.key, "commit": plain.source.commit, "base": plain.base, "options": plain.wanted,
            "source_id": plain.source.id}
    slot, rec, _ = workbench.choose(bench, want)
    folder = workbench.objdir(bench, slot)
    if rec and rec.get("key") == plain.key and rec.get("status") == "ok" and (folder / SCRIPT).exists():
        return folder, bench.tree, bench
    return None


def _folder(plain, work, say):
    """(object folder, linker script as make wrote it, tree, workbench or None) for the variants:
    a copy of the base build's folder (made once), or a base built there when none is at hand."""
    objdir, kept, where = work / "obj", work / "vmlinux.lds.orig", work / "tree.json"
    if (objdir / SCRIPT).exists() and kept.exists() and where.exists():
        tree, bench_path = json.loads(where.read_text())
        bench = workbench.Bench(Path(bench_path[0]), Path(bench_path[1])) if bench_path else None
        return objdir, kept, Path(tree), bench
    shutil.rmtree(objdir, ignore_errors=True)
    found = _base_objects(plain)
    if found:
        say("copying the base build's object folder")
        folder, tree, bench = found
        shutil.copytree(folder, work / "obj.partial", symlinks=True, dirs_exist_ok=True)
        (work / "obj.partial").rename(objdir)
    else:   # a kernel from a shared cache: built once more here, under an entry of its own
        say("the base build's objects are not here: building the base once for the variants")
        tree, bench = plain.source.path, None
        Build(_tree(plain.source, 0), plain.fragments, patches=plain.patches, objdir=objdir,
              jobs=plain.jobs).run(say)
    shutil.copy(objdir / SCRIPT, kept)
    where.write_text(json.dumps([str(tree), [str(bench.repo), str(bench.path)] if bench else None]))
    return objdir, kept, Path(tree), bench


def build_variants(base, fragments, patches, wanted, jobs=None, progress=None, config="tinyconfig"):
    """{index: Kernel} of the layout variants `wanted` of base (index 0: base itself), the padded
    ones relinked one after the other in one object folder (cached ones are not built)."""
    say = progress or (lambda msg: None)
    opts = {"jobs": jobs} if jobs else {}
    opts["base"] = config                # the config the fragments go on (--base)
    plain = Build(base, list(fragments), patches=patches, **opts)
    kernels = {}
    missing = [i for i in wanted if i and not Build(_tree(base, i), list(fragments), patches=patches, **opts).cached()]
    if 0 in wanted or missing:
        kernels[0] = plain.run(say)
    work = cache.root() / "layout" / plain.key
    with cache.locked("layout", plain.key):
        for index in [i for i in wanted if i]:
            if index in missing:
                kernels[index] = _relink(plain, work, index, opts, say)
            else:
                kernels[index] = Build(_tree(base, index), list(fragments), patches=patches, **opts).run(say)
            if 0 in kernels:
                check(kernels[0].path / "System.map", kernels[index].path / "System.map", pad(index))
    return {i: kernels[i] for i in wanted}


def _relink(plain, work, index, opts, say):
    """The Kernel of variant `index`: the base's objects linked with the pad."""
    objdir, kept, tree, bench = _folder(plain, work, say)
    (objdir / SCRIPT).write_text(padded(kept.read_text(), pad(index)))
    build = Build(_tree(plain.source, index, tree), plain.fragments, patches=plain.patches, objdir=objdir, **opts)
    # the base's .config, under the variant's name: kept as it is (a new one would rewrite
    # autoconf.h and recompile everything)
    (objdir / "harness-config.sha").write_text(build.config_stamp())
    with workbench.locked(bench) if bench else contextlib.nullcontext():
        if bench:         # the tree the objects were compiled from, at the base's commit
            workbench.checkout(bench, plain.source.commit)
        return build.run(lambda msg: say(f"layout +{pad(index)}: {msg}"))
