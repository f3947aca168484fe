"""JUnit XML for a night, for CI engines: a testsuite per kernel, a testcase per kernel (build and
boot), per task and per metric comparison. Failed kernels and tasks and regressions are failures.

A case is a dict: suite (the kernel), classname, name, and optionally failure (message), kind (the
failure's type), detail (its text), skipped (message) and output (system-out text).
"""
import xml.etree.ElementTree as ET
from pathlib import Path


def task_cases(meta, labels):
    """Cases for the kernels (labels: every kernel the experiment has) and their tasks."""
    cases = []
    kernels = meta.get("kernels", {})
    for label in labels:
        info = kernels.get(label)
        case = {"suite": label, "classname": f"{label}.kernel", "name": "build and boot"}
        if info is None:
            case.update(failure=f"{label}: the kernel did not run (not in the run's metadata)",
                        kind="missing")
        elif info.get("error"):
            case.update(failure=f"{label}: {info.get('error_type', 'error')}: {info['error']}",
                        kind=info.get("error_type", "error"), detail=info["error"])
        elif info.get("status") != "ok" and not info.get("tasks"):
            case.update(failure=f"{label}: status {info.get('status', 'unknown')}", kind="status")
        else:
            case["output"] = f"release {info.get('release', '?')}, boot {info.get('boot_seconds', '?')} s"
        cases.append(case)
        for task in (info or {}).get("tasks", []):
            c = {"suite": label, "classname": f"{label}.tasks",
                 "name": " ".join([str(task.get("task")), str(task.get("workload")),
                                   *(f"{k}={v}" for k, v in (task.get("params") or {}).items())])}
            if task.get("status") != "ok":
                hits = "; ".join(f"{k}: {line}" for k, line in task.get("dmesg") or [])
                c.update(failure=f"{label} {task.get('task')}: {task.get('error') or hits or 'failed'}",
                         kind="task", detail=hits)
            else:
                c["output"] = f"{task.get('records', 0)} records"
            cases.append(c)
    return cases


def night_cases(rows):
    """Cases for the comparisons against the previous nights (rows from harness.ci.nightly)."""
    cases = []
    for r in rows:
        case = {"suite": r["kernel"], "classname": f"{r['kernel']}.nightly.{r['workload']}",
                "name": f"{r['metric']} {r['condition']} {r['params']}", "output": r["message"]}
        if r["status"] == "regression":
            case.update(failure=r["message"], kind="regression")
        elif r["status"] == "no history":
            case["skipped"] = r["message"]
        cases.append(case)
    return cases


def baseline_cases(rows):
    """Cases for the comparisons against the stock kernel in the run (stats.compare rows with a
    workload, kernel and params text added); they report, they do not fail."""
    cases = []
    for r in rows:
        ratio = "–" if r["ratio"] != r["ratio"] else f"{r['ratio']:.3f}"
        if r["ci_low"] == r["ci_low"]:
            ratio += f" [95% CI {r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        cases.append({"suite": r["kernel"], "classname": f"{r['kernel']}.baseline.{r['workload']}",
                      "name": f"{r['metric']} {r['candidate']} vs {r['baseline']} {r['params']}",
                      "output": f"{r['metric']}: ratio {ratio}, {r['verdict']!s}"})
    return cases


def xml(name, cases, timestamp=None):
    """The ElementTree of the cases, a testsuite per suite in first-seen order."""
    root = ET.Element("testsuites", name=name)
    suites = {}
    for case in cases:
        suites.setdefault(case["suite"], []).append(case)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite_name, members in suites.items():
        counts = {"tests": len(members), "failures": sum(bool(c.get("failure")) for c in members),
                  "errors": 0, "skipped": sum(bool(c.get("skipped")) and not c.get("failure")
                                              for c in members)}
        suite = ET.SubElement(root, "testsuite", name=suite_name,
                              **{k: str(v) for k, v in counts.items()},
                              **({"timestamp": timestamp} if timestamp else {}))
        for c in members:
            tc = ET.SubElement(suite, "testcase", classname=c["classname"], name=c["name"], time="0")
            if c.get("failure"):
                fail = ET.SubElement(tc, "failure", message=c["failure"], type=c.get("kind", "failure"))
                fail.text = c.get("detail") or c["failure"]
            elif c.get("skipped"):
                ET.SubElement(tc, "skipped", message=c["skipped"])
            if c.get("output"):
                ET.SubElement(tc, "system-out").text = c["output"]
        for k in totals:
            totals[k] += counts[k]
    root.attrib.update({k: str(v) for k, v in totals.items()})
    return ET.ElementTree(root)


def write(path, name, cases, timestamp=None):
    tree = xml(name, cases, timestamp)
    ET.indent(tree)
    tree.write(Path(path), encoding="utf-8", xml_declaration=True)
    return Path(path)
