"""Merge partial runs into one: the cells of a CI matrix (`harness run --cell ID`), each a run of
some of an experiment's kernels, become one run that stats and report read like a local run.

The runs must be of one experiment, one accelerator and one timing mode, and no kernel may come
from two of them. Each kernel's folder is copied; metadata.json holds the union of the kernels, the
experiment with all of them (in the order of the experiment file when it can be read), the ids of
the runs merged (merged_from) and each run's host (hosts).
"""
import datetime
import shutil
import tomllib
from pathlib import Path

from harness.errors import UserError
from harness.experiment import Experiment
from harness.results import RunStore

# kept from the first run that has them
RUN_FACTS = ("accel", "accel_reason", "qemu", "timing", "image")


def mode(meta):
    """(accel, timing) of a run; accel None when no kernel got as far as booting."""
    return meta.get("accel"), meta.get("timing", "real")


def check(stores):
    names = {s.id: (s.metadata.get("experiment") or {}).get("name") for s in stores}
    if None in names.values():
        missing = [i for i, n in names.items() if n is None]
        raise UserError(f"runs {missing} have no experiment in their metadata.json; cannot merge them")
    if len(set(names.values())) > 1:
        raise UserError("these runs are of different experiments: "
                        + ", ".join(f"{i}: {n}" for i, n in names.items()))
    accels = {s.id: mode(s.metadata)[0] for s in stores if mode(s.metadata)[0]}
    timings = {s.id: mode(s.metadata)[1] for s in stores}
    if len(set(accels.values())) > 1 or len(set(timings.values())) > 1:
        raise UserError("these runs used different accelerators or timing modes, so their times "
                        "cannot be compared: " + ", ".join(
                            f"{s.id}: accel={accels.get(s.id, '?')} timing={timings[s.id]}"
                            for s in stores))
    owner = {}
    for s in stores:
        for label in s.metadata.get("kernels", {}):
            if label in owner:
                raise UserError(f"kernel '{label}' is in run {owner[label]} and in run {s.id}; "
                                f"each kernel may come from one run only")
            owner[label] = s.id


def file_order(experiment):
    """The kernel labels in the order of the experiment file, or [] when it cannot be read."""
    path = experiment.get("path")
    try:
        data = tomllib.loads(Path(path).read_text()) if path else {}
    except (OSError, tomllib.TOMLDecodeError):
        return []
    return [k["label"] for k in data.get("kernels", []) if "label" in k]


def merged_experiment(stores):
    first = stores[0].metadata["experiment"]
    specs = {}
    for s in stores:
        for spec in s.metadata["experiment"].get("kernels", []):
            specs.setdefault(spec["label"], spec)
    order = file_order(first)
    labels = [label for label in order if label in specs] + [label for label in specs if label not in order]
    return {**first, "kernels": [specs[label] for label in labels]}


def command(experiment, fallback):
    try:
        return Experiment.from_dict(experiment).command_line()
    except (KeyError, TypeError, ValueError):
        return fallback


def merge(run_dirs, out=None):
    """One run from the partial runs run_dirs (folders or ids); out: the new run's folder
    (default a new id in results/). Returns the new run's RunStore."""
    stores = [RunStore.open(d) for d in run_dirs]
    if not stores:
        raise UserError("name at least one run to merge")
    ids = [s.id for s in stores]
    if len(set(ids)) < len(ids):
        raise UserError(f"a run is named twice: {ids}")
    check(stores)
    if out:
        out = Path(out)
        if out.exists() and any(out.iterdir()):
            raise UserError(f"{out} exists and is not empty; name a new folder with --out")
        store = RunStore(out.name, root=out.parent)
    else:
        store = RunStore()
    metas = [s.metadata for s in stores]
    experiment = merged_experiment(stores)
    labels = [k["label"] for k in experiment["kernels"]]
    kernels = {label: info for m in metas for label, info in m.get("kernels", {}).items()}
    kernels = {label: kernels[label] for label in labels if label in kernels} | kernels
    shas = list(dict.fromkeys(m.get("harness_sha", "unknown") for m in metas))
    finished = [m.get("finished") for m in metas]
    meta = {
        "run_id": store.id,
        "started": min((m["started"] for m in metas if m.get("started")),
                       default=store.metadata["started"]),
        "merged": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "merged_from": ids,
        "harness_sha": shas[0] if len(shas) == 1 else " | ".join(shas),
        "host": metas[0].get("host", {}),
        "hosts": {s.id: s.metadata.get("host", {}) for s in stores},
        "command": command(experiment, metas[0].get("command", "?")),
        "experiment": experiment,
        "kernels": kernels,
        "failed": sorted({label for m in metas for label in m.get("failed", [])}),
    }
    if all(finished):
        meta["finished"] = max(finished)
    for key in RUN_FACTS:
        value = next((m[key] for m in metas if key in m), None)
        if value is not None:
            meta[key] = value
    new_failures = [f for m in metas for f in m.get("selftest_new_failures", [])]
    if new_failures:
        meta["selftest_new_failures"] = new_failures
    for s in stores:
        for label in s.metadata.get("kernels", {}):
            if (s.dir / label).is_dir():
                shutil.copytree(s.dir / label, store.dir / label)
    store.metadata = meta
    store.save()
    return store
