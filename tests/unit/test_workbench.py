"""Incremental builds: the workbench's choices and the cache keys, without a kernel build."""
import os
import time

import pytest

from harness.kernel import build as build_mod
from harness.kernel import kconfig, sources, workbench
from harness.kernel.build import Build
from tests.conftest import git


@pytest.fixture
def source(cache_dir, fake_tree):
    return sources.resolve(str(fake_tree))


def commit_change(source, path, text):
    """A commit on the source's repository (what series.apply makes), as a SourceTree at it."""
    tree = source.path.parent / f"wt-{abs(hash(text))}"
    git(source.path, "worktree", "add", "-q", "--detach", str(tree), source.commit)
    (tree / path).write_text(text)
    git(tree, "commit", "-qam", "change")
    return sources.SourceTree(id=source.id + "+x", path=tree, spec="x", version=source.version,
                              commit=git(tree, "rev-parse", "HEAD"))


def frag(tmp_path, name, text):
    path = tmp_path / f"{name}.config"
    path.write_text(text)
    return kconfig.fragment(str(path))


def test_different_inputs_never_share_a_cache_entry(source, tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "toolchain", lambda: {"gcc": "gcc 12"})
    y, n = frag(tmp_path, "y", "CONFIG_COW_PTE=y\n"), frag(tmp_path, "n", "CONFIG_COW_PTE=n\n")
    patched = commit_change(source, "init/main.c", "int main_init = 2;\n")
    keys = {
        "stock": Build(source, [y]).key,
        "other option": Build(source, [n]).key,
        "other source": Build(patched, [y]).key,
        "patches": Build(source, [y], patches=["abc"]).key,
        "base config": Build(source, [y], base="defconfig").key,
        "two fragments": Build(source, [y, n]).key,
    }
    monkeypatch.setattr(build_mod, "toolchain", lambda: {"gcc": "gcc 13"})
    keys["toolchain"] = Build(source, [y]).key
    assert len(set(keys.values())) == len(keys), keys
    # the same inputs are one entry, wherever the tree lies
    monkeypatch.setattr(build_mod, "toolchain", lambda: {"gcc": "gcc 12"})
    assert Build(source, [y]).key == keys["stock"]
    # a slot's record lends objects only: the cache answers by key
    bench, _ = workbench.for_source(source)
    (bench.path / "obj").mkdir(parents=True)
    workbench.record(bench, "0", {"key": keys["stock"], "commit": source.commit, "base": "tinyconfig",
                                  "options": {"CONFIG_COW_PTE": "y"}, "source_id": source.id}, "ok")
    assert Build(source, [n]).cached() is None


def test_stock_and_patched_trees_share_one_workbench(source):
    patched = commit_change(source, "init/main.c", "int main_init = 2;\n")
    a, why_a = workbench.for_source(source)
    b, why_b = workbench.for_source(patched)
    assert a is not None and b is not None, (why_a, why_b)
    assert a.path == b.path and a.repo == source.path


def test_uncommitted_changes_build_in_place(source):
    patched = commit_change(source, "init/main.c", "int main_init = 2;\n")
    (patched.path / "init" / "main.c").write_text("int main_init = 3;\n")
    bench, why = workbench.for_source(patched)
    assert bench is None and "not committed" in why


def test_checkout_rewrites_only_the_files_that_differ(source):
    patched = commit_change(source, "init/main.c", "int main_init = 2;\n")
    bench, _ = workbench.for_source(source)
    workbench.checkout(bench, source.commit)
    main, makefile = bench.tree / "init" / "main.c", bench.tree / "Makefile"
    old = {p: p.stat().st_mtime_ns for p in (main, makefile)}
    time.sleep(0.02)
    workbench.checkout(bench, patched.commit)
    assert main.read_text() == "int main_init = 2;\n" and workbench.head(bench) == patched.commit
    assert main.stat().st_mtime_ns > old[main]          # newer than any object built from the old text
    assert makefile.stat().st_mtime_ns == old[makefile]  # untouched: its objects stay valid


def want(key, commit, options, base="tinyconfig"):
    return {"key": key, "commit": commit, "base": base, "options": options, "source_id": "s"}


