"""The house rules, checked on the source (ast): no import cycle among the harness's modules; only
the CLI imports the CLI or argparse; nothing outside the target touches the SSH channel; no
module over 500 lines, no function over 80; docs/architecture.md's module map names every module."""
import ast
import functools
import re

import pytest

from harness import paths

HARNESS = paths.ROOT / "harness"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def module_name(path):
    parts = list(path.relative_to(paths.ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(HARNESS.rglob("*.py"))}
PYTHON_FILES = sorted(HARNESS.rglob("*.py")) + sorted((paths.ROOT / "workloads").rglob("*.py"))


def imports(path):
    """The harness modules (and argparse) this file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:        # `from harness.x import y`: y may be a module of its own
                found.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module)
    return found


def graph():
    return {name: {m for m in imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def cycle(edges):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_cycle_among_the_harness_modules():
    edges = graph()
    # a package imports nothing of its own modules here, so an edge to "harness" is no cycle
    edges = {k: {m for m in v if m != "harness"} for k, v in edges.items()}
    assert cycle(edges) is None


def test_a_cycle_is_found():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_only_the_cli_imports_the_cli_or_argparse():
    offenders = [name for name, path in MODULES.items()
                 if not name.startswith("harness.cli") and name != "harness.__main__"
                 and {m for m in imports(path) if m == "argparse" or m.startswith("harness.cli")}]
    assert offenders == []


def test_nothing_outside_the_target_touches_the_ssh_channel():
    """harness.guest.ssh is the channel; only the target (and the machine that starts it) use it."""
    allowed = {"harness.guest.ssh", "harness.guest.target", "harness.guest.machine", "harness.guest.remote"}
    users = sorted(name for name, path in MODULES.items()
                   if "harness.guest.ssh" in imports(path) and name not in allowed)
    assert users == []
    reach = re.compile(r"\.(channel|guest)\.(run|put|get|client|close|try_connect)\b")
    for path in PYTHON_FILES:
        if module_name(path) not in allowed:
            assert not reach.search(path.read_text()), f"{path} reaches into the SSH channel"


def test_host_commands_run_only_through_tools():
    """harness.tools is the one place where host commands start (process handling, logging and
    missing-tool errors live there)."""
    users = sorted(name for name, path in MODULES.items()
                   if "subprocess" in imports(path) and name != "harness.tools")
    assert users == []


def test_no_workload_is_named_in_the_generic_pipeline():
    """What a workload needs (its table, its COW PTE evidence) comes from its manifest."""
    names = [p.parent.name for p in (paths.ROOT / "workloads").glob("*/manifest.toml")]
    for module in ("harness.pipeline", "harness.measure.workloads", "harness.guest.target"):
        text = MODULES[module].read_text()
        assert [n for n in names if f'"{n}"' in text or f"'{n}'" in text] == [], module


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: str(p.relative_to(paths.ROOT)))
def test_module_and_function_sizes(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_the_architecture_map_names_every_module():
    page = (paths.ROOT / "docs" / "architecture.md").read_text()
    section = page.split("## Module map", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(harness/[\w/]+\.py)`", section))
    files = {str(p.relative_to(paths.ROOT)) for p in HARNESS.rglob("*.py")}
    assert files - named == set(), "modules missing from docs/architecture.md's map"
    assert named - files == set(), "docs/architecture.md's map names modules that do not exist"


# ---- the rules of the second step (issue #24): a rule that another branch makes true is marked
# xfail(strict=True) "until the <name> branch lands": the lead removes the mark at that merge ----

TESTS = sorted((paths.ROOT / "tests").rglob("*.py"))


def _names(paths_, kinds):
    """Per name, the first file that defines it (kinds "def": functions, classes and the attributes a
    method sets on self) or the set of names the files read (kinds "use": attribute and name loads,
    imported names, identifier-like strings, which getattr and dispatch tables use)."""
    found = {} if kinds == "def" else set()
    for path in paths_:
        for node in ast.walk(ast.parse(path.read_text())):
            if kinds == "def":
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    found.setdefault(node.name, path)
                elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                      and isinstance(node.value, ast.Name) and node.value.id == "self"):
                    found.setdefault(node.attr, path)
            elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Store):
                found.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                found.add(node.id)
            elif isinstance(node, ast.alias):
                found.add(node.name.split(".")[-1])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                found.add(node.value)
    return found


@functools.lru_cache
def hooks_for_tests(production, tests):
    """Names the production code defines and never uses that the tests use: hooks for a test."""
    defined, used, wanted = _names(production, "def"), _names(production, "use"), _names(tests, "use")
    return sorted(n for n in defined if not n.startswith("__") and n not in used and n in wanted)


def test_no_production_name_exists_only_for_a_test():
    assert hooks_for_tests(tuple(PYTHON_FILES), tuple(TESTS)) == []


def test_a_test_only_hook_is_found(tmp_path):
    (tmp_path / "prod.py").write_text("class Run:\n    def go(self, m):\n        self.current = m\n"
                                      "        self.used = m\n        return self.used\n\n\nRun().go(2)\n")
    (tmp_path / "test_prod.py").write_text("def test_x(run):\n    run.go(1)\n    assert run.current\n")
    assert hooks_for_tests((tmp_path / "prod.py",), (tmp_path / "test_prod.py",)) == ["current"]


def subclasses_of_the_pipeline(modules):
    """(module, class) for every class that subclasses one of harness.pipeline's classes."""
    pipeline = modules["harness.pipeline"]
    own = {n.name for n in ast.parse(pipeline.read_text()).body if isinstance(n, ast.ClassDef)}
    names = own | {f"pipeline.{n}" for n in own} | {f"harness.pipeline.{n}" for n in own}
    return sorted((name, node.name) for name, path in modules.items()
                  if path != pipeline and "harness.pipeline" in imports(path)
                  for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
                  and any(ast.unparse(base) in names for base in node.bases))


def test_nothing_subclasses_the_pipeline():
    """What a command does differently is a service it calls, not a Run with methods swapped."""
    assert subclasses_of_the_pipeline(MODULES) == []


def test_a_subclass_of_the_pipeline_is_found(tmp_path):
    (tmp_path / "pipeline.py").write_text("class Run:\n    pass\n")
    (tmp_path / "other.py").write_text("from harness.pipeline import Run\n\n\nclass Mine(Run):\n    pass\n")
    found = subclasses_of_the_pipeline({"harness.pipeline": tmp_path / "pipeline.py",
                                        "harness.other": tmp_path / "other.py"})
    assert found == [("harness.other", "Mine")]


VERDICT_WORDS = ("faster", "slower", "smaller", "larger", "higher", "lower", "no significant difference",
                 "no practical difference", "not judged", "not enough data", "no ratio", "not comparable")
TEXT_TESTS = {"startswith", "endswith", "contains", "match", "search", "fullmatch", "find", "split",
              "partition", "count"}


def verdict_text_reads(path):
    """Lines where the code reads a verdict's words back out of its text: a string method or `in`
    on anything named verdict, or a string method looking for a verdict word."""
    lines = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in TEXT_TESTS:
            words = [c.value for a in node.args for c in ast.walk(a)
                     if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            if ("verdict" in ast.unparse(node.func.value).lower() + " ".join(map(ast.unparse, node.args)).lower()
                    or any(w.startswith(VERDICT_WORDS) for w in words)):
                lines.add(node.lineno)
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            if isinstance(node.left, ast.Constant) and any("verdict" in ast.unparse(c).lower()
                                                           for c in node.comparators):
                lines.add(node.lineno)
    return sorted(lines)


def test_no_verdict_is_parsed_from_its_text():
    """A verdict is a value (direction, size, evidence) printed as prose at the edge; nothing in
    the harness reads its words back."""
    found = {name: verdict_text_reads(path) for name, path in MODULES.items()}
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_a_verdict_read_from_its_text_is_found(tmp_path):
    (tmp_path / "m.py").write_text('a = row["verdict"].startswith(("faster", "slower"))\n'
                                   'b = "slower" in str(rows.iloc[0]["verdict"])\n'
                                   'c = table["verdict"].str.startswith(CALLED)\n'
                                   'd = text.startswith("no significant difference")\n'
                                   'e = verdict.direction == "faster"\n'
                                   'f = name.startswith("fork")\n')
    assert verdict_text_reads(tmp_path / "m.py") == [1, 2, 3, 4]


def test_the_pipeline_is_small():
    assert len(MODULES["harness.pipeline"].read_text().splitlines()) < 250


def feature_mentions(path, word="cow"):
    """Lines of a Python file that name the feature outside comments (strings and names count)."""
    import io
    import tokenize
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return sorted({t.start[0] for t in tokens if t.type != tokenize.COMMENT and word in t.string.lower()})


def test_the_harness_names_no_feature():
    """Everything the harness knows of COW PTE lives in its profile (features/); only comments
    (the profile loader's) may name it."""
    found = {str(p.relative_to(paths.ROOT)): feature_mentions(p) for p in HARNESS.rglob("*.py")}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_a_feature_named_in_code_is_found(tmp_path):
    (tmp_path / "m.py").write_text('# the COW PTE profile loader\nA = "CONFIG_COW_PTE"\ncow_pte = 1\nB = 2\n')
    assert feature_mentions(tmp_path / "m.py") == [2, 3]
