"""Things done once, checked on the source (ast), each rule with a test that it finds a breach:
every import is used; the feature profile is resolved from the experiment by the Run, not by the
parts it hands it to; the feature states are named in one place; benchmark rows printed by one
function."""
import ast

from harness import feature, paths

HARNESS = paths.ROOT / "harness"


def unused_imports(path):
    """(line, name) of every name an import binds and the module never uses (an import marked
    `noqa: F401` re-exports on purpose; a package's __init__ re-exports)."""
    if path.name == "__init__.py":
        return []
    text = path.read_text()
    tree, lines = ast.parse(text), text.splitlines()
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and "F401" not in lines[node.lineno - 1]:
            found += [(node.lineno, name) for a in node.names
                      for name in [(a.asname or a.name).split(".")[0]] if name not in used]
    return found


def test_every_import_is_used():
    unused = {str(p.relative_to(paths.ROOT)): u for p in sorted(HARNESS.rglob("*.py")) if (u := unused_imports(p))}
    assert unused == {}


def test_an_unused_import_is_found(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import json\nimport sqlite3\nfrom os import path, sep  # noqa: F401\n\n"
                    "def f():\n    return json.dumps({})\n")
    assert unused_imports(path) == [(2, "sqlite3")]


def test_benchmark_rows_are_printed_by_one_function(monkeypatch, capsys):
    """selfbench and selfbench --speed print their (name, value, note) rows through ui.rows."""
    from argparse import Namespace
    from harness import speedbench, ui
    ui.rows([("a", "1 s", "note"), ("a longer name", "22.5 s", "")], 8)
    assert capsys.readouterr().out.splitlines() == ["  a                   1 s  note",
                                                    "  a longer name    22.5 s  "]
    monkeypatch.setattr(speedbench, "cli_rows", lambda times: [("harness --help", "median 0.50 s", "3 runs")])
    assert speedbench.main(Namespace(feature=None, times=3, builds=False)) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  harness --help   median 0.50 s  3 runs"]
    for name in ("selfbench.py", "speedbench.py"):
        text = (HARNESS / name).read_text()
        assert "ui.rows(" in text and "for name, value, note in" not in text, name


def calls(path, module, function):
    """Lines where path calls module.function (also through `import module as name`)."""
    tree = ast.parse(path.read_text())
    names = {module}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names |= {a.asname for a in node.names if a.name == module and a.asname}
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == function
            and isinstance(n.func.value, ast.Name) and n.func.value.id in names]


def callers(module, function):
    return sorted(str(p.relative_to(HARNESS)) for p in HARNESS.rglob("*.py") if calls(p, module, function))


def test_the_profile_is_resolved_from_the_experiment_by_the_run():
    """pipeline.Run resolves the experiment's profile once and hands it to the kernels, the
    sessions and the output; validate checks the request and lava exports jobs without a Run."""
    assert callers("feature", "of") == ["ci/lava.py", "pipeline.py", "validate.py"]


def test_a_profile_derived_again_is_found(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from harness import feature as feature_mod\n\n"
                    "class Session:\n    def __init__(self, exp):\n        self.profile = feature_mod.of(exp)\n")
    assert calls(path, "feature", "of") == [5]


