"""LAVA: a run's kernels and workloads as LAVA jobs, and LAVA's results back as a run.

`harness lava export RUN --out DIR --artifacts-url URL` writes, per kernel and workload, a job for
LAVA's `qemu` device type (jobs/<kernel>--<workload>.yaml): deploy to tmpfs the kernel the run
built and the harness's guest image, with the workload (its driver, its C library, the guest
library and lava_report.py) laid into that image by LAVA's own overlay mechanism; boot it on
QEMU's microvm machine as the harness does; and run one inline test definition per parameter set,
whose steps run the driver and report every figure through lava-test-case --measurement/--units.
The files the jobs fetch are put beside them (<kernel>/bzImage, workloads/<name>.tar.gz, the
image as rootfs.ext4, a link into the cache) for publishing under URL. Every job is validated
with LAVA's own schema (Debian's lava-common: lava_common.schemas) before it is written.

`harness lava import DIR RESULTS...` reads LAVA's test-case results (the server's
/results/ID/yaml export: dicts with suite, name, result, measurement, unit; a JSON list or a
REST page's "results" with those fields is read the same way) and writes a run folder (metadata.json and <kernel>/<workload>.jsonl) that
`harness report` reads: a test definition's name says which kernel, workload and parameter set
it ran (harness.<kernel>.<workload>.p<N>), a case's name which field of which record.
"""
import json
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

from harness import cache, feature, stored, ui
from harness.errors import InfraError, UserError
from harness.experiment import Experiment
from harness.guest import image as image_mod
from harness.measure import activity
from harness.measure.workloads import Workload
from harness.results import RunStore

GUEST = "/opt/harness"
DEBIAN_PYTHON = "/usr/lib/python3/dist-packages"     # where Debian's lava-common lives
MOUNTS = [f"grep -q ' {d} ' /proc/mounts 2>/dev/null || mount -t {t} {t} {d}"
          for t, d in (("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev"))]
DEFINITION = re.compile(r"^harness\.(?P<label>.+)\.(?P<workload>[a-z0-9-]+)\.p(?P<set>\d+)$")


def lava_schema():
    """lava_common.schemas, LAVA's job schema (Debian's lava-common; voluptuous)."""
    try:
        from lava_common import schemas
    except ImportError:
        if DEBIAN_PYTHON not in sys.path and Path(DEBIAN_PYTHON, "lava_common").is_dir():
            sys.path.append(DEBIAN_PYTHON)       # after the venv's own: only what it lacks
            return lava_schema()
        raise InfraError("LAVA's job schema is not installed: apt-get install lava-common "
                         "(harness setup installs it)") from None
    return schemas


def validate(job):
    """Raise UserError when LAVA's schema refuses the job (with the path of the bad key)."""
    schemas = lava_schema()
    from voluptuous import Invalid
    try:
        schemas.validate(job, strict=True)
    except Invalid as exc:
        raise UserError(f"LAVA job '{job.get('job_name')}' does not validate: {exc}") from None


def definition(label, workload, index, params, profile=None):
    """The inline test definition of one parameter set of a workload."""
    name = f"harness.{label}.{workload.name}.p{index}"
    driver = " ".join(["python3", f"{GUEST}/{workload.name}/{workload.manifest['driver']}",
                       *workload.argv(params, profile)[2:]])
    units = " ".join(f"--unit {m}={u}" for m, u in sorted(workload.manifest.get("metrics", {}).items()))
    records = f"/tmp/{name}.jsonl"
    return {"from": "inline", "name": name, "path": f"inline/{name}.yaml",
            "repository": {
                "metadata": {"format": "Lava-Test Test Definition 1.0", "name": name,
                             "description": f"{workload.name} {json.dumps(params, sort_keys=True)} "
                                            f"on {label} (kernel-harness)"},
                "run": {"steps": [*MOUNTS, f"{driver} > {records}",
                                  f"python3 {GUEST}/common/lava_report.py {units} {records}"]}}}


