"""--base: the config the fragments go on (tinyconfig, defconfig, a config file, target)."""
import json

import pytest

from harness import cli
from harness.errors import UserError
from harness.experiment import Experiment, KernelSpec
from harness.kernel import kconfig, sources
from harness.kernel.build import Build

DISTRO = """# Automatically generated file; DO NOT EDIT.
CONFIG_64BIT=y
CONFIG_MEMCG=y
CONFIG_SYSTEM_TRUSTED_KEYS="debian/certs/debian-uefi-certs.pem"
CONFIG_SYSTEM_REVOCATION_KEYS="debian/certs/revoked.pem"
# CONFIG_KSM is not set
"""


def test_bases_by_name_keep_the_tinyconfig_key_of_before(cache_dir, fake_tree):
    tree = sources.resolve(str(fake_tree))
    frags = [kconfig.fragment("guest-base")]
    tiny, default = Build(tree, frags), Build(tree, frags, base="defconfig")
    assert tiny.base.key == "tinyconfig" and tiny.key != default.key
    assert Build(tree, frags, base=kconfig.base("tinyconfig")).key == tiny.key
    argv = default.tuxmake(cache_dir / "out", "config")
    assert argv[argv.index("--kconfig") + 1] == "defconfig"


def test_a_config_file_is_keyed_by_its_text_and_its_certificates_emptied(cache_dir, fake_tree, tmp_path):
    tree = sources.resolve(str(fake_tree))
    path = tmp_path / "config-6.1.0-28-amd64"
    path.write_text(DISTRO)
    base = kconfig.base(str(path))
    assert base.emptied == ("CONFIG_SYSTEM_TRUSTED_KEYS", "CONFIG_SYSTEM_REVOCATION_KEYS")
    assert 'CONFIG_SYSTEM_TRUSTED_KEYS=""' in base.text and "CONFIG_MEMCG=y" in base.text
    build = Build(tree, [kconfig.fragment("guest-base")], base=str(path))
    argv = build.tuxmake(cache_dir / "out", "config")
    used = argv[argv.index("--kconfig") + 1]
    assert used.endswith(".config") and open(used).read() == base.text
    renamed = tmp_path / "other-name"
    renamed.write_text(DISTRO)
    assert Build(tree, [kconfig.fragment("guest-base")], base=str(renamed)).key == build.key
    path.write_text(DISTRO.replace("CONFIG_MEMCG=y", "# CONFIG_MEMCG is not set"))
    assert Build(tree, [kconfig.fragment("guest-base")], base=str(path)).key != build.key
    assert base.as_dict()["name"] == "config-6.1.0-28-amd64"


@pytest.mark.parametrize("spec, message", [
    ("allyesconfig", "not tinyconfig, defconfig, target or a config file"),
    ("target", "real-machine target, which is not built yet"),
])
def test_bad_bases_are_one_clear_error(spec, message):
    with pytest.raises(UserError, match=message):
        kconfig.base(spec)


def test_a_file_that_is_no_config_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("# only a comment\n")
    with pytest.raises(UserError, match="no CONFIG_ line"):
        kconfig.base(str(path))
    path.write_text("hello world\n")
    with pytest.raises(UserError, match="not a config line"):
        kconfig.base(str(path))


def test_the_base_is_in_the_reproducer_and_checked_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    exp = Experiment(kernels=[KernelSpec("k", "debian:linux-source-6.1", ["guest-base"])], base="defconfig")
    assert "--base defconfig" in " ".join(exp.command_line() if isinstance(exp.command_line(), list)
                                          else [exp.command_line()])
    assert json.loads(json.dumps(exp.to_dict()))["base"] == "defconfig"
    code = cli.main(["build", "--kernel-src", "debian:linux-source-6.1", "--base", str(tmp_path / "nope")])
    assert code == 2 and "no such file" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_kernels_of_one_experiment_may_have_their_own_base(tmp_path):
    from harness import experiment, validate
    exp = experiment.load("base-configs")
    assert [(k.label, k.base) for k in exp.kernels] == [("tinyconfig", "tinyconfig"), ("defconfig", "defconfig")]
    assert "--experiment base-configs" in exp.command_line()
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "debian:linux-source-6.1"\n[[kernels]]\nlabel = "x"\nbase = "nosuchconfig"\n')
    with pytest.raises(UserError, match="kernel 'x': base 'nosuchconfig'"):
        validate.labels(experiment.load(str(bad)).kernels)
