"""The house rules, checked on the source (ast): no import cycle among the harness's modules; only
the CLI imports the CLI or argparse; nothing outside the target touches the SSH channel; no
module over 500 lines, no function over 80; docs/architecture.md's module map names every module."""
import ast
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
    allowed = {"harness.guest.ssh", "harness.guest.target", "harness.guest.machine"}
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