def job(exp, label, kernel, workload, params_sets, base_url, run_id):
    """One LAVA job: this kernel, the image, every parameter set of one workload."""
    # The harness's image starts dropbear as PID 1 (harness-init); LAVA drives a shell on the
    # serial console instead: init=/bin/sh, and the test mounts the pseudo file systems itself.
    cmdline = ("console=ttyS0 root=/dev/vda rw panic=-1 reboot=t init=/bin/sh "
               + (exp.extra_cmdline or "")).strip()
    return {
        "device_type": "qemu",
        "job_name": f"kernel-harness {label} {workload.name} ({kernel.get('release', '?')})",
        "priority": "medium", "visibility": "public",
        "timeouts": {"job": {"minutes": 20 + 10 * len(params_sets)}, "action": {"minutes": 15},
                     "connection": {"minutes": 2}},
        "metadata": {"harness.run": run_id, "harness.kernel": label, "harness.workload": workload.name,
                     "harness.release": kernel.get("release", ""), "harness.build": kernel.get("build_key", "")},
        "context": {"arch": "amd64", "machine": "microvm,acpi=off", "cpu": "max",
                    "memory": exp.memory_mib, "extra_options": [f"-smp {exp.cpus}"]},
        "actions": [
            {"deploy": {"to": "tmpfs", "timeout": {"minutes": 10}, "images": {
                "kernel": {"image_arg": f"-kernel {{kernel}} -append '{cmdline}'",
                           "url": f"{base_url}/{label}/bzImage"},
                "rootfs": {"image_arg": "-drive id=root,file={rootfs},format=raw,if=none "
                                        "-device virtio-blk-device,drive=root",
                           "url": f"{base_url}/rootfs.ext4", "format": "ext4",
                           "overlays": {"lava": True, "harness": {
                               "url": f"{base_url}/workloads/{workload.name}.tar.gz",
                               "format": "tar", "path": GUEST}}}}}},
            {"boot": {"method": "qemu", "media": "tmpfs", "timeout": {"minutes": 5},
                      "prompts": ["# "]}},
            {"test": {"timeout": {"minutes": 10 * len(params_sets)},
                      "definitions": [definition(label, workload, i, p, feature.of(exp)) for i, p in params_sets]}},
        ],
    }


def bundle(workload, dest):
    """workloads/<name>.tar.gz: the staged workload tree (driver, library, common/)."""
    with tempfile.TemporaryDirectory(prefix="harness-lava-") as tmp:
        staged = workload.stage(Path(tmp) / "w")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(dest, "w:gz") as tar:
            for path in sorted(staged.rglob("*")):
                if "__pycache__" not in path.parts:
                    tar.add(path, arcname=str(path.relative_to(staged)), recursive=False)


