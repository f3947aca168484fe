"""Bad requests are refused before anything is built, booted or stored (issue #12).

Each case is a whole command on a cold cache: it must end with exit 2 (a bad request) or 3 (this
machine cannot do it), one error line naming the field and what is allowed, no traceback, nothing
in the cache (nothing was built or imported) and nothing written outside the results folder (not
even a run folder inside it). The kernel source, where the case is about something else, is a
directory that looks like a kernel tree: validation accepts it, and nothing ever builds it.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from harness import cli, paths
from tests.conftest import make_fake_tree

TOO_MUCH_MEMORY = str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20) + 1024)


def experiment(tmp_path, text):
    path = tmp_path / "inputs" / "exp.toml"
    path.write_text(text)
    return str(path)


def kernels_toml(tree, extra=""):
    return f'source = "{tree}"\n{extra}\n[[kernels]]\nlabel = "stock"\n'


CASES = {
    # workload parameters against the manifest's [allowed]
    "negative size": (lambda t, tree: ["run", "--kernel-src", tree, "--workload", "fork-memory",
                                       "--param", "mib=-5"], 2, "parameter mib = -5: allowed: whole numbers from 1"),
    "unknown THP mode": (lambda t, tree: ["run", "--kernel-src", tree, "--param", "thp=giant"], 2,
                         "parameter thp = 'giant': allowed: nohuge, huge, default"),
    "size that is not a number": (lambda t, tree: ["run", "--kernel-src", tree, "--param", "mib=lots"], 2,
                                  "parameter value 'lots' is not a int"),
    "bad size list": (lambda t, tree: ["run", "--kernel-src", tree, "--workload", "fork-latency",
                                       "--param", "sizes_mib=1,two"], 2,
                      "sizes_mib = '1,two': allowed: comma-separated whole numbers"),
    "unknown parameter": (lambda t, tree: ["run", "--kernel-src", tree, "--param", "mbi=5"], 2,
                          "has no parameter 'mbi'"),
    # labels
    "duplicate labels": (lambda t, tree: ["run", "--kernel-src", tree, "--kernel-src", tree,
                                          "--label", "a", "--label", "a"], 2, "label 'a' is used twice"),
    "label that leaves its folder": (lambda t, tree: ["run", "--kernel-src", tree, "--label", "../../evil"], 2,
                                     "letters, digits, '.', '_' and '-' only"),
    # experiment files
    "repeat that is not a number": (lambda t, tree: ["run", "--experiment", experiment(
        t, kernels_toml(tree) + '[[workloads]]\nname = "fork-memory"\nrepeat = "abc"\n')], 2,
        "repeat = 'abc': allowed: a whole number from 1 to 1000"),
    "workload entry without a name": (lambda t, tree: ["run", "--experiment", experiment(
        t, kernels_toml(tree) + '[[workloads]]\nparams = { mib = 64 }\n')], 2, "entry 1 needs a name"),
    "guest memory of the wrong type": (lambda t, tree: ["run", "--experiment", experiment(
        t, kernels_toml(tree, '[guest]\nmemory_mib = "lots"'))], 2, "memory_mib must be a whole number of at least 64, got 'lots'"),
    "missing series for the second kernel": (lambda t, tree: ["run", "--experiment", experiment(
        t, kernels_toml(tree) + '[[kernels]]\nlabel = "patched"\npatched = true\n'), "--series",
        str(t / "inputs" / "no-such.mbox")], 2, "kernel 'patched': series"),
    "series that is not an mbox": (lambda t, tree: ["run", "--kernel-src", tree, "--series",
                                                    str(t / "inputs" / "empty.mbox")], 2, "not an mbox"),
    "malformed config fragment": (lambda t, tree: ["run", "--kernel-src", tree, "--config",
                                                   str(t / "inputs" / "bad.config")], 2, "not a config line"),
    # sources
    "tarball over http": (lambda t, tree: ["run", "--kernel-src", "http://example.org/linux-6.2.tar.xz#sha256="
                                           + "a" * 64], 2, "https only"),
    "tarball without a checksum": (lambda t, tree: ["run", "--kernel-src",
                                                    "https://example.org/linux-6.2.tar.xz"], 2, "needs its sha256"),
    "not a kernel tree": (lambda t, tree: ["run", "--kernel-src", str(t / "inputs")], 2, "not a Linux kernel tree"),
    "git source without a ref": (lambda t, tree: ["run", "--kernel-src", "git+https://u:tok@example.org/linux.git"],
                                 2, "write git+URL#REF"),
    # guest settings
    "unknown image": (lambda t, tree: ["run", "--kernel-src", tree, "--image", "../../etc"], 2,
                      "image = '../../etc': allowed: a recipe in vm-images/"),
    "no vCPU": (lambda t, tree: ["run", "--kernel-src", tree, "--cpus", "0"], 2, "cpus must be a whole number of at least 1, got 0"),
    "bad CPU list": (lambda t, tree: ["run", "--kernel-src", tree, "--pin", "two"], 2, "pin = 'two': allowed"),
    "boot with a bad guest setting": (lambda t, tree: ["boot", "--kernel-src", tree, "--memory", "100"], 2,
                                      "memory_mib = 100: allowed: a whole number from 256"),
    # this machine cannot do it: exit 3
    "CPUs this host does not have": (lambda t, tree: ["run", "--kernel-src", tree, "--pin", "4000-4001"], 3,
                                     "CPUs [4000, 4001] are not available"),
    "more memory than the host has": (lambda t, tree: ["run", "--kernel-src", tree, "--memory", TOO_MUCH_MEMORY],
                                      3, "this host has"),
    # harness verify checks its request the same way
    "verify with a missing series": (lambda t, tree: ["verify", "--kernel-src", tree, "--series",
                                                      str(t / "inputs" / "no-such.mbox")], 2,
                                     "does not exist and is not a lore Message-Id"),
    "verify with a negative size": (lambda t, tree: ["verify", "--kernel-src", tree, "--series",
                                                     str(t / "inputs" / "series"), "--mib", "-1"], 2, "--mib must be a whole number of at least 1, got -1"),
    "verify with an unknown selftest": (lambda t, tree: ["verify", "--kernel-src", tree, "--series",
                                                         str(t / "inputs" / "series"), "--selftests", "cow,nope"],
                                        2, "--selftests: unknown ['nope']"),
    # stored data that is broken
    "corrupt metadata.json": (lambda t, tree: ["report", str(t / "results" / "broken")], 2, "is not valid JSON"),
    "history file that is not a database": (lambda t, tree: ["history", "fork_ns", "--history",
                                                             str(t / "inputs" / "history.sqlite")], 2,
                                            "not a usable history database"),
    "negative drift in a simulation": (lambda t, tree: ["calibrate", "--simulate", "--drift-sd", "-1"], 2,
                                       "--drift-sd must be a number of at least 0, got -1.0"),
    "one boot per kernel in a simulation": (lambda t, tree: ["calibrate", "--simulate", "--boots", "1"], 2,
                                            "--boots must be at least 2 for --simulate, got 1"),
    "resume of a run with a broken metadata.json": (lambda t, tree: ["run", "--resume", str(t / "results" / "broken")],
                                                    2, "is not valid JSON"),
}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A cold cache, an empty results folder, and the inputs the cases name."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    tree = make_fake_tree(tmp_path / "linux")
    (inputs / "empty.mbox").write_text("")
    (inputs / "series").mkdir()
    (inputs / "series" / "0001-a.patch").write_text("Subject: [PATCH 1/1] a\n\n---\n")
    (inputs / "bad.config").write_text("CONFIG_X=y\nthis is not a config line\n")
    (inputs / "history.sqlite").write_text("not a database, just text " * 100)
    broken = tmp_path / "results" / "broken"
    broken.mkdir(parents=True)
    (broken / "metadata.json").write_text('{"run_id": "broken", "kernels": {')
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    monkeypatch.chdir(inputs)
    return tmp_path, str(tree)


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def refused(case, root, tree, capsys):
    """Run one case (argv maker, exit code, message) in the harness: the exit code, the message in
    one error line, no traceback, and nothing changed under root (no cache, no run folder)."""
    argv, code, message = case
    argv = argv(root, tree)                     # writes the case's experiment file, if any
    before = snapshot(root)
    assert cli.main(argv) == code
    out, err = capsys.readouterr()
    assert message in err, err
    assert "Traceback" not in out + err and err.count("error:") == 1
    assert len(err.strip().splitlines()) == 1, err
    assert snapshot(root) == before             # no cache, no run folder, nothing anywhere


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_before_anything_is_built(name, world, capsys):
    refused(CASES[name], *world, capsys)


def test_there_are_at_least_15_distinct_bad_inputs(tmp_path):
    (tmp_path / "inputs").mkdir()
    distinct = {(tuple(argv(tmp_path, "TREE")[:2]), message) for argv, _, message in CASES.values()}
    assert len(CASES) >= 15 and len(distinct) == len(CASES)


@pytest.mark.parametrize("name", ["unknown THP mode", "repeat that is not a number", "more memory than the host has"])
def test_bad_input_as_ci_sees_it(name, world):
    """The whole program in a new process: its exit code, one line on stderr, no traceback."""
    tmp_path, tree = world
    argv, code, message = CASES[name]
    argv = argv(tmp_path, tree)
    before = snapshot(tmp_path)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True,
                          text=True, cwd=tmp_path / "inputs", timeout=120,
                          env={**os.environ, "HARNESS_ROOT": str(paths.ROOT)})
    print(f"{name}: exit {proc.returncode} after {time.monotonic() - started:.1f} s")
    assert proc.returncode == code and message in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert snapshot(tmp_path) == before


def test_shipped_experiments_and_manifests_pass_the_checks():
    """Every parameter of every workload has a rule, and every experiment's workloads and guest
    settings pass (their sources are checked where they run)."""
    from harness import experiment as ex, validate
    from harness.measure import workloads
    for name in workloads.names():
        w = workloads.Workload.load(name)
        assert set(w.manifest.get("allowed", {})) == set(w.manifest["params"]), name
        for key, rule in w.manifest["allowed"].items():
            assert validate.value_problem(w.manifest["params"][key], rule) is None, (name, key)
    for path in ex.EXPERIMENTS.glob("*.toml"):
        exp = ex.load(path, kernel_src="/unused", series=str(path))
        for spec in exp.workloads:
            validate.workload(spec.name, spec.params)
        validate.guest(exp)


def test_metadata_of_a_report_is_untouched(world, capsys):
    tmp_path, _ = world
    meta = tmp_path / "results" / "broken" / "metadata.json"
    text = meta.read_text()
    cli.main(["report", str(meta.parent)])
    assert meta.read_text() == text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
