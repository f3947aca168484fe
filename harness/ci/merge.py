"""Merge partial runs into one: the cells of a CI matrix (`harness run --cell ID`: a group of
workloads on every kernel), each a run on one host, become one run that stats and report read like
a local run.

The runs must be of one experiment, one accelerator and one timing mode (harness.results.
stored.mode). A kernel is in every run, each with other workloads: its folders are joined. Records
(<workload>.jsonl) of one name from several runs are appended, never overwritten, and every record
line carries "host" (the hostname of the run it came from, unless the record has one) and
"from_run" (that run's id), so that kernels are only compared within one host. Other files of one
name (console.log, dmesg-*.log, ...) are all kept: the first under its name, another with different
content as <stem>.<run-id><suffix>. metadata.json holds the union of the kernels (their facts
merged: failed if any run failed, tasks concatenated), the whole experiment (or the cells merged),
the ids of the runs merged (merged_from) and each host's facts (hosts: hostname -> cpu, host
kernel, qemu, accel, timing, runs).
"""
import datetime
import filecmp
import json
import shutil
import tomllib
from pathlib import Path

from harness import safety, stored
from harness.ci import cells as cells_mod
from harness.errors import UserError
from harness.experiment import Experiment, resolved
from harness.results import RunStore

# kept from the first run that has them
RUN_FACTS = ("accel", "accel_reason", "qemu", "timing", "image")
# a kernel's facts that belong to one boot: kept per run, under "runs"
BOOT_FACTS = ("status", "error", "error_type", "boot_seconds", "boot_attempts", "boot_phases",
              "guest_uname", "guest_clocksource", "qemu_argv", "cached_build")
STATUS_ORDER = ("failed", "interrupted")     # a kernel that failed in any run failed


mode = stored.mode         # (accel, timing): the one place a run's mode is computed


def hostname(meta, run_id):
    """The host a run measured on; a run that does not say is a host of its own."""
    return (meta.get("host") or {}).get("hostname") or f"unknown:{run_id}"


def check(stores):
    names = {s.id: (s.metadata.get("experiment") or {}).get("name") for s in stores}
    if None in names.values():
        missing = [i for i, n in names.items() if n is None]
        raise UserError(f"runs {missing} have no experiment in their metadata.json; cannot merge them")
    if len(set(names.values())) > 1:
        raise UserError("these runs are of different experiments: "
                        + ", ".join(f"{i}: {n}" for i, n in names.items()))
    modes = {s.id: mode(s.metadata) for s in stores}
    booted = {m for m in modes.values() if m[0]}
    if len(booted) > 1:
        raise UserError("these runs used different accelerators or timing modes, so their times "
                        "cannot be compared: " + ", ".join(
                            f"{i}: accel={a or '?'} timing={t or '?'}" for i, (a, t) in modes.items()))


def file_order(experiment):
    """The kernel labels in the order of the experiment file, or [] when it cannot be read."""
    path = experiment.get("path")
    try:
        data = tomllib.loads(Path(path).read_text()) if path else {}
    except (OSError, tomllib.TOMLDecodeError):
        return []
    return [k["label"] for k in data.get("kernels", []) if "label" in k]


def merged_cells(experiments):
    """The experiment of the runs' cells together: the whole one when they cover all its cells."""
    first = experiments[0]
    if not first.get("whole") or any(e.get("cells") is None for e in experiments):
        return first                    # whole runs, or per-kernel runs of an older harness
    try:
        part = Experiment.from_dict(first)
        ids = {c for e in experiments for c in e["cells"]}
        every = [c.id for c in cells_mod.of(part)]
        joined = part.only([c for c in every if c in ids])
    except (KeyError, TypeError, ValueError, UserError):
        return first
    if joined.cells == every:
        return {**first, "workloads": joined.whole["workloads"], "selftests": joined.whole["selftests"],
                "cells": None, "whole": None}
    return {**first, **{k: joined.to_dict()[k] for k in ("workloads", "selftests", "cells", "whole")}}


def merged_experiment(stores):
    experiments = [s.metadata["experiment"] for s in stores]
    specs = {}
    for e in experiments:
        for spec in e.get("kernels", []):
            specs.setdefault(spec["label"], spec)
    first = merged_cells(experiments)
    order = file_order(first)
    labels = [label for label in order if label in specs] + [label for label in specs if label not in order]
    return {**first, "kernels": [specs[label] for label in labels]}


def command(experiment, fallback):
    try:
        return Experiment.from_dict(experiment).command_line()
    except (KeyError, TypeError, ValueError):
        return fallback


def merged_kernel(parts):
    """One kernel's facts from the runs that have it, [(run id, host, facts)]: the first run's,
    with the tasks of all (each with its run and host) and the worst status (failed if any run
    failed); each run's boot facts under "runs"; build facts that differ under "differs"."""
    (first_id, _, first), *_ = parts
    info = {**first, "tasks": [], "runs": {}}
    for run_id, host, facts in parts:
        info["tasks"] += [{"run_id": run_id, "host": host, **t} for t in facts.get("tasks", [])]
        info["runs"][run_id] = {"host": host, **{k: facts[k] for k in BOOT_FACTS if k in facts}}
        if facts is first:
            continue
        if facts.get("boot_dmesg"):
            info["boot_dmesg"] = info.get("boot_dmesg", []) + facts["boot_dmesg"]
        for key, value in facts.items():
            if key in BOOT_FACTS or key in ("tasks", "runs", "boot_dmesg"):
                continue
            if key not in info:
                info[key] = value
            elif info[key] != value:
                info.setdefault("differs", {}).setdefault(key, {first_id: first.get(key)})[run_id] = value
    statuses = [facts.get("status") for _, _, facts in parts]
    worst = next((s for s in STATUS_ORDER if s in statuses), None) or \
        next((s for s in statuses if s != "ok"), "ok")
    if worst is not None:
        bad = next((facts for _, _, facts in parts if facts.get("status") == worst), {})
        info.update(status=worst, **{k: bad[k] for k in ("error", "error_type") if k in bad})
    return info


