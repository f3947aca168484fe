import subprocess
import os
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


def test_git_checkout_missing_objects_imports_its_work_tree(cache_dir, fake_tree, capsys):
    """A clone that lacks some blobs (a mirror leaving out large files, a sparse checkout): git
    archive fails, so the tracked files of the work tree are imported, and the missing ones named."""
    big = fake_tree / "drivers" / "big.h"
    big.parent.mkdir(parents=True, exist_ok=True)
    big.write_text("#define LARGE 1\n")
    git(fake_tree, "init", "-q")
    git(fake_tree, "add", "-A")
    git(fake_tree, "commit", "-qm", "base")
    blob = git(fake_tree, "rev-parse", "HEAD:drivers/big.h")
    (fake_tree / ".git" / "objects" / blob[:2] / blob[2:]).unlink()   # the blob never arrived
    big.unlink()
    git(fake_tree, "update-index", "--skip-worktree", "drivers/big.h")
    (fake_tree / "untracked.c").write_text("int not_imported;\n")
    tree = sources.resolve(str(fake_tree))
    assert (tree.path / "init" / "main.c").read_text() == "int main_init;\n"
    assert not (tree.path / "drivers" / "big.h").exists()
    assert not (tree.path / "untracked.c").exists()          # tracked files only, as git archive
    assert "1 tracked files are not there" in capsys.readouterr().err


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
    # the loopback server speaks http: allowed only with --insecure-download
    with pytest.raises(UserError, match="https only"):
        sources.resolve(f"{base}/linux-6.1.7.tar.xz#sha256={digest}")
    tree = sources.resolve(f"{base}/linux-6.1.7.tar.xz#sha256={digest}", insecure=True)
    assert tree.version == "6.1.7-test"
    assert sources.resolve(f"{base}/linux-6.1.7.tar.xz", insecure=True).id == tree.id


def test_tarball_without_checksum_is_refused(cache_dir):
    with pytest.raises(UserError, match="needs its sha256"):
        sources.resolve("https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.2.tar.xz")


def test_tarball_checksum_mismatch(cache_dir, served):
    base, _, _ = served
    with pytest.raises(UserError, match="sha256 is .* expected 0000"):
        sources.resolve(f"{base}/linux-6.1.7.tar.xz#sha256=" + "0" * 64, insecure=True)


@pytest.fixture
def signer(tmp_path):
    """A throwaway OpenPGP key (gpg, no passphrase) and a binary keyring holding its public key."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "test@example.invalid",
                    "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--export"], env=env, check=True, capture_output=True).stdout)

    def sign(text, dest):
        subprocess.run(["gpg", "--batch", "--yes", "--clearsign", "-o", str(dest)], input=text.encode(),
                       env=env, check=True, capture_output=True)
    yield keyring, sign
    subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)


def test_signed_checksum_file_checked_against_the_users_keyring(cache_dir, served, signer, tmp_path):
    base, digest, pub = served
    keyring, sign = signer
    sign(f"{digest}  linux-6.1.7.tar.xz\n", pub / "sha256sums.asc")
    tree = sources.resolve(f"{base}/linux-6.1.7.tar.xz#keyring={keyring}", insecure=True)
    assert tree.version == "6.1.7-test"
    sign("ab" * 32 + "  linux-6.1.7.tar.xz\n", pub / "sha256sums.asc")          # signed, but wrong
    with pytest.raises(UserError, match="sha256 is"):
        sources.resolve(f"{base}/linux-6.1.7.tar.xz#keyring={keyring}", insecure=True)
    text = (pub / "sha256sums.asc").read_text().replace("abab", "cdcd", 1)      # tampered with
    (pub / "sha256sums.asc").write_text(text)
    with pytest.raises(UserError, match="signature of sha256sums.asc does not check out"):
        sources.resolve(f"{base}/linux-6.1.7.tar.xz#keyring={keyring}", insecure=True)


def test_unreachable_tarball_says_what_to_do(cache_dir):
    with pytest.raises(UserError, match="offline\\? pass a local tree"):
        sources.resolve("https://127.0.0.1:9/linux-6.2.tar.xz#sha256=" + "0" * 64)


def test_credentials_never_reach_the_source_id_or_errors(cache_dir):
    with pytest.raises(UserError) as info:
        sources.resolve("https://user:s3cret@127.0.0.1:9/linux-6.2.tar.xz#sha256=" + "0" * 64)
    assert "s3cret" not in str(info.value) and "user" not in str(info.value)
    with pytest.raises(UserError) as info:
        sources.resolve("git+https://user:s3cret@127.0.0.1:9/linux.git#v6.2")
    assert "s3cret" not in str(info.value)


def test_bad_specs(cache_dir):
    with pytest.raises(UserError, match="release tarball"):
        sources.resolve("https://example.invalid/linux.zip")
    with pytest.raises(UserError, match="debian:linux-source-X.Y"):
        sources.resolve("debian:linux-image-amd64")