def export(run_dir, out, base_url=None):
    """Write the jobs (and the files they fetch) of a run into out; returns the job paths."""
    from harness.analysis import stats
    meta = stored.metadata(Path(stats.run_path(run_dir)) / "metadata.json")
    if "experiment" not in meta:
        raise UserError(f"{run_dir}: no experiment in its metadata.json; export a run of harness run")
    exp = Experiment.from_dict(meta["experiment"])
    out = Path(out).resolve()
    base_url = (base_url or out.as_uri()).rstrip("/")
    sets = {}
    for spec in exp.workloads:
        sets.setdefault(spec.name, []).append(spec.params)
    written, index = [], {"run": meta.get("run_id"), "experiment": meta["experiment"], "jobs": {}}
    for label, kernel in meta.get("kernels", {}).items():
        found = cache.find("builds", kernel.get("build_key") or "-", "kernel.json")
        if not found:
            ui.warn(f"{label}: its kernel is not in this machine's cache (not built?): no job")
            continue
        (out / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(found / "bzImage", out / label / "bzImage")
        for name, params_list in sets.items():
            workload = Workload.load(name)
            params_sets = list(enumerate(workload.params(p) for p in params_list))
            doc = job(exp, label, kernel, workload, params_sets, base_url, meta.get("run_id", ""))
            validate(doc)
            path = out / "jobs" / f"{label}--{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            written.append(path)
            for i, params in params_sets:
                index["jobs"][f"harness.{label}.{name}.p{i}"] = {"kernel": label, "workload": name,
                                                                 "params": params}
    if not written:
        raise UserError(f"{run_dir}: none of its kernels is in this machine's cache (built "
                        f"elsewhere, or not built): build them here first (harness build)")
    for name in sets:
        bundle(Workload.load(name), out / "workloads" / f"{name}.tar.gz")
    img = image_mod.GuestImage(exp.image, exp.mirror).cached()
    rootfs = out / "rootfs.ext4"
    if img and not rootfs.exists():
        rootfs.symlink_to(img.path)
    index["kernels"] = meta.get("kernels", {})
    (out / "harness-lava.json").write_text(json.dumps(index, indent=1) + "\n")
    return written


# --- results back -------------------------------------------------------------------------------

def read_results(path):
    """LAVA's test cases from a results file: a YAML or JSON list (or a page with 'results'), each
    a dict with suite, name, result and, for a measurement, measurement and unit."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: not a LAVA results file: {exc}") from None
    if isinstance(data, dict):
        data = data.get("results")
    if not isinstance(data, list) or not all(isinstance(c, dict) and "name" in c for c in data):
        raise UserError(f"{path}: not a LAVA results file (expected a list of test cases with "
                        f"suite, name, result)")
    return data


def _value(case):
    measurement, unit = case.get("measurement"), case.get("unit") or case.get("units")
    if measurement in (None, "", "None"):
        return None
    number = float(measurement)
    if unit == "bool":
        return bool(number)
    return int(number) if number.is_integer() else number


def records_of(cases, index):
    """{(kernel, workload): [record, ...]} from the cases of the harness's test definitions."""
    grouped, failures = {}, []
    for case in cases:
        suite = re.sub(r"^\d+_", "", str(case.get("suite", "")))    # LAVA numbers its definitions
        m = DEFINITION.match(suite)
        if not m or suite not in index["jobs"]:
            continue
        entry = index["jobs"][suite]
        name = str(case["name"])
        # pass/fail, or the server's result codes (0 pass, 1 fail, 2 skip, 3 unknown)
        if str(case.get("result")) in ("fail", "1") or "." not in name:
            failures.append(f"{suite}: {name} {case.get('result')}")
            continue
        field, _, i = name.rpartition(".")
        value = _value(case)
        if value is None and "." in field:            # a word: <field>.<word>.<i>
            field, _, value = field.partition(".")
        if value is None or not i.isdigit():
            continue
        rec = grouped.setdefault((entry["kernel"], entry["workload"], suite, int(i)), {
            "type": "record", "workload": entry["workload"], "rep": int(i), **entry["params"],
            "lava_suite": suite, "lava_job": str(case.get("job", ""))})
        rec[field] = value
    out = {}
    profile = feature.load((index.get("experiment") or {}).get("feature"))
    for (label, workload, _, _), rec in sorted(grouped.items()):
        rec = stored.renamed(rec)           # results of jobs exported before profiles existed
        rec = activity.label(rec, profile) if activity.has_evidence(rec, profile) else rec
        out.setdefault((label, workload), []).append(rec)
    return out, failures


def import_results(export_dir, results, store=None):
    """A run folder from LAVA's results of the jobs `export` wrote; returns the RunStore."""
    index_path = Path(export_dir) / "harness-lava.json"
    if not index_path.exists():
        raise UserError(f"{export_dir}: no harness-lava.json; give the folder harness lava export wrote")
    index = json.loads(index_path.read_text())
    cases = [c for path in results for c in read_results(path)]
    grouped, failures = records_of(cases, index)
    if not grouped and failures:
        raise UserError("the harness's test cases in these results failed, none gave a record: "
                        + "; ".join(failures[:5]))
    if not grouped:
        raise UserError("no case of the harness's test definitions in these results "
                        f"({len(cases)} cases read)")
    store = store or RunStore()
    store.update(experiment=index["experiment"], lava={"source_run": index.get("run"),
                 "results": [str(Path(p).resolve()) for p in results], "failed_cases": failures},
                 accel="lava", timing="lava")
    for label, info in index.get("kernels", {}).items():
        if any(k == label for k, _ in grouped):
            store.update_kernel(label, **{k: v for k, v in info.items() if k not in ("tasks", "boots")})
    for (label, workload), recs in grouped.items():
        store.kernel_dir(label)
        append = store.appender(label, workload)
        for rec in recs:
            append(rec)
        store.add_task(label, {"task": workload, "workload": workload, "status": "ok", "boot": 1,
                               "records": len(recs)})
    return store


def main(args):
    if args.lava_command == "export":
        jobs = export(args.run, args.out, args.artifacts_url)
        ui.console.print(f"lava: {len(jobs)} jobs validated against LAVA's schema in {Path(args.out) / 'jobs'}")
        for path in jobs:
            ui.out(str(path))
        return 0
    store = import_results(args.export_dir, args.results)
    ui.console.print(f"lava: results imported into {store.dir} (harness report {store.id})")
    return 0

