"""Option derivation (harness.kernel.gates, kdeps) on excerpts of Linux 6.2's own Makefiles and
Kconfig files (tests/data/kbuild-excerpts) and on a made-up C file with the kernel's #if shapes."""
from pathlib import Path

import pytest

from harness.kernel import gates, kdeps, reach

DATA = Path(__file__).parent.parent / "data" / "kbuild-excerpts"
TREE = {"mm/Makefile": "mm.Makefile", "fs/proc/Makefile": "fs-proc.Makefile", "fs/Makefile": "fs.Makefile",
        "kernel/Makefile": "kernel.Makefile", "kernel/events/Makefile": "kernel-events.Makefile"}
KCONFIG = {"mm/Kconfig": "mm.Kconfig", "arch/Kconfig": "arch.Kconfig",
           "kernel/trace/Kconfig": "kernel-trace.Kconfig"}


def read(rel):
    name = TREE.get(rel)
    return (DATA / name).read_text() if name else None


@pytest.fixture(scope="module")
def entries():
    return kdeps.index({rel: (DATA / name).read_text() for rel, name in KCONFIG.items()})


@pytest.mark.parametrize("path, symbols", [
    ("mm/ksm.c", {"KSM"}),
    ("mm/memory.c", {"MMU"}),                       # mmu-$(CONFIG_MMU) := ... memory.o, $(mmu-y) in obj-y
    ("mm/gup.c", set()),                            # obj-y
    ("mm/migrate_device.c", {"DEVICE_MIGRATION"}),
    ("mm/process_vm_access.c", {"MMU", "CROSS_MEMORY_ATTACH"}),     # inside ifdef CONFIG_...
    ("fs/proc/task_mmu.c", {"MMU", "PROC_FS"}),    # composite proc.o, then fs/'s proc/ line
    ("kernel/events/uprobes.c", {"UPROBES", "PERF_EVENTS"}),
])
def test_makefile_gates_follow_variables_composites_and_folders(path, symbols):
    got, why = gates.makefile_gates(read, path)
    assert got == symbols, why


def test_makefile_gates_say_where_the_chain_stops():
    got, why = gates.makefile_gates(read, "mm/not_there.c")
    assert got == set() and "not found" in why[-1]
    assert "no Makefile" in gates.makefile_gates(read, "drivers/x/y.c")[1][-1]


def test_kconfig_closure_adds_dependencies_selectors_and_if_blocks(entries):
    chosen, unknown = kdeps.closure(entries, ["KSM", "DEVICE_PRIVATE", "UPROBES"])
    # DEVICE_PRIVATE -> ZONE_DEVICE -> MEMORY_HOTPLUG, MEMORY_HOTREMOVE (inside 'if MEMORY_HOTPLUG')
    # -> MIGRATION (depends on (NUMA || ...) && MMU: the first alternative)
    for symbol in ("ZONE_DEVICE", "MEMORY_HOTPLUG", "MEMORY_HOTREMOVE", "MIGRATION"):
        assert symbol in chosen
    # UPROBES is a hidden def_bool n: the visible UPROBE_EVENTS selecting it, inside 'if FTRACE'
    assert chosen["UPROBE_EVENTS"] == "needed by UPROBES"
    assert "FTRACE" in chosen and "PERF_EVENTS" in unknown
    assert "ARCH_HAS_PTE_DEVMAP" in unknown           # the architecture sets it (not in the excerpts)
    assert {"NUMA", "MMU", "SPARSEMEM"} <= set(unknown)   # not in these excerpts
    text = kdeps.fragment_text(chosen, "t")
    assert "CONFIG_UPROBE_EVENTS=y" in text and "# needed by UPROBES" in text


def test_kconfig_help_text_is_not_parsed_as_options(entries):
    ksm = entries["KSM"][0]
    assert ksm.prompt and ksm.depends == ["MMU"] and ksm.selects == ["XXHASH"]
    assert entries["DEVICE_MIGRATION"][0].def_bool == "MIGRATION && ZONE_DEVICE"
    assert entries["MEMORY_HOTREMOVE"][0].depends[0] == "MEMORY_HOTPLUG"


def test_wanted_terms():
    assert kdeps.wanted_terms("(NUMA || COMPACTION) && MMU && !PREEMPT_RT", {}) == ["NUMA", "MMU"]
    assert kdeps.wanted_terms("NUMA || COMPACTION", {"COMPACTION": ""}) == []
    assert kdeps.wanted_terms("X86_64 || (X86_32 && HIGHMEM64G)", {}) == ["X86_64"]
    assert kdeps.wanted_terms("MODULES=y && FOO=n", {}) == ["MODULES"]


def test_regions_and_their_conditions():
    text = (DATA / "example.c").read_text()
    blocks = gates.regions(text)
    lines = text.splitlines()
    at = {name: lines.index(next(l for l in lines if name in l)) + 1 for name in
          ("return 1", "return 0", "numa_move", "five_levels", "unknown(void)", "always(void)")}
    conds = {name: gates.enclosing(blocks, line) for name, line in at.items()}
    assert gates.positive_symbols(conds["return 1"][-1]) == {"KSM"}
    assert gates.positive_symbols(conds["return 0"][-1]) == set()
    assert gates.positive_symbols(conds["numa_move"][-1]) == {"NUMA", "MIGRATION"}
    config = {"CONFIG_KSM": "y", "CONFIG_PGTABLE_LEVELS": "5"}
    assert gates.compiled_under(conds["always(void)"], config) is True     # header guard only
    assert gates.compiled_under(conds["return 1"], config) is True
    assert gates.compiled_under(conds["return 0"], config) is False
    assert gates.compiled_under(conds["numa_move"], config) is False
    assert gates.compiled_under(conds["five_levels"], config) is True
    assert gates.compiled_under(conds["five_levels"], {"CONFIG_PGTABLE_LEVELS": "4"}) is False
    assert gates.compiled_under(conds["unknown(void)"], config) is None


