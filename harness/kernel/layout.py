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

Variants of a kernel are linked one after the other in the base build's own object folder (its
workbench slot, held locked meanwhile, or its in-place folder); the next build there takes the
pad out again (every build sets its own): each variant costs a relink, not a build. (A copy of the folder elsewhere would compile every
object again: the compile commands name the folder, -ffile-prefix-map.)
Variant 0 is the kernel as built. The variant's kernel.json records the pad, and `check` proves
the move on the System.map: every text symbol after the head code moved by exactly the pad.
"""
import contextlib
import shutil
from pathlib import Path

from harness import cache
from harness.errors import InfraError
from harness.kernel import sources, workbench
from harness.kernel.build import LINK_SCRIPT as SCRIPT, Build

STEP = 4096 + 64 + 16
MOVED = ("copy_page_range", "do_fork", "kernel_clone", "schedule", "memcpy")   # checked when present


def pad(index):
    """The bytes of never-executed space variant `index` puts ahead of the kernel's main text."""
    return index * STEP




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




def _slot(plain):
    """(object folder, tree, workbench) of the workbench slot whose objects are the base build's,
    or None. Called with the workbench locked: the folder stays the base's while it is held."""
    bench, _ = workbench.for_source(plain.source)
    slot = workbench.holding(bench, plain.key) if bench else None
    if slot is None or not (workbench.objdir(bench, slot) / SCRIPT).exists():
        return None
    return workbench.objdir(bench, slot), bench.tree, bench


@contextlib.contextmanager
def _kept(folder):
    """The folder's config stamp put back as the base build had it when the variants are done (or
    failed). The pad in its linker script needs no putting back: every build sets the pad it
    wants first (build.link_script), so the next build there links without it."""
    stamp = folder / "harness-config.sha"
    stamp_text = stamp.read_text() if stamp.exists() else None
    try:
        yield
    finally:
        if stamp_text is not None:
            stamp.write_text(stamp_text)


@contextlib.contextmanager
def _objects(plain, work, say):
    """(object folder, tree) to link the variants in: the base
    build's own objects where they are (its workbench slot, held locked meanwhile, or the folder
    of a kernel built in place), so a variant is a relink; a copy elsewhere would compile every
    object again (the compile commands name the folder: -ffile-prefix-map). A kernel whose objects
    are not here (from a shared cache) is built once more in a folder of the variants' own."""
    own = cache.root() / "objects" / plain.key
    if (own / "vmlinux.o").exists() and (own / SCRIPT).exists():
        with _kept(own):
            yield own, Path(plain.source.path)
        return
    bench, _ = workbench.for_source(plain.source)
    with workbench.locked(bench) if bench else contextlib.nullcontext():
        found = _slot(plain) if bench else None
        if found:
            folder, tree, bench = found
            workbench.checkout(bench, plain.source.commit)   # the tree its objects were compiled from
            say(f"linking in the base build's object folder ({folder.name} of its workbench)")
            with _kept(folder):
                yield folder, tree
            return
    objdir = work / "obj"
    if not ((objdir / "vmlinux.o").exists() and (objdir / SCRIPT).exists()):
        say("the base build's objects are not here: building the base once for the variants")
        shutil.rmtree(objdir, ignore_errors=True)
        Build(_tree(plain.source, 0), plain.fragments, base=plain.base, patches=plain.patches, objdir=objdir,
              jobs=plain.jobs).run(say)
    with _kept(objdir):
        yield objdir, Path(plain.source.path)


def build_variants(base, fragments, patches, wanted, jobs=None, progress=None, config="tinyconfig"):
    """{index: Kernel} of the layout variants `wanted` of base (index 0: base itself), the padded
    ones relinked one after the other in the base build's object folder (cached ones are not built)."""
    say = progress or (lambda msg: None)
    opts = {"jobs": jobs} if jobs else {}
    opts["base"] = config                # the config the fragments go on (--base)
    plain = Build(base, list(fragments), patches=patches, **opts)
    kernels = {}
    missing = [i for i in wanted if i and not Build(_tree(base, i), list(fragments), patches=patches, **opts).cached()]
    if 0 in wanted or missing:
        kernels[0] = plain.run(say)
    with cache.locked("layout", plain.key):
        if missing:
            with _objects(plain, cache.root() / "layout" / plain.key, say) as (objdir, tree):
                for index in missing:
                    kernels[index] = _relink(plain, objdir, tree, index, opts, say)
        for index in [i for i in wanted if i]:
            if index not in missing:
                kernels[index] = Build(_tree(base, index), list(fragments), patches=patches, **opts).run(say)
            if 0 in kernels:
                check(kernels[0].path / "System.map", kernels[index].path / "System.map", pad(index))
    return {i: kernels[i] for i in wanted}


def _relink(plain, objdir, tree, index, opts, say):
    """The Kernel of variant `index`: the base's objects in objdir linked with the pad."""
    build = Build(_tree(plain.source, index, tree), plain.fragments, patches=plain.patches, objdir=objdir,
                  pad=pad(index), **opts)
    # the base's .config, under the variant's name: kept as it is (a new one would rewrite
    # autoconf.h and recompile everything)
    (objdir / "harness-config.sha").write_text(build.config_stamp())
    return build.run(lambda msg: say(f"layout +{pad(index)}: {msg}"))
