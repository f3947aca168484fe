"""Issue #21: a fuzz test of the experiment loader and the stored-file readers. A seeded generator
(HARNESS_FUZZ_SEED to replay one) mutates a valid experiment file and valid run files into random
TOML and JSON shapes: wrong types, NaN and infinities, unknown keys, nested tables, binary junk.
No input may crash (exit 70, or any exception but UserError/InfraError), and none may start work
or write anything before it is refused. Each test stops after FUZZ_SECONDS (bounded time in CI)."""
import json
import math
import os
import random
import time

import pytest

from harness import cli, crash, stored
from harness.errors import InfraError, UserError
from tests.conftest import make_fake_tree

FUZZ_SECONDS = float(os.environ.get("HARNESS_FUZZ_SECONDS", "3"))
SEED = int(os.environ.get("HARNESS_FUZZ_SEED", "21"))

BASE = {
    "name": "fuzz", "source": "TREE", "series": "SERIES",
    "kernels": [{"label": "stock"}, {"label": "patched", "patched": True, "fragments": ["guest-base"]}],
    "workloads": [{"name": "fork-memory", "params": {"mib": 64}, "repeat": 1}],
    "claims": [{"workload": "fork-memory", "metric": "fork_ns", "value": 1.5, "unit": "ns"}],
    "selftests": ["cow"],
    "guest": {"memory_mib": 1024, "cpus": 1, "accel": "tcg"},
    "design": {"boots": 2, "order": "alternating"},
    "build": {"jobs": 2},
}


def scalar(rng):
    return rng.choice([
        lambda: rng.randint(-10**6, 10**6), lambda: rng.choice([0, 1, -1, 2**63 - 1]),
        lambda: rng.uniform(-1e9, 1e9), lambda: rng.choice([math.nan, math.inf, -math.inf, 0.5]),
        lambda: rng.choice([True, False]),
        lambda: "".join(rng.choice("ab/.-_ :@\\\"'é\t#[]{}=") for _ in range(rng.randint(0, 12))),
        lambda: rng.choice(["", "false", "true", "cow-pte", "../../x", "fork-memory", "nan", "-5"]),
    ])()


def value(rng, depth=0):
    kind = rng.random()
    if depth < 2 and kind < 0.15:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and kind < 0.3:
        return {key(rng): value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return scalar(rng)


def key(rng):
    return rng.choice(["label", "patched", "pacthed", "name", "params", "repeat", "value", "kernels",
                       "boots", "max_boots", "memory_mib", "cpus", "accel", "x", "é", "a b", "mib"])


def mutate(rng, data, depth=0):
    data = json.loads(json.dumps(data))
    for _ in range(rng.randint(1, 4)):
        target = data
        while isinstance(target, (dict, list)) and target and rng.random() < 0.5 and depth < 3:
            nxt = rng.choice(list(target.values()) if isinstance(target, dict) else target)
            if not isinstance(nxt, (dict, list)):
                break
            target = nxt
        if isinstance(target, dict):
            action = rng.random()
            if action < 0.5 and target:
                target[rng.choice(list(target))] = value(rng)
            elif action < 0.8:
                target[key(rng)] = value(rng)
            elif target:
                target.pop(rng.choice(list(target)))
        elif isinstance(target, list):
            if target and rng.random() < 0.5:
                target[rng.randrange(len(target))] = value(rng)
            else:
                target.append(value(rng))
    return data


def toml_key(k):
    return k if k and all(c.isalnum() or c in "_-" for c in k) and k.isascii() else json.dumps(k)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(max(min(v, 2**63 - 1), -2**63))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(data):
    """TOML for a dict: scalars and inline values first, then tables, then arrays of tables."""
    lines, tables, arrays = [], [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{toml_key(k)} = {toml_value(v)}")
    for k, v in tables:
        lines += [f"[{toml_key(k)}]"] + [f"{toml_key(a)} = {toml_value(b)}" for a, b in v.items()]
    for k, entries in arrays:
        for e in entries:
            lines += [f"[[{toml_key(k)}]]"] + [f"{toml_key(a)} = {toml_value(b)}" for a, b in e.items()]
    return "\n".join(lines) + "\n"


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


@pytest.fixture
def place(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    tree = make_fake_tree(tmp_path / "linux")
    series = tmp_path / "series"
    series.mkdir()
    (series / "0001-a.patch").write_text("Subject: [PATCH 1/1] a\n\n---\n")
    return tmp_path, str(tree), str(series)


def test_fuzzed_experiment_files_are_refused_or_loaded_never_a_crash(place, capsys):
    from harness import experiment as ex, validate
    tmp_path, tree, series = place
    rng = random.Random(SEED)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    before = snapshot(tmp_path)
    deadline, cases, refused = time.monotonic() + FUZZ_SECONDS, 0, 0
    while time.monotonic() < deadline:
        path = inputs / f"case-{cases}.toml"
        if rng.random() < 0.05:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))))
        else:
            data = mutate(rng, {**BASE, "source": tree, "series": series})
            path.write_text(to_toml(data))
        try:
            exp = ex.load(path)
            validate.request(exp)
        except (UserError, InfraError) as exc:
            refused += 1
            assert "\n" not in str(exc).strip() or "last lines" in str(exc), str(exc)
        except Exception as exc:            # a crash: the case is kept in the message to replay it
            pytest.fail(f"case {cases} (seed {SEED}) crashed: {type(exc).__name__}: {exc}\n{path.read_text()}")
        cases += 1
    print(f"{cases} experiment files in {FUZZ_SECONDS:.0f} s, {refused} refused (seed {SEED})")
    assert cases >= 20 and refused > 0
    assert [p for p in snapshot(tmp_path) if not p[0].startswith("inputs")] == \
        [p for p in before if not p[0].startswith("inputs")]            # nothing built or stored
    for i in range(min(cases, 5)):      # a few through the whole command: exit 0 or 2, never 70
        code = cli.main(["cells", "--experiment", str(inputs / f"case-{i}.toml")])
        assert code in (0, 2, 3), capsys.readouterr().err