PATCH = """\
diff --git a/mm/example.c b/mm/example.c
index 1111111..2222222 100644
--- a/mm/example.c
+++ b/mm/example.c
@@ -6,7 +6,8 @@ int always(void);
 #ifdef CONFIG_KSM
 int merge(void)
 {
-	return 1;
+	int merged = 1;
+	return merged;
 }
 #else
 static inline int merge(void) { return 0; }
@@ -20,3 +21,2 @@ int five_levels(void);
 #if SOME_MACRO_FROM_A_HEADER
-int unknown(void);
 #endif
diff --git a/mm/new.c b/mm/new.c
new file mode 100644
--- /dev/null
+++ b/mm/new.c
@@ -0,0 +1,2 @@
+int a;
+int b;
"""


def test_changed_lines_and_hunks_of_a_diff():
    assert gates.changed_lines(PATCH) == {"mm/example.c": [9, 10, 21], "mm/new.c": [1, 2]}
    assert gates.hunks(PATCH) == [("mm/example.c", 9, 10), ("mm/example.c", 21, 21), ("mm/new.c", 1, 2)]


def test_reached_from_config_and_object_folder(tmp_path):
    hunk = reach.Hunk(1, "t", "mm/ksm.c", 9, 10, ["defined(CONFIG_KSM)"])
    d = reach.Derivation(files={"mm/ksm.c": 1, "include/linux/x.h": 2}, hunks=[hunk],
                         makefile={"mm/ksm.c": ({"KSM"}, [])})
    on, off = "CONFIG_KSM=y\n", "# CONFIG_KSM is not set\n"
    assert reach.reached(d, 1, on)["files"] == {"mm/ksm.c": (True, ".config")}
    assert reach.reached(d, 1, off)["hunks"] == [(hunk, False)]
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / ".ksm.o.cmd").write_text("deps_mm/ksm.o := \\\n  include/linux/x.h \\\n")
    r = reach.reached(d, 2, on, objdir=tmp_path)
    assert r["files"] == {"mm/ksm.c": (True, "object"), "include/linux/x.h": (True, ".cmd")}
    assert reach.counts(r) == (2, 2, 1, 1)
    builds = {(1, "lean"): reach.reached(d, 1, off), (1, "coverage"): reach.reached(d, 1, on),
              (2, "lean"): reach.reached(d, 2, off)}
    ok, text = reach.verdict(builds)
    assert not ok and "mm/ksm.c (patches 2)" in text
    assert reach.never({(1, "lean"): reach.reached(d, 1, off)}) == ({"mm/ksm.c": [1]}, [hunk])


def test_derive_from_a_patched_git_tree(tmp_path):
    """derive() on a tiny tree: one commit per patch, the diffs taken as the commits applied."""
    import subprocess
    from types import SimpleNamespace
    tree = tmp_path / "tree"
    (tree / "mm").mkdir(parents=True)
    (tree / "mm" / "Makefile").write_text((DATA / "mm.Makefile").read_text())
    (tree / "mm" / "Kconfig").write_text((DATA / "mm.Kconfig").read_text())
    (tree / "mm" / "ksm.c").write_text((DATA / "example.c").read_text())

    def git(*args):
        return subprocess.run(["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t",
                               *args], check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "base")
    text = (tree / "mm" / "ksm.c").read_text().replace("\treturn 1;", "\tint merged = 1;\n\treturn merged;")
    (tree / "mm" / "ksm.c").write_text(text)
    git("commit", "-qam", "ksm: a change under CONFIG_KSM")
    commit = git("rev-parse", "HEAD")
    d = reach.derive([SimpleNamespace(index=1, title="ksm: a change")], tree, [commit],
                     extra_for=lambda files: ["MIGRATION"] if "mm/ksm.c" in files else [])
    assert d.files == {"mm/ksm.c": 1}
    assert d.makefile["mm/ksm.c"][0] == {"KSM"}
    (hunk,) = d.hunks
    assert (hunk.path, hunk.first, hunk.last) == ("mm/ksm.c", 10, 11)
    assert "defined(CONFIG_KSM)" in hunk.conditions
    assert {"KSM", "MIGRATION"} <= set(d.chosen)      # the Makefile gate, the #ifdef, the extra
    assert "CONFIG_KSM=y" in d.fragment("t")


def test_a_macro_config_does_not_decide_matters_only_when_it_changes_the_result():
    assert gates.evaluate("(!defined(__HUGE_MEMORY_H) || defined(TRACE_HEADER_MULTI_READ))", {}) is True
    assert gates.evaluate("(defined(CONFIG_KSM) && SOME_MACRO)", {}) is False
    assert gates.evaluate("(defined(CONFIG_KSM) && SOME_MACRO)", {"CONFIG_KSM": "y"}) is None
