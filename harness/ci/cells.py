"""The cells of an experiment, for a fleet: groups of workloads, each run on ALL the experiment's
kernels by one host, so that a comparison of kernels only ever meets measurements of one host.

A cell holds the workloads of one name whose parameters differ only in what a comparison group
ignores (harness.results.NOT_PARAMS: feature, repetitions, warm-ups): fork-memory with feature=0 and
feature=1 is one cell (the feature's fork is compared with the plain fork of the same boot's host),
fault-latency with pattern=seq and with pattern=random are two. The experiment's kernel selftests,
when it has any, are one more cell, `selftests`.

Ids are stable and readable: the workload's name when it makes one cell, else the name followed by
the parameters that tell its cells apart (`fault-latency.pattern=seq.side=child`); when those
values are long or hold characters a CI job name cannot, the cells are numbered instead
(`fork-latency.1`, `fork-latency.2`, in the experiment's order).
"""
import re
from dataclasses import dataclass, field, replace

from harness.errors import UserError

SELFTESTS = "selftests"
MAX_VALUE = 16
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,+-]+")


@dataclass
class Cell:
    id: str
    workloads: list = field(default_factory=list)   # indices into the experiment's workloads
    selftests: bool = False


def condition_params():
    from harness.results import NOT_PARAMS
    return NOT_PARAMS


def group_key(spec, ignore):
    """(name, parameters that split comparison groups): workloads with one key are one cell."""
    return spec.name, tuple(sorted((k, str(v)) for k, v in spec.params.items() if k not in ignore))


def cell_ids(name, keys):
    """The ids of a workload's cells, one per group key (in order)."""
    if len(keys) == 1:
        return [name]
    params = [dict(k[1]) for k in keys]
    differ = sorted({p for d in params for p in d if len({d.get(p) for d in params}) > 1})
    ids = [name + "".join(f".{p}={d[p]}" for p in differ if p in d) for d in params]
    values = [d[p] for d in params for p in differ if p in d]
    if len(set(ids)) < len(ids) or any(len(v) > MAX_VALUE or not SAFE_VALUE.fullmatch(v) for v in values):
        return [f"{name}.{i}" for i in range(1, len(keys) + 1)]
    return ids


def cells(workloads, selftests=()):
    """The cells of a list of WorkloadSpec (and of the kernel selftests), in the experiment's order
    (a cell's place is that of its first workload)."""
    ignore = condition_params()
    groups = {}
    for i, spec in enumerate(workloads):
        groups.setdefault(group_key(spec, ignore), []).append(i)
    by_name = {}
    for key in groups:
        by_name.setdefault(key[0], []).append(key)
    ids = {}
    for name, keys in by_name.items():
        ids.update(zip(keys, cell_ids(name, keys)))
    found = [Cell(ids[key], indices) for key, indices in groups.items()]
    if selftests:
        found.append(Cell(SELFTESTS, [], True))
    if len({c.id for c in found}) < len(found):
        raise UserError(f"two cells of this experiment have one id: {[c.id for c in found]}")
    return found


def whole(exp):
    """(every WorkloadSpec, every selftest) of the experiment exp is a part of (or is)."""
    whole_exp = exp.whole_experiment()
    return list(whole_exp.workloads), list(whole_exp.selftests)


def of(exp):
    """The cells of the whole experiment that exp is (a part of)."""
    return cells(*whole(exp))


def select(exp, ids):
    """The experiment with only the cells named: their workloads (in the experiment's order), on
    every kernel. It remembers the whole experiment and the ids, so that its reproducer command
    line (Experiment.command_line) is the whole experiment's with these --cell flags."""
    workloads, selftests = whole(exp)
    found = cells(workloads, selftests)
    known = [c.id for c in found]
    unknown = [i for i in ids if i not in known]
    if unknown:
        kernels = [i for i in unknown if i in {k.label for k in exp.kernels}]
        hint = (f"; a cell is a group of workloads run on every kernel, and {kernels} is a kernel"
                if kernels else "")
        raise UserError(f"no cell {unknown} in experiment '{exp.name}' (it has: {', '.join(known)}; "
                        f"see `harness cells`){hint}")
    chosen = [c for c in found if c.id in ids]
    indices = sorted(i for c in chosen for i in c.workloads)
    return replace(exp, workloads=[workloads[i] for i in indices],
                   selftests=selftests if any(c.selftests for c in chosen) else [],
                   cells=[c.id for c in chosen],
                   whole={"workloads": [{"name": w.name, "params": dict(w.params)} for w in workloads],
                          "selftests": selftests})