GOOD_RECORD = {"fork_ns": 1000, "child_vmrss_kb": 10, "child_vmpte_kb": 4, "boot": 1, "mib": 64}
GOOD_META = {"run_id": "r", "kernels": {"k": {"status": "ok"}}, "accel": "tcg", "timing": "real"}


def test_fuzzed_run_files_are_read_or_refused_never_a_crash(place, capsys):
    from harness.analysis import stats
    tmp_path, _, _ = place
    rng = random.Random(SEED + 1)
    run = tmp_path / "results" / "r"
    (run / "k").mkdir(parents=True)
    deadline, cases, refused = time.monotonic() + FUZZ_SECONDS, 0, 0
    while time.monotonic() < deadline:
        meta = GOOD_META if rng.random() < 0.5 else mutate(rng, GOOD_META)
        lines = [json.dumps(GOOD_RECORD if rng.random() < 0.5 else
                            (mutate(rng, GOOD_RECORD) if rng.random() < 0.8 else value(rng)))
                 for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.1:
            lines.append(lines[-1][:-3] if lines else "{")     # a line cut short, or a broken one
        (run / "metadata.json").write_text(json.dumps(meta) if rng.random() < 0.95 else "[{")
        (run / "k" / "fork-memory.jsonl").write_text("".join(f"{line}\n" for line in lines))
        try:
            stored.metadata(run / "metadata.json")
            stored.records(run / "k" / "fork-memory.jsonl", ["fork_ns", "child_vmrss_kb"])
            stats.load_run(run)
        except UserError:
            refused += 1
        except Exception as exc:
            pytest.fail(f"case {cases} (seed {SEED + 1}) crashed: {type(exc).__name__}: {exc}\n"
                        f"{json.dumps(meta)}\n" + "\n".join(lines))
        cases += 1
        if cases <= 3:                      # the whole command too: exit 0 or 2, never 70
            code = cli.main(["report", str(run), "--resamples", "100"])
            assert code != crash.EXIT_CODE, capsys.readouterr().err
    print(f"{cases} runs in {FUZZ_SECONDS:.0f} s, {refused} refused (seed {SEED + 1})")
    assert cases >= 20 and refused > 0
