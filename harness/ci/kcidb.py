"""A run as a KCIDB report (KernelCI's common results format): checkouts, builds and tests.

One checkout per kernel source (tree + series: its Message-Ids, titles and apply results), one
build per kernel of the run (its cache key is its id: the same kernel in many runs is one build),
and tests: a `boot` per boot, a `harness.<workload>` per task (a workload run in one boot), a `harness.<workload>.<metric>`
per figure (status DONE, the median as its number, the verdict against the stock kernel in misc)
and a `kselftest.<name>.<case>` per selftest case (`kselftest_<way>.` under a feature profile's launcher).

Every id is "<origin>:<local id>", the origin being the CI system's name that KernelCI gives a
submitter (lower case, digits, underscore). Logs are linked by URL: `artifacts_url` is where the
run's folder is published (a CI artifact URL); without it, file:// URLs of the run's folder.
The document is validated against the kcidb-io package's schema in the tests, not here (the
harness does not depend on it); `kcidb-submit` reads it from standard input.
"""
import json
import math
import numbers
import re
from pathlib import Path

from harness import feature, results, safety, stored, ui
from harness.errors import UserError

SCHEMA_VERSION = {"major": 5, "minor": 3}       # kcidb-io's LATEST when this was written
ORIGIN = "kernel_harness"
EXCERPT = 16384                                  # the schema's maxLength of a log excerpt


def check_origin(origin):
    if not re.fullmatch(r"[a-z0-9_]+", origin or ""):
        raise UserError(f"a KCIDB origin is lower-case letters, digits and '_' only, got '{origin}'")
    return origin


def path_part(text):
    """A component of a KCIDB test path: letters, digits, '_' and '-' only."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", str(text)).strip("_") or "_"


def local_id(*parts):
    return ":".join(re.sub(r"\s+", "_", str(p)) for p in parts)


class Links:
    """URLs of files in the run's folder: under artifacts_url, or file:// URLs."""

    def __init__(self, run_dir, artifacts_url=None):
        self.run_dir = Path(run_dir).resolve()
        self.base = artifacts_url.rstrip("/") if artifacts_url else None

    def __call__(self, rel):
        path = self.run_dir / rel
        if not path.exists():
            return None
        return f"{self.base}/{rel}" if self.base else path.as_uri()


def tail(path, limit=EXCERPT):
    if not path.exists():
        return None
    text = path.read_text(errors="replace").replace("\0", "")
    return text[-limit:] if text else None


def plain(value):
    """JSON-able value: numpy scalars to Python, NaN to None."""
    return safety.each_leaf(value, _plain_leaf)


def _plain_leaf(value):
    # numpy's scalars register as numbers.Integral / numbers.Real: no numpy import for the CLI
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return None if math.isnan(value) else float(value)


params_text = results.params_text


def drop_empty(obj):
    return {k: v for k, v in obj.items() if v is not None and v != {} and v != []}


