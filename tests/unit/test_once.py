"""Things done once, checked on the source (ast), each rule with a test that it finds a breach:
every import is used."""
import ast

from harness import paths

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
