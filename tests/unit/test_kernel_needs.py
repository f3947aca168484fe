"""A workload says what it needs from the kernel (its manifest's kernel_config; a selftest's
catalog options): the harness adds it to every kernel of the experiment as one more fragment (in
the cache key, checked in the final .config like any fragment), adds nothing when the kernel's
fragments already ask for it, and refuses by the option's name a kernel whose fragments turn it
off or whose final .config lacks it."""
import types

import pytest

from harness import cli, validate
from harness.errors import UserError
from harness.experiment import WorkloadSpec, kernel_needs
from harness.kernel import kconfig
from harness.kernel.build import Build
from harness.measure.workloads import Workload
from tests.conftest import git, make_fake_tree
from tests.unit.test_bad_inputs import snapshot, world  # noqa: F401 (world is a fixture)

AFL = {"CONFIG_SYSVIPC": ["afl"], "CONFIG_FILE_LOCKING": ["afl"]}


def frags(*names):
    return [kconfig.fragment(n) for n in names]


def test_the_experiment_needs_what_its_workloads_and_selftests_name():
    exp = types.SimpleNamespace(workloads=[WorkloadSpec("afl"), WorkloadSpec("fork-memory"),
                                           WorkloadSpec("afl", {"heap_mib": 8})], selftests=["cow"])
    assert kernel_needs(exp) == {**AFL, **{f"CONFIG_{o}": ["selftest cow"] for o in
                                           ("HUGETLBFS", "GUP_TEST", "TRANSPARENT_HUGEPAGE", "SWAP")}}
    assert kernel_needs(types.SimpleNamespace(workloads=[WorkloadSpec("fork-memory")], selftests=[])) == {}


def test_only_what_the_fragments_lack_is_added():
    needs = {**AFL, "CONFIG_HUGETLBFS": ["selftest cow"]}
    assert kconfig.needed(frags("guest-base", "selftests"), needs) == {
        "CONFIG_FILE_LOCKING": "y", "CONFIG_SYSVIPC": "y"}
    assert kconfig.needed(frags("guest-base"), needs) == {
        "CONFIG_FILE_LOCKING": "y", "CONFIG_HUGETLBFS": "y", "CONFIG_SYSVIPC": "y"}


def test_the_added_fragment_is_in_the_cache_key(cache_dir, tmp_path):
    source = types.SimpleNamespace(id="6.1.192-abc", path=tmp_path)
    plain = frags("guest-base", "selftests")
    with_afl = kconfig.with_needs(plain, AFL, "stock")
    added = with_afl[-1]
    assert with_afl[:-1] == plain and added.name == "needs-afl"
    assert added.text == "CONFIG_FILE_LOCKING=y\nCONFIG_SYSVIPC=y\n" == added.path.read_text()
    assert added.path.parent == cache_dir / "fragments"
    assert kconfig.requested(with_afl)["CONFIG_SYSVIPC"] == "y"
    key = lambda fragments: Build(source, fragments).key          # noqa: E731
    assert key(with_afl) != key(plain)
    assert key(kconfig.with_needs(plain, AFL)) == key(with_afl)   # the same needs, the same kernel
    # a need the fragments have already changes nothing: the shared kernels keep their keys
    cow = {"CONFIG_HUGETLBFS": ["selftest cow"], "CONFIG_SWAP": ["selftest cow"]}
    assert kconfig.with_needs(plain, cow) == plain and key(kconfig.with_needs(plain, cow)) == key(plain)


def test_a_fragment_turning_a_need_off_is_refused_by_name(tmp_path):
    off = tmp_path / "no-ipc.config"
    off.write_text("# CONFIG_SYSVIPC is not set\n")
    with pytest.raises(UserError) as exc:
        kconfig.needed(frags("guest-base") + [kconfig.fragment(str(off))], AFL, "small")
    assert str(exc.value) == ("kernel 'small' cannot run what it was asked to: CONFIG_SYSVIPC "
                              "(fragment no-ipc sets it off; needed by afl): drop the "
                              "'# ... is not set' line or the workload")


def test_a_need_the_final_config_lacks_is_refused_by_name(tmp_path, cache_dir):
    tree = make_fake_tree(tmp_path / "linux", "config SYSVIPC\n\tbool \"System V IPC\"\n\tdepends on MMU\n")
    git(tree, "init", "-q")
    git(tree, "add", "-A")
    git(tree, "commit", "-qm", "x")
    wanted = kconfig.requested(kconfig.with_needs(frags("guest-base"), AFL))
    final = "\n".join(f"{s}={v}" for s, v in wanted.items() if s not in AFL) + "\n"
    with pytest.raises(UserError) as exc:
        kconfig.verify(final, wanted, tree)
    text = str(exc.value)
    assert "CONFIG_SYSVIPC: requested y, final .config has n (dropped by olddefconfig; " in text
    assert "depends on MMU" in text
    assert "CONFIG_FILE_LOCKING: unknown symbol" in text