class Document:
    def __init__(self, run_dir, origin=ORIGIN, artifacts_url=None):
        from harness.analysis import stats
        self.run_dir = Path(stats.run_path(run_dir))
        self.origin = check_origin(origin)
        self.run, self.df = stats.load_run(self.run_dir)
        self.meta = self.run.data          # its fields as written (still read as a dict here)
        self.run_id = self.meta.get("run_id", self.run_dir.name)
        self.link = Links(self.run_dir, artifacts_url)
        self.checkouts, self.builds, self.tests = {}, {}, []
        self.build_ids = {}              # kernel label -> build id (two labels may share a build)

    def id(self, *parts):
        return f"{self.origin}:{local_id(*parts)}"

    def build(self):
        for label, info in self.meta.get("kernels", {}).items():
            build_id = self.build_ids[label] = self.add_build(label, info, self.add_checkout(label, info))
            self.add_boots(label, info, build_id)
            self.add_tasks(label, info, build_id)
            self.add_selftests(label, build_id)
        self.add_figures()
        return {"version": dict(SCHEMA_VERSION), "checkouts": list(self.checkouts.values()),
                "builds": list(self.builds.values()), "tests": self.tests}

    # --- checkouts and builds -------------------------------------------------------------------

    def add_checkout(self, label, info):
        source, series = info.get("source") or {}, info.get("series") or {}
        key = source.get("id") or local_id(self.run_id, label, "source")
        checkout_id = self.id("checkout", key)
        if checkout_id in self.checkouts:
            return checkout_id
        comment = f"Linux {source.get('version', '?')} ({source.get('spec', '?')})"
        if series:
            comment += (f" + {series.get('title', 'a series')} v{series.get('version', '?')} "
                        f"({len(series.get('patches', []))} patches)")
        failed = info.get("error_type") in ("SeriesError", "UserError") and not info.get("build_key")
        self.checkouts[checkout_id] = drop_empty({
            "id": checkout_id, "origin": self.origin, "comment": comment,
            "start_time": self.meta.get("started"),
            "message_id": series.get("message_id"),
            # KernelCI joins checkouts of one commit + patchset across labs on these two
            "git_commit_hash": None if source.get("dirty") else source.get("git_commit_hash"),
            "git_commit_name": None if source.get("dirty") else source.get("git_commit_name"),
            "git_repository_url": source.get("git_repository_url"),
            "patchset_hash": series.get("patchset_hash", "") if series else "",
            "valid": not failed,
            "log_excerpt": (info.get("error") or "")[:EXCERPT] if failed else None,
            "misc": drop_empty({
                "source_id": source.get("id"), "source_spec": source.get("spec"),
                "version": source.get("version"),
                "harness_commit": source.get("commit"),     # the cache's import of the tree
                "uncommitted_changes_on": source.get("git_commit_hash") if source.get("dirty") else None,
                "series": drop_empty({
                    "spec": series.get("spec"), "title": series.get("title"),
                    "version": series.get("version"), "based_on": series.get("base"),
                    "cover_message_id": series.get("message_id"),
                    "patches": [drop_empty({"index": p.get("index"), "title": p.get("title"),
                                            "message_id": p.get("message_id")})
                                for p in series.get("patches", [])],
                    "patch_message_ids": [p.get("message_id") for p in series.get("patches", [])
                                          if p.get("message_id")],
                    "apply": series.get("apply"),
                }) if series else None,
            }),
        })
        return checkout_id

    def add_build(self, label, info, checkout_id):
        kernel_json = self.run_dir / label / "kernel.json"
        kernel = stored.json_object(kernel_json) if kernel_json.exists() else {}
        key = info.get("build_key") or kernel.get("key")
        build_id = self.id("build", key) if key else self.id(self.run_id, label, "build")
        built = bool(key or info.get("release")) and info.get("error_type") != "BuildError"
        status = "PASS" if built else "FAIL" if info.get("error_type") == "BuildError" else "MISS"
        fragments = [f.get("name") for f in info.get("fragments") or kernel.get("fragments") or []]
        tux = (kernel.get("tuxmake") or {}).get("build") or {}
        toolchain = info.get("toolchain") or kernel.get("toolchain") or {}
        if build_id in self.builds:          # the same kernel under another label
            self.builds[build_id]["misc"]["labels"].append(label)
            return build_id
        self.builds[build_id] = drop_empty({
            "id": build_id, "checkout_id": checkout_id, "origin": self.origin,
            "comment": f"{label}: {info.get('release') or 'not built'}",
            "architecture": "x86_64",
            "compiler": toolchain.get("gcc"),
            "config_name": "+".join([kernel.get("base_config", "tinyconfig"), *fragments]),
            "command": " ".join(tux.get("reproducer_cmdline") or []) or None,
            "duration": kernel.get("build_seconds"),
            "log_url": self.link(f"{label}/build.log"),
            "log_excerpt": None if built else (info.get("error") or "")[-EXCERPT:] or None,
            "status": status,
            "misc": drop_empty({"labels": [label], "build_key": key, "release": info.get("release"),
                                "config_sha": info.get("config_sha"), "fragments": fragments,
                                "feature_config": info.get(feature.CONFIG),
                                "toolchain": toolchain, "cached": info.get("cached_build"),
                                "run_id": self.run_id}),
        })
        return build_id

    # --- tests ----------------------------------------------------------------------------------

    def environment(self):
        host = self.meta.get("host") or {}
        return {"comment": (f"QEMU {self.meta.get('accel', '?')} guest on {host.get('hostname', '?')} "
                            f"({host.get('cpu', '?')}, {host.get('cpus', '?')} CPUs), "
                            f"{self.meta.get('timing', 'real')} timing"),
                "misc": plain(drop_empty({"accel": self.meta.get("accel"),
                                          "accel_reason": self.meta.get("accel_reason"),
                                          "timing": self.meta.get("timing"),
                                          "qemu": self.meta.get("qemu"), "host": host}))}

    def add_test(self, build_id, local, path, status, **fields):
        self.tests.append(drop_empty({"id": self.id(self.run_id, *local), "build_id": build_id,
                                      "origin": self.origin, "path": path, "status": status,
                                      "environment": self.environment(), **fields}))

    def add_boots(self, label, info, build_id):
        boots = info.get("boots") or ({"1": info} if info.get("boot_seconds") else {})
        for boot, b in boots.items():
            where = f"{label}/" if str(boot) == "1" else f"{label}/boot-{boot}/"
            ok = b.get("status") == "ok"
            self.add_test(build_id, [label, f"boot-{boot}"], "boot", "PASS" if ok else "FAIL",
                          comment=f"{label} boot {boot}", duration=b.get("boot_seconds"),
                          log_url=self.link(where + "console.log"),
                          log_excerpt=None if ok else (b.get("error") or tail(self.run_dir / where / "console.log")),
                          misc=plain(drop_empty({k: v for k, v in b.items() if k != "error"})))

    def add_tasks(self, label, info, build_id):
        for task in info.get("tasks", []):
            workload = str(task.get("workload"))
            if workload.startswith("selftest-"):
                path = f"kselftest.{path_part(workload[len('selftest-'):])}"
            else:
                path = f"harness.{path_part(workload)}"
            status = "PASS"
            if task.get("status") != "ok":
                status = "FAIL" if task.get("dmesg") or "panic" in str(task.get("error", "")).lower() else "ERROR"
            boot = task.get("boot", 1)
            self.add_test(build_id, [label, task.get("task"), f"boot-{boot}"], path, status,
                          comment=f"{label} {task.get('task')} boot {boot}",
                          log_url=self.link(f"{label}/{workload}.jsonl"),
                          log_excerpt=task.get("error") or "; ".join(
                              f"{k}: {line}" for k, line in task.get("dmesg") or []) or None,
                          misc=plain(drop_empty(dict(task))))

    def add_selftests(self, label, build_id):
        found = self.run_dir / label
        for path in sorted(found.glob("selftest-*.jsonl")):
            name = path.stem[len("selftest-"):]
            for result in stored.records(path):
                way = result.get("way", "plain")
                top = "kselftest" if way == "plain" else f"kselftest_{path_part(way).replace('-', '_')}"
                tap = self.link(f"{label}/selftest-{name}-{way}.tap")
                if result.get("error"):
                    self.add_test(build_id, [label, f"selftest-{name}", way], f"{top}.{path_part(name)}",
                                  "ERROR", log_url=tap, log_excerpt=result["error"][:EXCERPT],
                                  misc=plain(drop_empty({"launcher": result.get("launcher"),
                                                         "exit_code": result.get("exit_code")})))
                for case in result.get("cases", []):
                    status = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[case["result"]]
                    if case.get("directive") == "ERROR":
                        status = "ERROR"
                    self.add_test(build_id, [label, f"selftest-{name}", way, case.get("number")],
                                  f"{top}.{path_part(name)}.{path_part(case['case'])}", status,
                                  comment=case["case"], log_url=tap,
                                  misc=drop_empty({"number": case.get("number"),
                                                   "directive": case.get("directive"),
                                                   "reason": case.get("reason") or None,
                                                   "way": way}))

    # --- figures and verdicts -------------------------------------------------------------------

    def verdicts(self):
        """{(candidate condition, workload, params text, metric): comparison row} against stock."""
        from harness.analysis import report, stats
        out = {}
        if self.df.empty:
            return out
        comps, _ = report.comparisons(self.df, [self.run], 2000, 0.05)
        for workload, comp in comps.items():
            if comp is None or comp.empty:
                continue
            cols = stats.param_columns(stats.measured(self.df[self.df["workload"] == workload]), workload)
            for r in comp.to_dict("records"):
                out[(r["candidate"], workload, params_text(r, cols), r["metric"])] = r
        return out

    def add_figures(self):
        from harness.analysis import stats
        if self.df.empty:
            return
        measured = stats.measured(self.df)
        owner = dict(zip(self.df["condition"], self.df["kernel"]))
        verdicts = self.verdicts()
        for workload in dict.fromkeys(measured["workload"]):
            desc = stats.describe(measured, workload)
            if desc.empty:
                continue
            cols = stats.param_columns(measured[measured["workload"] == workload], workload)
            for r in desc.to_dict("records"):
                label = owner.get(r["condition"])
                build_id = self.build_ids.get(label)
                if build_id is None:
                    continue
                params = params_text(r, cols)
                kind = r["condition"].split(": ", 1)[-1]
                v = verdicts.get((r["condition"], workload, params, r["metric"]))
                misc = {"condition": r["condition"], "kind": kind, "params": params,
                        "n": r["n"], "boots": r["boots"], "median": r["median"], "cv": r["cv"],
                        "boot_share": r["boot_share"], "min": r["min"], "max": r["max"],
                        "timing": self.meta.get("timing")}
                if v:
                    misc.update(baseline=v["baseline"], verdict=str(v["verdict"]), ratio=v["ratio"],
                                ci_low=v["ci_low"], ci_high=v["ci_high"], p_value=v.get("p_value"),
                                q_value=v.get("q_value"))
                self.add_test(build_id, [label, workload, params, kind, r["metric"]],
                              f"harness.{path_part(workload)}.{path_part(r['metric'])}", "DONE",
                              comment=f"{r['metric']} {r['condition']} [{params}]"
                                      + (f": {v['verdict']}" if v else ""),
                              number=drop_empty({"value": float(r["median"]),
                                                 "unit": r.get("unit") or None}),
                              log_url=self.link(f"{label}/{workload}.jsonl"),
                              misc=plain(drop_empty(misc)))


def document(run_dir, origin=ORIGIN, artifacts_url=None):
    """The KCIDB report (a dict) of a finished run."""
    return Document(run_dir, origin, artifacts_url).build()


def write(run_dir, path=None, origin=ORIGIN, artifacts_url=None):
    """Write the run's KCIDB report (default <run>/kcidb.json); returns its path."""
    from harness.analysis import stats
    doc = document(run_dir, origin, artifacts_url)
    path = Path(path or Path(stats.run_path(run_dir)) / "kcidb.json")
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def main(args):
    doc = document(args.run, origin=args.origin, artifacts_url=args.artifacts_url)
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        ui.console.print(f"kcidb: {args.out} ({len(doc['builds'])} builds, {len(doc['tests'])} tests)")
    else:
        ui.out(json.dumps(doc))
    return 0
