"""Cells for a fleet (harness.ci.cells): groups of workloads, each on every kernel, so that the kernels a
comparison meets were measured by one host; `harness cells`, `harness run --cell`, the reproducer."""
import json
import shlex

import pytest

from harness.ci import cells
from harness import cli, experiment
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


class FakeRunner:
    """A runner for remote's dispatcher (no SSH): a dead one raises as a refused connection."""

    def __init__(self, spec, dead=False):
        self.spec, self.dead, self.ran = spec, dead, []

    def run_cell(self, cell_id, experiment, extra_args, workdir, command, out_dir, timeout):
        if self.dead:
            raise ConnectionRefusedError("Unable to connect")
        self.ran.append(cell_id)
        return 0, out_dir, ""

    def close(self):
        pass


def test_remote_shards_by_cells_and_queues_a_dead_hosts_cell_again(exp_file, tmp_path, capsys):
    from harness.ci import remote
    name, ids = remote.plan(exp_file)
    assert name == exp_file and ids == [c.id for c in cells.of(experiment.load(exp_file))]
    assert remote.plan(exp_file, cells=["selftests", "fork-memory"])[1] == ["fork-memory", "selftests"]
    with pytest.raises(UserError, match="no cell"):
        remote.plan(exp_file, cells=["cow-pte"])
    todo = [remote.Cell(i) for i in ids]
    dead, live = FakeRunner("ci@dead", dead=True), FakeRunner("ci@live")
    job = {"experiment": str(exp_file), "extra_args": [], "workdir": "~/h", "command": "harness",
           "timeout": None, "parts": tmp_path}
    errors = remote._Dispatch(todo, [dead, live], job).run()
    assert list(errors) == ["ci@dead"] and "Unable to connect" in errors["ci@dead"]
    assert sorted(live.ran) == sorted(ids) and all(c.status == "ok" for c in todo)
    assert [a["host"] for a in todo[0].attempts] == ["ci@dead", "ci@live"]
    assert todo[0].run_dir == tmp_path / f"{ids[0]}-2"
    assert "queued again for another host" in capsys.readouterr().err