def test_the_closest_built_kernel_is_the_base(source):
    patched = commit_change(source, "init/main.c", "int main_init = 2;\n")
    bench, _ = workbench.for_source(source)
    (bench.path / "obj").mkdir(parents=True)
    slot, rec, why = workbench.choose(bench, want("k0", source.commit, {}))
    assert (slot, rec) == ("0", None) and "full build" in why
    workbench.record(bench, "0", want("k0", source.commit, {"CONFIG_A": "y"}), "ok")
    many = {f"CONFIG_X{i}": "y" for i in range(workbench.FAR + 1)}
    workbench.record(bench, "1", want("k1", source.commit, many), "ok")
    # one option away from k0, many from k1: k0's objects, with the reason said
    slot, rec, why = workbench.choose(bench, want("k2", patched.commit, {"CONFIG_A": "n"}))
    assert slot == "0" and rec["key"] == "k0"
    assert "1 requested option(s) and 1 file(s) differ" in why
    # far from everything and a free folder: start cold rather than trash a neighbour's objects
    slot, rec, why = workbench.choose(bench, want("k3", source.commit, {"CONFIG_Z": "m"}, base="defconfig"))
    assert (slot, rec) == ("2", None) and "full build in a new object folder" in why
    # pool full: the closest is taken over all the same
    workbench.record(bench, "2", want("k3", source.commit, {}, base="defconfig"), "ok")
    slot, rec, _ = workbench.choose(bench, want("k4", source.commit, dict(many, CONFIG_Y="y")))
    assert slot == "1" and rec["key"] == "k1"


def test_an_interrupted_build_loses_only_what_it_wrote(tmp_path):
    folder = tmp_path / "obj"
    (folder / "mm").mkdir(parents=True)
    old = folder / "mm" / "a.o"
    old.write_text("finished earlier")
    past = time.time() - 100
    os.utime(old, (past, past))
    (folder / "harness-config.sha").write_text("x")
    os.utime(folder / "harness-config.sha", (past, past))
    (folder / workbench.MARKER).write_text("key\n")
    os.utime(folder / workbench.MARKER, (past + 50, past + 50))
    done = folder / "mm" / "c.o"                             # finished: its .cmd came after it
    done.write_text("finished in the killed build")
    (folder / "mm" / ".c.o.cmd").write_text("savedcmd_mm/c.o := gcc ...")
    half = folder / "mm" / "b.o"                             # its .cmd is the last build's
    (folder / "mm" / ".b.o.cmd").write_text("savedcmd_mm/b.o := gcc ...")
    os.utime(folder / "mm" / ".b.o.cmd", (past, past))
    half.write_text("half writ")
    # a rule that writes two headers at once: one with its command file, one without
    (folder / "security").mkdir()
    flask, perms = folder / "security" / "flask.h", folder / "security" / "av_permissions.h"
    flask.write_text("#define X 1")
    perms.write_text("#define Y")
    (folder / "security" / ".flask.h.cmd").write_text("savedcmd_flask.h := genheaders ...")
    said = []
    workbench.recover(folder, said.append)
    assert old.exists() and done.exists() and not half.exists()
    # both headers and the command file go: if_changed makes both again
    assert not flask.exists() and not perms.exists() and not (folder / "security" / ".flask.h.cmd").exists()
    assert (folder / "mm" / ".c.o.cmd").exists() and (folder / "mm" / ".b.o.cmd").exists()
    assert not (folder / workbench.MARKER).exists()
    assert not (folder / "harness-config.sha").exists()      # the config is made again
    assert "removed the 3 files it may have left half-written, kept 1 finished" in said[0]
    workbench.recover(folder, said.append)                   # no marker: nothing to do
    assert old.exists() and len(said) == 1


def test_compiled_objects_are_counted_by_time(tmp_path):
    (tmp_path / "a.o").write_text("")
    (tmp_path / "b.o").write_text("")
    (tmp_path / "b.cmd").write_text("")
    past = time.time() - 100
    os.utime(tmp_path / "a.o", (past, past))
    assert workbench.compiled_since(tmp_path, time.time() - 10) == 1


def test_a_config_file_base_is_near_a_folder_whose_last_config_it_asks_for(source):
    """Another base is far (a new folder), unless the base is a config file: then the whole config
    it asks for is compared with each folder's last final .config."""
    bench, _ = workbench.for_source(source)
    (bench.path / "obj").mkdir(parents=True)
    final = {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": '"x"'}
    workbench.record(bench, "0", {**want("k0", source.commit, {"CONFIG_A": "y"}), "config": final}, "ok")
    same = {**want("f", source.commit, {"CONFIG_A": "y"}, base="file:abc"), "expected": dict(final)}
    slot, rec, why = workbench.choose(bench, same)
    assert slot == "0" and rec["key"] == "k0" and "0 requested option(s)" in why
    other = {**want("g", source.commit, {}, base="file:def"),
             "expected": {f"CONFIG_X{i}": "y" for i in range(workbench.FAR + 1)}}
    assert workbench.choose(bench, other)[:2] == ("1", None)              # far: a folder of its own
    no_file = want("h", source.commit, {"CONFIG_A": "y"}, base="defconfig")  # a target: unknown config
    assert workbench.choose(bench, no_file)[:2] == ("1", None)