def host_facts(stores):
    """hostname -> the facts of the host (cpu, host kernel, qemu, accel, timing) and its runs."""
    hosts = {}
    for s in stores:
        m = s.metadata
        name = hostname(m, s.id)
        if name not in hosts:
            host = m.get("host") or {}
            hosts[name] = {**{k: host[k] for k in ("cpu", "cpus", "kernel") if k in host},
                           **{k: m[k] for k in ("qemu", "accel", "accel_reason") if k in m},
                           "timing": mode(m)[1], "runs": []}
        hosts[name]["runs"].append(s.id)
    return hosts


def join_records(src, dst, host, run_id):
    """Append src's records to dst, each with "host" and "from_run" where it has none (the
    pipeline writes "host" itself; a record without one is an older run's). Read through
    harness.stored.records, the one rule for a damaged line: a last line cut short by a crash is
    left out with a warning (appended to, it would sit in the middle of the merged file), a broken
    line before it is an error."""
    lines = []
    for rec in stored.records(src):
        if rec.get("host") is None or rec.get("from_run") is None:
            rec = {**rec, "host": rec.get("host") or host, "from_run": rec.get("from_run") or run_id}
        lines.append(json.dumps(rec, sort_keys=True) + "\n")
    with open(dst, "a") as out:
        out.writelines(lines)


def join_file(path, target, host, run_id):
    """Copy one file of a run to target, keeping what is there: records appended, another file of
    the same name kept beside it as <stem>.<run-id><suffix> (the same content once)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        join_records(path, target, host, run_id)
    elif not target.exists():
        shutil.copy2(path, target)
    elif not filecmp.cmp(path, target, shallow=False):
        shutil.copy2(path, target.with_name(f"{path.stem}.{run_id}{path.suffix}"))


def join_folder(src, dst, host, run_id):
    for path in sorted(src.rglob("*")):
        if path.is_file() and not path.is_symlink():
            join_file(path, safety.inside(dst, path.relative_to(src), "file"), host, run_id)


def open_runs(run_dirs):
    stores = [RunStore.open(d) for d in run_dirs]
    if not stores:
        raise UserError("name at least one run to merge")
    ids = [s.id for s in stores]
    if len(set(ids)) < len(ids):
        raise UserError(f"a run is named twice: {ids}")
    check(stores)
    for s in stores:        # labels become folder names: a runner's data must not lead outside
        for label in list(s.metadata.get("kernels") or {}) + [
                k.get("label") for k in (s.metadata.get("experiment") or {}).get("kernels", [])]:
            safety.label(label, f"run {s.id}: kernel label")
    return stores


def new_store(out):
    if not out:
        return RunStore()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; name a new folder with --out")
    return RunStore(out.name, root=out.parent)


def merged_metadata(stores, store):
    metas = [s.metadata for s in stores]
    experiment = merged_experiment(stores)
    hosts = {s.id: hostname(s.metadata, s.id) for s in stores}
    labels = [k["label"] for k in experiment["kernels"]]
    labels += [label for m in metas for label in m.get("kernels", {}) if label not in labels]
    kernels = {label: merged_kernel([(s.id, hosts[s.id], s.metadata["kernels"][label]) for s in stores
                                     if label in s.metadata.get("kernels", {})])
               for label in dict.fromkeys(labels) if any(label in m.get("kernels", {}) for m in metas)}
    shas = list(dict.fromkeys(m.get("harness_sha", "unknown") for m in metas))
    finished = [m.get("finished") for m in metas]
    meta = {
        "run_id": store.id,
        "started": min((m["started"] for m in metas if m.get("started")),
                       default=store.metadata["started"]),
        "merged": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "merged_from": [s.id for s in stores],
        "harness_sha": shas[0] if len(shas) == 1 else " | ".join(shas),
        "host": metas[0].get("host", {}),
        "hosts": host_facts(stores),
        "command": command(experiment, metas[0].get("command", "?")),
        "experiment": experiment,
        "kernels": kernels,
        "failed": sorted({label for m in metas for label in m.get("failed", [])}),
    }
    if all(finished):
        meta["finished"] = max(finished)
    for key in RUN_FACTS:
        value = next((m[key] for m in metas if m.get(key) is not None), None)
        if value is not None:
            meta[key] = value
    new_failures = [f for m in metas for f in m.get("selftest_new_failures", [])]
    if new_failures:
        meta["selftest_new_failures"] = new_failures
    return meta


def merge(run_dirs, out=None):
    """One run from the partial runs run_dirs (folders or ids); out: the new run's folder
    (default a new id in results/). Returns the new run's RunStore."""
    stores = open_runs(run_dirs)
    store = new_store(out)
    meta = merged_metadata(stores, store)
    for s in stores:
        host = hostname(s.metadata, s.id)
        labels = set(s.metadata.get("kernels", {}))
        for path in sorted(s.dir.iterdir()):
            if path.is_dir() and path.name in labels:
                join_folder(path, safety.inside(store.dir, path.name, "kernel folder"), host, s.id)
            elif path.is_file() and not path.is_symlink() and not path.name.startswith(
                    ("metadata.json", ".lock", "experiment.toml")):
                join_file(path, store.dir / path.name, host, s.id)
    store.metadata = meta
    store.save()
    store.save_experiment(resolved(Experiment.from_dict(meta["experiment"])))   # the whole, not a cell
    return store
