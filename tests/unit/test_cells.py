"""Cells for a fleet (harness.cells): groups of workloads, each on every kernel, so that the kernels a
comparison meets were measured by one host; `harness cells`, `harness run --cell`, the reproducer."""
import json
import shlex

import pytest

from harness import cells, cli, experiment
from harness.errors import UserError

EXPERIMENT = """name = "cells-fake"
source = "/src/linux"
series = "s.mbox"
selftests = ["cow"]

[[kernels]]
label = "stock"

[[kernels]]
label = "cow-pte"
patched = true

[[workloads]]
name = "fork-memory"
params = { mib = 1024, cow_pte = [0, 1] }

[[workloads]]
name = "fault-latency"
params = { mib = 512, pattern = "seq", side = ["child", "parent"], cow_pte = [0, 1] }

[[workloads]]
name = "fork-latency"
params = { sizes_mib = "0,1,2,4,8,16,32,64,128", reps = 30, thp = ["nohuge", "huge"], cow_pte = [0, 1] }
repeat = 2

[[workloads]]
name = "fork-latency"
params = { sizes_mib = "0,1,2,4,8,16,32,64,128,256", thp = "nohuge" }
"""


@pytest.fixture
def exp_file(tmp_path):
    path = tmp_path / "cells-fake.toml"
    path.write_text(EXPERIMENT)
    return path


def test_cells_group_what_one_comparison_needs(exp_file):
    exp = experiment.load(exp_file)
    found = cells.of(exp)
    # cow_pte and repetitions never split a cell; parameters that make another group do; a
    # workload whose distinguishing values are long is numbered; the selftests are a cell of their own
    assert [c.id for c in found] == ["fork-memory", "fault-latency.side=child", "fault-latency.side=parent",
                                     "fork-latency.1", "fork-latency.2", "fork-latency.3", "selftests"]
    assert [len(c.workloads) for c in found] == [2, 2, 2, 4, 4, 1, 0]
    part = exp.only(["fork-latency.2", "fault-latency.side=child"])
    # every kernel, the cells' workloads in the experiment's order, no selftests
    assert [k.label for k in part.kernels] == ["stock", "cow-pte"] and part.selftests == []
    assert [(w.name, w.params.get("side"), w.params.get("thp")) for w in part.workloads] == \
        [("fault-latency", "child", None), ("fault-latency", "child", None)] + [("fork-latency", None, "huge")] * 4
    assert part.cells == ["fault-latency.side=child", "fork-latency.2"]
    assert exp.only(["selftests"]).workloads == [] and exp.only(["selftests"]).selftests == ["cow"]
    with pytest.raises(UserError, match="no cell \\['stock'\\].*fork-memory.*is a kernel"):
        exp.only(["stock"])


def test_a_cells_reproducer_selects_the_same_cell(exp_file):
    exp = experiment.load(exp_file)
    p = cli.parser()
    for cell in cells.of(exp):
        part = exp.only([cell.id])
        line = part.command_line()
        assert line.endswith(f" --cell {shlex.quote(cell.id)}")
        args = p.parse_args(shlex.split(line)[1:])
        again = cli.experiment(args).only(args.cell)
        assert again.cells == [cell.id] and again.selftests == part.selftests
        assert [(w.name, {k: str(v) for k, v in w.params.items()}) for w in again.workloads] == \
            [(w.name, {k: str(v) for k, v in w.params.items()}) for w in part.workloads]
    # kept in metadata.json: a resumed cell is the same cell, with the same reproducer
    part = exp.only(["fork-memory"])
    back = experiment.Experiment.from_dict(json.loads(json.dumps(part.to_dict())))
    assert back.command_line() == part.command_line() and back.workloads == part.workloads


def test_harness_cells_lists_ids_and_commands(exp_file, capsys):
    assert cli.main(["cells", "--experiment", str(exp_file), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in listed] == [c.id for c in cells.of(experiment.load(exp_file))]
    assert all(c["kernels"] == ["stock", "cow-pte"] for c in listed)
    assert listed[0]["workloads"] == [{"name": "fork-memory", "params": {"mib": 1024, "cow_pte": 0}},
                                      {"name": "fork-memory", "params": {"mib": 1024, "cow_pte": 1}}]
    assert listed[0]["command"].endswith("--cell fork-memory")
    assert cli.main(["cells", "--experiment", str(exp_file)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[1].startswith("fault-latency.side=child\tharness run --experiment ")
