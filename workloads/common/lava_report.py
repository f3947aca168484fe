"""In a LAVA job (runs in the target): a workload's JSON records as LAVA test cases.

    python3 lava_report.py --unit fork_ns=ns ... RECORDS.jsonl

Every number (and every true/false, as 1/0 with the unit "bool") of record i becomes the test
case "<field>.<i>" with --measurement and --units, through LAVA's own lava-test-case script; the
metrics keep their manifest's unit, the other figures (the COW PTE evidence the harness judges on
import) take "value". A short word (CONFIG_COW_PTE's "y", the clock source) becomes the case
"<field>.<word>.<i>" without a measurement. An error record is a failed case "error"; no record at
all is a failed "records". `harness lava import` turns the cases back into records.
"""
import argparse
import json
import re
import subprocess
import sys

SKIP = {"rep", "type", "workload"}   # in the case name or the test definition's name already
WORD = re.compile(r"[A-Za-z0-9_-]{1,64}")


def cases(records, units):
    """(name, result, measurement, unit) of every case the records give."""
    out = []
    for i, rec in enumerate(records):
        if rec.get("type") == "error":
            out.append(("error", "fail", None, None))
            continue
        for field, value in sorted(rec.items()):
            if field in SKIP or not re.fullmatch(r"[A-Za-z0-9_]+", field):
                continue
            if isinstance(value, bool):
                out.append((f"{field}.{i}", "pass", int(value), "bool"))
            elif isinstance(value, (int, float)):
                out.append((f"{field}.{i}", "pass", value, units.get(field, "value")))
            elif isinstance(value, str) and WORD.fullmatch(value):
                out.append((f"{field}.{value}.{i}", "pass", None, None))
    if not records:
        out.append(("records", "fail", None, None))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unit", action="append", default=[], help="METRIC=UNIT")
    ap.add_argument("records")
    args = ap.parse_args()
    units = dict(u.split("=", 1) for u in args.unit)
    records = []
    with open(args.records) as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    failed = False
    for name, result, measurement, unit in cases(records, units):
        argv = ["lava-test-case", name, "--result", result]
        if measurement is not None:
            argv += ["--measurement", repr(measurement), "--units", unit]
        failed |= subprocess.call(argv) != 0 or result == "fail"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