@pytest.mark.parametrize("value,problem", [
    ("CONFIG_SYSVIPC", "kernel_config = 'CONFIG_SYSVIPC': allowed: a list of text"),
    (["SYSVIPC"], "kernel_config = ['SYSVIPC']: 'SYSVIPC': allowed: CONFIG_ names (CONFIG_SYSVIPC)"),
    (["CONFIG_SYSVIPC=y"], "'CONFIG_SYSVIPC=y': allowed: CONFIG_ names"),
])
def test_a_bad_kernel_config_key_is_refused(tmp_path, value, problem):
    w = Workload("toy", tmp_path, {"kernel_config": value, "params": {}})
    with pytest.raises(UserError, match="workload toy: manifest.toml: ") as exc:
        validate.kernel_config(w)
    assert problem in str(exc.value)
    validate.kernel_config(Workload("toy", tmp_path, {"kernel_config": ["CONFIG_SYSVIPC"]}))
    validate.kernel_config(Workload("toy", tmp_path, {}))


def test_run_refuses_before_any_work(world, capsys):                  # noqa: F811
    tmp_path, tree = world
    (tmp_path / "inputs" / "no-ipc.config").write_text("# CONFIG_SYSVIPC is not set\n")
    before = snapshot(tmp_path)
    argv = ["run", "--kernel-src", tree, "--config", str(tmp_path / "inputs" / "no-ipc.config"),
            "--workload", "afl"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "CONFIG_SYSVIPC (fragment no-ipc sets it off; needed by afl)" in err
    assert snapshot(tmp_path) == before


def test_the_run_builds_its_kernels_with_the_needs(world, monkeypatch):   # noqa: F811
    from harness.kernel import prepare
    from harness.experiment import Experiment, KernelSpec
    from harness.results import NullStore
    _, tree = world
    seen = []

    class Stop(Exception):
        pass

    def build(source, fragments, **kwargs):
        seen.append([(f.name, f.text) for f in fragments])
        raise Stop
    monkeypatch.setattr(prepare, "Build", build)
    exp = Experiment(kernels=[KernelSpec("stock", tree)], workloads=[WorkloadSpec("afl")])
    with pytest.raises(Stop):
        prepare.Kernels(exp).kernel(exp.kernels[0], NullStore())
    assert [name for name, _ in seen[0]] == ["guest-base", "needs-afl"]
    assert seen[0][1][1] == "CONFIG_FILE_LOCKING=y\nCONFIG_SYSVIPC=y\n"


def test_a_kernel_built_without_the_needs_is_not_booted(world, monkeypatch):   # noqa: F811
    """attribute boots kernels it built from its own config sets: one without what the workload
    needs is refused before it boots, by name, and the run's other kernels go on."""
    from harness import pipeline
    from harness.experiment import Experiment, KernelSpec
    _, tree = world
    with_ipc = types.SimpleNamespace(key="k1", config="CONFIG_SYSVIPC=y\nCONFIG_FILE_LOCKING=y\n")
    without = types.SimpleNamespace(key="k2", config="CONFIG_FILE_LOCKING=y\n# CONFIG_SYSVIPC is not set\n")
    exp = Experiment(kernels=[KernelSpec("a", tree), KernelSpec("b", tree)], workloads=[WorkloadSpec("afl")])
    run = pipeline.Run(exp)
    monkeypatch.setattr(run.kernels, "kernel", lambda spec, store: [(0, with_ipc if spec.label == "a" else without)])
    assert run.build_all() == {"a": [(0, with_ipc)]}
    [(label, exc)] = run.failures[:1]
    assert label == "b" and str(exc) == (
        "kernel 'b' (k2) was built without CONFIG_SYSVIPC (needed by afl): not booted; build it "
        "with them (a fragment, or a run that adds them)")


def test_a_cell_without_afl_builds_the_kernel_the_whole_experiment_does():
    from harness.experiment import Experiment, KernelSpec
    whole = Experiment(kernels=[KernelSpec("stock", "debian:linux-source-6.1")],
                       workloads=[WorkloadSpec("fork-memory"), WorkloadSpec("afl")])
    cell = Experiment(kernels=whole.kernels, workloads=[WorkloadSpec("fork-memory")], cells=["c1"],
                      whole={"workloads": [vars(w) for w in whole.workloads], "selftests": []})
    assert kernel_needs(cell) == kernel_needs(whole) == AFL
