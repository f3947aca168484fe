"""Issue #21: bad requests to every subcommand and broken stored files, refused before any work.

Each case is a whole command on a cold cache, as in test_bad_inputs.py: exit 2 (or 3), one error
line naming the field and what is allowed, no traceback, nothing in the cache and nothing written
anywhere (the tmp folder holding the results, the cache and the inputs is unchanged).
"""
import json

import pytest

from harness import cli
from tests.unit.test_bad_inputs import refused, world  # noqa: F401 (world is a fixture)


def exp_file(t, tree, text, kernels='[[kernels]]\nlabel = "stock"\n'):
    path = t / "inputs" / "exp.toml"
    path.write_text(f'source = "{tree}"\n{text}\n{kernels}')
    return str(path)


def raw_file(t, text):
    path = t / "inputs" / "raw.toml"
    path.write_text(text)
    return str(path)


def run_exp(text, kernels='[[kernels]]\nlabel = "stock"\n'):
    return lambda t, tree: ["run", "--experiment", exp_file(t, tree, text, kernels)]


def stored(t, name):
    return str(t / "results" / name)


SERIES = lambda t: str(t / "inputs" / "series")      # noqa: E731
HOST = "ci@runner.invalid"

CASES = {
    # --- experiment files: strict types, unknown keys, contradictions -----------------------------
    "patched as a string": (run_exp("", '[[kernels]]\nlabel = "p"\npatched = "false"\n'), 2,
                            "patched = 'false': allowed: true or false (not a string)"),
    "typo in a kernel key": (run_exp("", '[[kernels]]\nlabel = "p"\npacthed = true\n'), 2,
                             "unknown key 'pacthed'; did you mean 'patched'?"),
    "fragments as a string": (run_exp("", '[[kernels]]\nlabel = "p"\nfragments = "cow-pte"\n'), 2,
                              "fragments = 'cow-pte': allowed: a list of text"),
    "guest as a number": (run_exp("guest = 5"), 2, "guest = 5: allowed: a table"),
    "kernels as a number": (run_exp("kernels = 5", ""), 2, "kernels = 5: allowed: a list of tables"),
    "label as a number": (run_exp("", "[[kernels]]\nlabel = 5\n"), 2, "label = 5: allowed: text"),
    "kernel without a label": (run_exp("", "[[kernels]]\npatched = false\n"), 2,
                               "[[kernels]] entry 1: label is missing"),
    "typo in a top-level key": (run_exp('kernal = "x"'), 2, "unknown key 'kernal'; did you mean 'kernels'?"),
    "typo in a workload key": (run_exp('[[workloads]]\nname = "fork-memory"\nparms = { mib = 64 }'), 2,
                               "unknown key 'parms'; did you mean 'params'?"),
    "workload params as a number": (run_exp('[[workloads]]\nname = "fork-memory"\nparams = 5'), 2,
                                    "params = 5: allowed: a table"),
    "claim value as text": (run_exp('[[claims]]\nworkload = "fork-memory"\nmetric = "fork_ns"\nvalue = "big"'),
                            2, "value = 'big': allowed: a number"),
    "claim with an unknown condition": (run_exp('feature = "cow-pte"\n[[claims]]\nworkload = "fork-memory"\n'
                                                'metric = "m"\nvalue = 1\ncondition = "cowpte"'), 2,
                                        "condition = 'cowpte': allowed: fork, cow-pte (the profile 'cow-pte')"),
    "a claim of the feature under the plain profile": (
        run_exp('[[claims]]\nworkload = "fork-memory"\nmetric = "m"\nvalue = 1\ncondition = "cow-pte"'), 2,
        "condition = 'cow-pte': allowed: fork (the profile 'none')"),
    "an unknown feature profile": (run_exp('feature = "cow-ptee"'), 2, "unknown feature profile 'cow-ptee'"),
    "selfbench with an unknown feature profile": (lambda t, tree: ["selfbench", "--speed", "--feature", "nosuch"],
                                                  2, "unknown feature profile 'nosuch'"),
    "the feature asked for under the plain profile": (
        run_exp('[[workloads]]\nname = "fork-memory"\nparams = { mib = 16, feature = 1 }'), 2,
        "feature = 1 asks for a feature, but the profile 'none' has no switch"),
    "selftests as a string": (run_exp('selftests = "cow"'), 2, "selftests = 'cow': allowed: a list of text"),
    "source as a number": (lambda t, tree: ["run", "--experiment", raw_file(t, 'source = 5\n[[kernels]]\n'
                                                                           'label = "a"\n')], 2,
                           "source = 5: allowed: text"),
    "max_boots below boots in a file": (run_exp("[design]\nboots = 5\nmax_boots = 2\nuntil = 0.02"), 2,
                                        "max_boots = 2 is below boots = 5"),
    "NaN as a fraction": (run_exp("[design]\nuntil = nan"), 2, "until must be a fraction between 0 and 1"),
    "accel as a bool": (run_exp("[guest]\naccel = true"), 2, "accel must be one of auto, kvm, tcg, got True"),
    "TOML that does not parse": (run_exp("[guest\nmemory_mib = 1"), 2, "not valid TOML"),
    "experiment that is a folder": (lambda t, tree: ["run", "--experiment", str(t / "inputs")], 2,
                                    "is a folder; give a TOML file"),
    "experiment that is a binary file": (lambda t, tree: ["run", "--experiment", str(t / "inputs" / "blob.bin")],
                                         2, "not a text file (not UTF-8)"),
    "empty CPU set": (lambda t, tree: ["run", "--kernel-src", tree, "--pin", "3-1"], 2,
                      "pin = '3-1': an empty CPU set"),
    # --- every subcommand's flags -----------------------------------------------------------------
    "attribute with a negative size": (lambda t, tree: ["attribute", "--kernel-src", tree, "--series", SERIES(t),
                                                        "--param", "sizes_mib=-5"], 2,
                                       "sizes_mib = '-5': allowed: comma-separated whole numbers"),
    "attribute with a practical of 5": (lambda t, tree: ["attribute", "--kernel-src", tree, "--series", SERIES(t),
                                                         "--practical", "5"], 2,
                                        "--practical must be a fraction between 0 and 1"),
    "report with a practical of 5": (lambda t, tree: ["report", stored(t, "good"), "--practical", "5"], 2,
                                     "--practical must be a fraction between 0 and 1 (0.01: ±1%), got 5.0"),
    "report with no resamples": (lambda t, tree: ["report", stored(t, "good"), "--resamples", "0"], 2,
                                 "--resamples must be a whole number of at least 100, got 0"),
    "report with a negative noise bound": (lambda t, tree: ["report", stored(t, "good"), "--noisy-cv", "-1"], 2,
                                           "--noisy-cv must be a fraction between 0 and 1"),
    "report with claims that are not a file": (lambda t, tree: ["report", stored(t, "good"), "--claims",
                                                                str(t / "inputs")], 2, "--claims"),
    "report with a typo in a claim": (lambda t, tree: ["report", stored(t, "good"), "--claims",
                                                       str(t / "inputs" / "claims.toml")], 2,
                                      "unknown key 'metirc'; did you mean 'metric'?"),
    "report of a run that is not there": (lambda t, tree: ["report", stored(t, "nothing-here")], 2, "no run at"),
    "nightly with a threshold of 0": (lambda t, tree: ["nightly", "--run", stored(t, "good"), "--threshold", "0"], 2,
                                      "--threshold must be a fraction between 0 and 1"),
    "nightly with no previous nights": (lambda t, tree: ["nightly", "--run", stored(t, "good"), "--nights", "0"], 2,
                                        "--nights must be a whole number of at least 1, got 0"),
    "nightly of a run with a broken record": (lambda t, tree: ["nightly", "--run", stored(t, "boot-zero")], 2,
                                              "field boot = 0: allowed: a whole number from 1"),
    "calibrate with an effect of 2": (lambda t, tree: ["calibrate", "--kernel-src", tree, "--effect", "2"], 2,
                                      "--effect must be a fraction between 0 and 1"),
    "calibrate with no simulations": (lambda t, tree: ["calibrate", "--simulate", "--sims", "0"], 2,
                                      "--sims must be a whole number of at least 1, got 0"),
    "calibrate analysing a run that is an array": (lambda t, tree: ["calibrate", "--analyse", stored(t, "array")],
                                                   2, "must be a JSON object (the run's facts), got list"),
    "selfbench with no boots": (lambda t, tree: ["selfbench", "--boots", "0"], 2,
                                "--boots must be a whole number of at least 1, got 0"),
    "selfbench with a missing tree": (lambda t, tree: ["selfbench", "--kernel-src", str(t / "no-tree")], 2,
                                      "does not exist"),
    "remote with a cell timeout of 0": (lambda t, tree: ["remote", "--experiment", "cow-pte-v4", "--host", HOST,
                                                         "--cell-timeout", "0"], 2,
                                        "--cell-timeout must be a whole number of at least 1, got 0"),
    "remote with a negative size for its runners": (lambda t, tree: ["remote", "--experiment", "cow-pte-v4",
                                                                      "--host", HOST, "--", "--workload", "fork-memory",
                                                                      "--param", "mib=-5"], 2,
                                                     "parameter mib = -5: allowed: whole numbers from 1"),
    "remote with a bad host": (lambda t, tree: ["remote", "--experiment", "cow-pte-v4", "--host", "ci@h:x:y"], 2,
                               "bad host 'ci@h:x:y'"),
    "verify with no jobs": (lambda t, tree: ["verify", "--kernel-src", tree, "--series", SERIES(t), "--jobs", "0"],
                            2, "--jobs must be a whole number of at least 1, got 0"),
    "verify with an unknown kernel": (lambda t, tree: ["verify", "--kernel-src", tree, "--series", SERIES(t),
                                                       "--kernels", "stock,bogus"], 2,
                                      "unknown kernel variant ['bogus']"),
    "boot with a file to put that is not there": (lambda t, tree: ["boot", "--kernel-src", tree, "--put",
                                                                   str(t / "inputs" / "repro"), "--", "./repro"], 2,
                                                  "--put: no such file or folder"),
    "history without a database": (lambda t, tree: ["history", "fork_ns", "--history", str(t / "inputs" / "no.db")],
                                   2, "no history database there"),
    "history with a bad metric": (lambda t, tree: ["history", "fork ns; drop", "--history", str(t / "inputs" / "x")],
                                  2, "allowed: a metric name such as fork_ns"),
    "history plotted to a text file": (lambda t, tree: ["history", "fork_ns", "--history",
                                                        str(t / "inputs" / "history.sqlite"), "--plot", "x.txt"],
                                       2, "--plot x.txt: allowed: a .png file"),
    "export with an ftp artifacts URL": (lambda t, tree: ["export", stored(t, "good"), "--artifacts-url",
                                                          "ftp://u:pw@host/x"], 2,
                                         "--artifacts-url 'ftp://host/x': allowed: an http(s):// or file:// URL"),
    # --- stored files -----------------------------------------------------------------------------
    "export of a run whose metadata is an array": (lambda t, tree: ["export", stored(t, "array")], 2,
                                                   "metadata.json: must be a JSON object"),
    "export of a run whose kernel.json is an array": (lambda t, tree: ["export", stored(t, "kernel-json")], 2,
                                                     "kernel.json: must be a JSON object, got list"),
    "report of a record that is a list": (lambda t, tree: ["report", stored(t, "list-record")], 2,
                                          "fork-memory.jsonl:2: a record must be a JSON object, got list"),
    "report of a record that is a string": (lambda t, tree: ["report", stored(t, "string-record")], 2,
                                            "fork-memory.jsonl:1: a record must be a JSON object, got str"),
    "report of a metric that is a string": (lambda t, tree: ["report", stored(t, "string-metric")], 2,
                                            "fork-memory.jsonl:1: field fork_ns = 'fast': allowed: a number"),
    "export of a run whose kernels are a list": (lambda t, tree: ["export", stored(t, "kernels-list")], 2,
                                                 "field kernels: allowed: an object of label -> object"),
    "resume of a run whose tasks are not objects": (lambda t, tree: ["run", "--resume", stored(t, "tasks-text")], 2,
                                                     "field kernels.k.tasks: allowed: a list of objects"),
    "merge of a run whose metadata is an array": (lambda t, tree: ["merge", stored(t, "array"), stored(t, "good")],
                                                  2, "must be a JSON object"),
}

