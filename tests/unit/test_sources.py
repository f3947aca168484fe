import functools
import hashlib
import http.server
import tarfile
import threading

import pytest

from harness.kernel import sources
from harness.errors import UserError
from tests.conftest import git, make_fake_tree


def test_missing_path_is_a_user_error(cache_dir, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        sources.resolve(str(tmp_path / "nope"))


def test_not_a_kernel_tree(cache_dir, tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="not a Linux kernel tree"):
        sources.resolve(str(tmp_path / "x"))


def test_in_tree_build_is_refused(cache_dir, fake_tree):
    (fake_tree / ".config").write_text("CONFIG_X=y\n")
    with pytest.raises(UserError, match="make mrproper"):
        sources.resolve(str(fake_tree))


def test_plain_dir_is_imported_with_content_id(cache_dir, fake_tree, tmp_path):
    tree = sources.resolve(str(fake_tree))
    assert tree.version == "6.1.7-test"
    assert tree.id.startswith("6.1.7-test-")
    assert (tree.path / "init" / "main.c").read_text() == "int main_init;\n"
    # a copy elsewhere with the same content gets the same id
    other = make_fake_tree(tmp_path / "other")
    assert sources.resolve(str(other)).id == tree.id
    # a change gives a new id, and the cached tree keeps the old content
    (fake_tree / "init" / "main.c").write_text("int changed;\n")
    changed = sources.resolve(str(fake_tree))
    assert changed.id != tree.id
    assert (tree.path / "init" / "main.c").read_text() == "int main_init;\n"


def test_git_checkout_includes_uncommitted_changes(cache_dir, fake_tree):
    git(fake_tree, "init", "-q")
    git(fake_tree, "add", "-A")
    git(fake_tree, "commit", "-qm", "base")
    clean = sources.resolve(str(fake_tree))
    assert clean.id.endswith(git(fake_tree, "rev-parse", "HEAD^{tree}")[:12])
    (fake_tree / "init" / "main.c").write_text("int dirty;\n")
    dirty = sources.resolve(str(fake_tree))
    assert dirty.id != clean.id
    assert (dirty.path / "init" / "main.c").read_text() == "int dirty;\n"


def test_git_url_with_ref(cache_dir, fake_tree):
    git(fake_tree, "init", "-q")
    git(fake_tree, "add", "-A")
    git(fake_tree, "commit", "-qm", "base")
    git(fake_tree, "tag", "v6.1.7")
    (fake_tree / "init" / "main.c").write_text("int later;\n")
    git(fake_tree, "commit", "-qam", "later")
    tree = sources.resolve(f"git+file://{fake_tree}#v6.1.7")
    assert (tree.path / "init" / "main.c").read_text() == "int main_init;\n"
    with pytest.raises(UserError, match="name a ref"):
        sources.resolve(f"git+file://{fake_tree}")
    with pytest.raises(UserError, match="cannot fetch ref 'v9.9'"):
        sources.resolve(f"git+file://{fake_tree}#v9.9")


@pytest.fixture
def served(tmp_path, fake_tree):
    """A linux-6.1.7.tar.xz served over HTTP on loopback, like kernel.org's layout."""
    pub = tmp_path / "pub"
    pub.mkdir()
    tarball = pub / "linux-6.1.7.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(fake_tree, arcname="linux-6.1.7")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(pub))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", digest, pub
    server.shutdown()


def test_tarball_with_and_without_checksum(cache_dir, served):
    base, digest, _ = served
    tree = sources.resolve(f"{base}/linux-6.1.7.tar.xz#sha256={digest}")
    assert tree.version == "6.1.7-test"
    assert sources.resolve(f"{base}/linux-6.1.7.tar.xz").id == tree.id


def test_tarball_checksum_mismatch(cache_dir, served):
    base, _, _ = served
    with pytest.raises(UserError, match="sha256 is .* expected 0000"):
        sources.resolve(f"{base}/linux-6.1.7.tar.xz#sha256=" + "0" * 64)


def test_tarball_published_checksum_is_checked(cache_dir, served):
    base, _, pub = served
    (pub / "sha256sums.asc").write_text("ab" * 32 + "  linux-6.1.7.tar.xz\n")
    with pytest.raises(UserError, match="sha256 is"):
        sources.resolve(f"{base}/linux-6.1.7.tar.xz")


def test_unreachable_tarball_says_what_to_do(cache_dir):
    with pytest.raises(UserError, match="offline\\? pass a local tree"):
        sources.resolve("http://127.0.0.1:9/linux-6.2.tar.xz")


def test_bad_specs(cache_dir):
    with pytest.raises(UserError, match="release tarball"):
        sources.resolve("https://example.invalid/linux.zip")
    with pytest.raises(UserError, match="debian:linux-source-X.Y"):
        sources.resolve("debian:linux-image-amd64")
