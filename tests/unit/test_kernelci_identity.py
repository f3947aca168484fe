"""KernelCI's identity of a checkout: git_commit_hash (the upstream commit a git source names) and
patchset_hash (KCIDB's hash of the series), from a small local git tree through a run's
metadata to a KCIDB document that kcidb-io's schema accepts."""
import json
import subprocess

import pytest
from kcidb_io import schema

from harness.ci import kcidb
from harness.experiment import Experiment, KernelSpec
from harness.kernel import prepare, series as series_mod, sources
from harness.results import RunStore
from tests.conftest import git

URL = "https://git.example.org/pub/linux.git"


@pytest.fixture
def tagged(fake_tree, tmp_path):
    """A git tree tagged v6.1.7 with an https origin, and a 2-patch series on the tag (a folder
    made by git format-patch); the tree is back at the tag."""
    git(fake_tree, "init", "-q")
    git(fake_tree, "add", "-A")
    git(fake_tree, "commit", "-qm", "base")
    git(fake_tree, "tag", "v6.1.7")
    git(fake_tree, "remote", "add", "origin", URL)
    for n in (1, 2):
        (fake_tree / "init" / f"part{n}.c").write_text(f"int part{n};\n")
        git(fake_tree, "add", "-A")
        git(fake_tree, "commit", "-qm", f"init: part {n}")
    patches = tmp_path / "series"
    git(fake_tree, "format-patch", "-q", "-o", str(patches), "v6.1.7..HEAD")
    git(fake_tree, "reset", "-q", "--hard", "v6.1.7")
    return fake_tree, patches, git(fake_tree, "rev-parse", "v6.1.7")


def kcidb_of(tmp_path, tree_path, series_path=None):
    """The KCIDB document of a run whose one kernel is this source (+ series), as the pipeline
    records it before building."""
    exp = Experiment(kernels=[KernelSpec("k", str(tree_path), ["guest-base"],
                                         series=str(series_path) if series_path else None)])
    store = RunStore(root=tmp_path / "results")
    tree, _ = prepare.Kernels(exp).tree(exp.kernels[0], store)
    store.update_kernel("k", source=tree.as_dict())
    doc = kcidb.document(store.dir)
    schema.LATEST.validate(doc)
    (checkout,) = doc["checkouts"]
    return checkout


def test_a_git_tree_with_a_series_carries_both_hashes(cache_dir, tagged, tmp_path):
    tree, patches, commit = tagged
    checkout = kcidb_of(tmp_path, tree, patches)
    assert checkout["git_commit_hash"] == commit
    assert checkout["git_commit_name"] == "v6.1.7"
    assert checkout["git_repository_url"] == URL
    # the schema's own definition of the hash, run as the shell command it gives
    shell = subprocess.run("sha256sum *.patch | cut -c-64 | sha256sum | cut -c-64", shell=True,
                           cwd=patches, capture_output=True, text=True, check=True).stdout.strip()
    assert checkout["patchset_hash"] == shell
    assert len(shell) == 64


def test_the_hash_follows_the_patches_and_their_order(tagged):
    _, patches, _ = tagged
    series = series_mod.load(str(patches))
    first, second = sorted(patches.glob("*.patch"))
    swapped = series_mod.Series(series.spec, list(reversed(series.patches)), series.version,
                                series.title, series.base, series.message_id)
    assert swapped.patchset_hash != series.patchset_hash
    second.write_text(second.read_text().replace("int part2;", "int part2b;"))
    assert series_mod.load(str(patches)).patchset_hash != series.patchset_hash
    assert series_mod.Series("x", [], 1, None, None, None).patchset_hash == ""


def test_a_plain_checkout_has_an_empty_patchset_and_a_dirty_one_no_commit(cache_dir, tagged, tmp_path):
    tree, _, commit = tagged
    clean = kcidb_of(tmp_path / "a", tree)
    assert clean["git_commit_hash"] == commit and clean["patchset_hash"] == ""
    (tree / "init" / "main.c").write_text("int dirty;\n")
    dirty = kcidb_of(tmp_path / "b", tree)
    assert "git_commit_hash" not in dirty            # the tree built is not that commit
    assert dirty["misc"]["uncommitted_changes_on"] == commit


def test_a_git_url_keeps_the_commit_its_ref_names(cache_dir, tagged):
    tree, _, commit = tagged
    source = sources.resolve(f"git+file://{tree}#v6.1.7")
    assert source.upstream["git_commit_hash"] == commit
    assert source.upstream["git_commit_name"] == "v6.1.7"   # a shallow fetch brings no tag: the ref
    assert "git_repository_url" not in source.upstream      # KCIDB takes https:// URLs only
    again = sources.resolve(f"git+file://{tree}#v6.1.7")      # from the cache: still known
    assert again.upstream == source.upstream
    assert json.loads(json.dumps(again.as_dict()))["git_commit_hash"] == commit


def test_a_tree_imported_before_origins_were_kept_gets_them(cache_dir, tagged):
    tree, _, commit = tagged
    first = sources.resolve(str(tree))
    for facts in (cache_dir / "sources" / "index").glob("*.upstream.json"):
        facts.unlink()
    assert sources.resolve(str(tree)).upstream == first.upstream
    assert first.upstream["git_commit_hash"] == commit