RECORD = {"fork_ns": 1000, "child_vmrss_kb": 10, "child_vmpte_kb": 4, "boot": 1, "mib": 64}


def write_run(root, name, meta=None, lines=None):
    run = root / name
    (run / "k").mkdir(parents=True)
    meta = {"run_id": name, "kernels": {"k": {"status": "ok"}}, "accel": "tcg"} if meta is None else meta
    (run / "metadata.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    lines = [json.dumps(RECORD)] * 3 if lines is None else lines
    (run / "k" / "fork-memory.jsonl").write_text("".join(line + "\n" for line in lines))


@pytest.fixture
def runs(world):
    tmp_path, tree = world
    results = tmp_path / "results"
    write_run(results, "good")
    write_run(results, "array", meta="[1, 2]")
    write_run(results, "kernel-json")
    write_run(results, "tasks-text", meta={"run_id": "x", "kernels": {"k": {"tasks": ["a"]}}})
    (results / "kernel-json" / "k" / "kernel.json").write_text("[]")
    write_run(results, "kernels-list", meta={"run_id": "x", "kernels": ["k"]})
    write_run(results, "list-record", lines=[json.dumps(RECORD), "[1, 2]", json.dumps(RECORD)])
    write_run(results, "string-record", lines=['"a record"', json.dumps(RECORD)])
    write_run(results, "string-metric", lines=[json.dumps({**RECORD, "fork_ns": "fast"})])
    write_run(results, "boot-zero", lines=[json.dumps({**RECORD, "boot": 0})])
    (tmp_path / "inputs" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "inputs" / "claims.toml").write_text('[[claims]]\nworkload = "fork-memory"\nmetirc = "x"\n'
                                                     'value = 1\n')
    return tmp_path, tree


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_request_is_refused_before_any_work(name, runs, capsys):
    refused(CASES[name], *runs, capsys)         # nothing built, cached or written anywhere


def test_at_least_40_cases_over_every_subcommand(tmp_path):
    (tmp_path / "inputs").mkdir()
    commands = {argv(tmp_path, "TREE")[0] for argv, _, _ in CASES.values()}
    assert len(CASES) >= 40
    # no case repeats another: each expects its own refusal
    assert len({message for _, _, message in CASES.values()}) == len(CASES)
    assert {"attribute", "verify", "calibrate", "selfbench", "remote", "report", "nightly", "export",
            "history", "run", "merge"} <= commands


def test_a_run_with_no_records_says_so(runs, capsys):
    tmp_path, _ = runs
    run = tmp_path / "results" / "good"
    (run / "k" / "fork-memory.jsonl").write_text("")
    assert cli.main(["report", str(run)]) == 0
    assert "the run has no records" in capsys.readouterr().err


def test_non_finite_numbers_are_flagged_when_read_and_refused_when_written(runs, capsys, tmp_path):
    from harness import results, stored
    from harness.errors import GuestError
    path = tmp_path / "results" / "good" / "k" / "fork-memory.jsonl"
    path.write_text('{"fork_ns": NaN, "boot": 1}\n{"fork_ns": Infinity, "boot": 1}\n{"fork_ns": 5, "boot": 1}\n')
    recs = stored.records(path, ["fork_ns"])
    assert [r["fork_ns"] for r in recs] == [None, None, 5]
    assert "non-finite values in fork_ns" in capsys.readouterr().err
    store = results.RunStore("new", root=tmp_path / "results")
    append = store.appender("k", "fork-memory")
    with pytest.raises(GuestError, match=r"non-finite number in \['fork_ns'\]"):
        append({"fork_ns": float("nan")})
    assert not (store.dir / "k" / "fork-memory.jsonl").exists() or \
        (store.dir / "k" / "fork-memory.jsonl").read_text() == ""
