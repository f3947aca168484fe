"""Layout variants: one kernel's source and config, its code placed differently.

A variant adds one harness-owned object to the tree, `init/harness_layout.c`, that holds nothing
but `pad(v)` bytes of int3 in `.text`, never called and never jumped to. `init/` is linked ahead of
kernel/, mm/, fs/, ... (only the boot-entry objects come before it), so every function linked after
it moves by the pad: the instructions stay the same (calls and RIP-relative operands are
relocated), their addresses, cache-line offsets and page offsets change. The pad steps by
4096 + 64 + 16 bytes, so successive variants differ in their placement modulo 64 (cache lines),
modulo 4096 (pages) and in which functions share a page. int3 is what the linker pads gaps with on
x86, and objtool takes it as a trap, not as unreachable code.

A variant is a commit the harness makes on top of the tree it was given, in one scratch worktree
per tree (under the cache), checked out to each variant in turn and built in one object folder per
config: from one variant to the next only `init/harness_layout.o` is compiled again and vmlinux
relinked (as harness/kernel/bisect.py does per patch). Variant 0 is the tree as given, no pad.
"""
import re
from pathlib import Path

from harness import cache
from harness.kernel import series as series_mod
from harness.kernel import sources
from harness.kernel.build import Build

STEP = 4096 + 64 + 16
PAD_FILE = "init/harness_layout.c"
MAKE_LINE = "obj-y += harness_layout.o   # kernel-harness: a layout variant\n"
# fixed dates: the same variant of the same tree is the same commit
DATES = {"GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"}


def pad(index):
    """The bytes of never-executed code variant `index` puts ahead of kernel/, mm/, ..."""
    return index * STEP


def pad_source(size):
    return ("// SPDX-License-Identifier: GPL-2.0\n"
            "/* kernel-harness layout variant: never executed. Moves every function linked after it\n"
            f" * by {size} bytes without changing an instruction. */\n"
            f'asm(".pushsection .text, \\"ax\\"\\n\\t.fill {size}, 1, 0xcc\\n\\t.popsection");\n')


def _commit(tree, base_commit, size):
    """The commit of the variant with `size` bytes of pad on base_commit, made in `tree`."""
    sources.git(tree, "checkout", "-q", "-f", "--detach", base_commit)
    (tree / PAD_FILE).write_text(pad_source(size))
    makefile = tree / "init" / "Makefile"
    makefile.write_text(makefile.read_text() + MAKE_LINE)
    sources.git(tree, "add", "-f", PAD_FILE, "init/Makefile")
    sources.git(tree, "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m",
                f"kernel-harness: layout variant, {size} bytes ahead of the kernel's code", env=DATES)
    return sources.git_out(tree, "rev-parse", "HEAD")


def variant_tree(base, tree, index):
    """A SourceTree for variant `index` of `base`, checked out at `tree` (a worktree of base's
    repository, made when missing)."""
    series_mod.worktree(_repo(base), tree, base.commit)
    commit = base.commit if index == 0 else _commit(tree, base.commit, pad(index))
    if index:
        sources.git(tree, "checkout", "-q", "-f", "--detach", commit)
    ident = base.id if index == 0 else f"{base.id}+layout{pad(index)}"
    return sources.SourceTree(id=ident, path=tree, spec=base.spec + (f" (layout +{pad(index)})" if index else ""),
                              version=base.version, commit=commit)


def _repo(base):
    """What owns base's git worktrees: the source itself, or for a patched tree the repository
    it is a worktree of (its main work tree)."""
    common = sources.git_out(base.path, "rev-parse", "--path-format=absolute", "--git-common-dir")
    return sources.SourceTree(base.id, Path(common).parent, base.spec, base.version, base.commit)


def work_of(base, fragments):
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", base.id)[:60]
    return cache.root() / "layout" / name, cache.digest([f.text for f in fragments], length=8)


def build_variants(base, fragments, patches, indices, jobs=None, progress=None):
    """{index: Kernel} of the layout variants `indices` of base, built in turn (cached ones are
    not built). Index 0 of a tree built elsewhere is taken from the build cache as it is."""
    say = progress or (lambda msg: None)
    work, config = work_of(base, fragments)
    kernels = {}
    with cache.locked("layout", work.name):
        for index in indices:
            if index == 0:
                found = Build(base, list(fragments), patches=patches).cached()
                if found:
                    kernels[index] = found
                    continue
            tree = variant_tree(base, work / "tree", index)
            build = Build(tree, list(fragments), patches=patches, objdir=work / f"obj-{config}",
                          **({"jobs": jobs} if jobs else {}))
            kernel = build.run(lambda msg, i=index: say(f"layout +{pad(i)}: {msg}"))
            kernel.info["layout"] = {"index": index, "pad": pad(index)}
            kernels[index] = kernel
    return kernels


def indices(first, variants):
    """The pad indices of a kernel's variants: first, first + 1, ... (variants of them)."""
    return [first + v for v in range(max(variants or 1, 1))]


def of_boot(boot, count):
    """Which of a kernel's `count` variants boot number `boot` runs: they take turns, so every
    round of the design boots the same variant position of every kernel."""
    return (boot - 1) % count
