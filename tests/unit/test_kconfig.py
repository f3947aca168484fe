import pytest

from harness.kernel import kconfig
from harness.errors import UserError
from tests.conftest import git, make_fake_tree

KCONFIG = """
config COW_PTE
	bool "Copy-on-write PTE table"
	depends on HAVE_ARCH_TRANSPARENT_HUGEPAGE && !PREEMPT_RT
	help
	  Share PTE tables at fork.

menuconfig VIRTIO_PCI
	bool "PCI driver for virtio devices"
	depends on PCI
"""


@pytest.fixture
def tree(tmp_path):
    t = make_fake_tree(tmp_path / "linux", KCONFIG)
    git(t, "init", "-q")
    git(t, "add", "-A")
    git(t, "commit", "-qm", "x")
    return t


def test_parse_set_and_unset():
    values = kconfig.parse("# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"s\"\n\n")
    assert values == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": '"s"'}


def test_parse_rejects_garbage_with_line_number():
    with pytest.raises(UserError, match=r"frag:2: not a config line"):
        kconfig.parse("CONFIG_A=y\nCOW_PTE=y\n", "frag")


def test_later_fragment_overrides(tmp_path):
    a = tmp_path / "a.config"
    b = tmp_path / "b.config"
    a.write_text("CONFIG_COW_PTE=y\nCONFIG_X=y\n")
    b.write_text("# CONFIG_COW_PTE is not set\n")
    merged = kconfig.requested([kconfig.fragment(a), kconfig.fragment(b)])
    assert merged == {"CONFIG_COW_PTE": "n", "CONFIG_X": "y"}


def test_unknown_fragment_name_lists_known():
    with pytest.raises(UserError, match="not found.*guest-base"):
        kconfig.fragment("no-such-fragment")


def test_repo_fragments_parse():
    for name in ("guest-base", "cow-pte"):
        assert kconfig.fragment(name).values


def test_verify_accepts_matching_config(tree):
    kconfig.verify("CONFIG_COW_PTE=y\n", {"CONFIG_COW_PTE": "y"}, tree)
    kconfig.verify("", {"CONFIG_COW_PTE": "n"}, tree)  # absent counts as n


def test_verify_names_dropped_option_and_its_dependency(tree):
    with pytest.raises(UserError) as err:
        kconfig.verify("# CONFIG_VIRTIO_PCI is not set\n", {"CONFIG_VIRTIO_PCI": "y"}, tree)
    text = str(err.value)
    assert "CONFIG_VIRTIO_PCI: requested y, final .config has n" in text
    assert "depends on PCI" in text and "mm/Kconfig" in text


def test_verify_names_unknown_symbol(tree):
    with pytest.raises(UserError, match="CONFIG_NOT_A_SYMBOL: unknown symbol"):
        kconfig.verify("CONFIG_COW_PTE=y\n", {"CONFIG_NOT_A_SYMBOL": "y", "CONFIG_COW_PTE": "y"}, tree)