def state_names(path):
    """Lines of path that bind a name to a state's word ("off", "active", ...)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign):
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            if any(isinstance(v, ast.Constant) and v.value in feature.STATES for v in values):
                found.append(node.lineno)
    return found


def test_the_feature_states_are_named_once():
    """harness.feature names the states; every other module uses its names."""
    found = {str(p.relative_to(HARNESS)) for p in HARNESS.rglob("*.py") if state_names(p)}
    assert found == {"feature.py"}


def test_a_state_named_again_is_found(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('PLAIN, ACTIVE = "off", "active"\nLABEL = "fork"\n')
    assert state_names(path) == [1]


def test_old_field_names_are_renamed_by_the_reader_only():
    """harness.stored renames the field names of runs stored before profiles in what it reads;
    no consumer renames (lava's import renames the records it makes of LAVA's results)."""
    assert callers("stored", "renamed") == ["ci/lava.py"] and not hasattr(feature, "renamed")
    assert sorted(str(p.relative_to(HARNESS)) for p in HARNESS.rglob("*.py")
                  if "LEGACY_FIELDS" in p.read_text()) == ["feature.py", "stored.py"]


def test_a_rename_outside_the_reader_is_found(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from harness import stored as s\n\ndef g(r):\n    return s.renamed(r)\n")
    assert calls(path, "stored", "renamed") == [4]


def test_a_run_stored_before_profiles_reads_with_the_generic_names(tmp_path):
    import json
    from harness import stored
    old = {"config_cow_pte": "y", "cow_pte_requested": True, "cow_pte": "active", "fork_ns": 5, "boot": 1}
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "fork-memory.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(
        {**old, "feature_state": "inactive"}) + "\n")
    (tmp_path / "metadata.json").write_text(json.dumps({"run_id": "old", "kernels": {"k": {
        "config_cow_pte": "y", "status": "ok", "tasks": [{"task": "1:fork-memory", "cow_pte": ["active"]}]}}}))
    first, second = stored.records(tmp_path / "k" / "fork-memory.jsonl", ["fork_ns"])
    assert first == {"feature_config": "y", "feature_requested": True, "feature_state": "active",
                     "fork_ns": 5, "boot": 1}
    assert second["feature_state"] == "inactive" and "cow_pte" not in second     # a new name wins
    kernel = stored.run(tmp_path).kernels["k"]
    assert kernel.facts["feature_config"] == "y" and "config_cow_pte" not in kernel.facts
    assert kernel.tasks == [{"task": "1:fork-memory", "feature_state": ["active"]}]


TYPED_READERS = ("analysis/report.py", "analysis/stats.py", "analysis/tables.py", "analysis/variants.py",
                 "analysis/calibrate.py", "ci/history.py")


def metadata_reads(path):
    """Lines of path that read a field of stored.Run from a run's dict (`m.get("accel")`,
    `metas[0]["attribution"]`: m or meta, or an item of metas)."""
    from dataclasses import fields
    from harness import stored
    names = {f.name for f in fields(stored.Run)} - {"path", "data"}

    def a_run(node):
        if isinstance(node, ast.Subscript):
            node = node.value
        return isinstance(node, ast.Name) and node.id in ("m", "meta", "metas")

    found = []
    for n in ast.walk(ast.parse(path.read_text())):
        key = None
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get" and n.args \
                and a_run(n.func.value):
            key = n.args[0]
        elif isinstance(n, ast.Subscript) and a_run(n.value):
            key = n.slice
        if isinstance(key, ast.Constant) and key.value in names:
            found.append(n.lineno)
    return found


def test_the_statistics_and_the_report_read_runs_typed(tmp_path):
    """stats.load_run gives a stored.Run, and the analysis reads its fields, not the dict."""
    from harness import stored
    from harness.analysis import report, stats
    from tests.unit import runs
    folder = runs.build(tmp_path, "r1", {"stock": {"release": "6.1.0"}},
                        {("stock", "fork-memory"): [{"fork_ns": 5, "boot": 1}]},
                        qemu="QEMU 7.2.0", accel_reason="KVM failed its probe", host={"cpu": "Fake", "cpus": 2})
    run, df = stats.load_run(folder)
    assert isinstance(run, stored.Run) and (run.run_id, run.qemu, run.host["cpu"]) == ("r1", "QEMU 7.2.0", "Fake")
    items = dict(report.header([run]))["ul"]
    assert "accelerator: tcg (KVM failed its probe)" in items and "QEMU: QEMU 7.2.0" in items
    assert "host CPU: Fake × 2" in items and "timing mode: real" in items
    found = {name: lines for name in TYPED_READERS if (lines := metadata_reads(HARNESS / name))}
    assert found == {}


def test_a_field_read_from_the_dict_is_found(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('def f(m, metas):\n    return m.get("accel"), metas[0]["attribution"], m.get("release")\n')
    assert metadata_reads(path) == [2, 2]
