"""Test output as the kernel's selftests print it: TAP (kselftest/KTAP flavour), the plain result
lines of the mm selftests that print no TAP, and where an output that stopped short stopped.
Hand-written: the TAP libraries of PyPI (tap.py, pytap13) read TAP 13 but neither kselftest's
"# [RUN]" announcements, its Totals line nor the coloured or progress-counter lines of khugepaged.
"""
import re


RESULT = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
DIRECTIVE = re.compile(r"^(.*?)\s*#\s*(SKIP|TODO|XFAIL|error)\b\s*(.*)$", re.IGNORECASE)
PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#\s*(?:SKIP\b)?\s*(.*))?$", re.IGNORECASE)
TOTALS = re.compile(r"^#\s*Totals:\s*(.*)$")
RUN = re.compile(r"^#\s*\[RUN\]\s*(.*)$")


def parse_tap_report(text):
    """TAP (kselftest/KTAP flavour): its cases ([{"case", "result": pass|fail|skip, "number",
    ...}]), plan, bail-out, the Totals line and any inconsistencies.

    A case is named by the kselftest "# [RUN] ..." line announcing it when there is one (the
    copy-on-write test's result lines say only "No leak from parent into child"), else by its own
    description. Indented lines (KTAP subtests) are not cases of this test. A number seen twice keeps its first result.
    """
    cases, seen, names = [], set(), {}
    plan, skip_all, bail_out, totals, announced, last = None, None, None, None, None, 0
    for raw in text.replace("\r", "").splitlines():
        if raw[:1].isspace():
            continue
        line = raw.strip()
        m = RESULT.match(line)
        if m:
            number = int(m[2]) if m[2] else last + 1
            last = number
            if number in seen:
                announced = None
                continue
            seen.add(number)
            desc, directive, reason = m[3].strip(), None, ""
            d = DIRECTIVE.match(m[3])
            if d:
                desc, directive, reason = d[1].strip(), d[2].upper(), d[3].strip()
            if directive == "SKIP":
                result = "skip"
            else:
                result = "pass" if m[1] == "ok" else "fail"
            name = announced or desc or f"test {number}"
            names[name] = names.get(name, 0) + 1
            if names[name] > 1:
                name = f"{name} #{names[name]}"
            cases.append({"case": name, "result": result, "number": number, "description": desc,
                          "directive": directive, "reason": reason})
            announced = None
            continue
        if (m := PLAN.match(line)):
            plan = int(m[1])
            if plan == 0:
                skip_all = (m[2] or "").strip() or "skipped"
        elif line.startswith("Bail out!"):
            bail_out = line[len("Bail out!"):].strip() or "bailed out"
        elif (m := TOTALS.match(line)):
            totals = {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", m[1])}
        elif (m := RUN.match(line)):
            announced = m[1].strip()
    problems = []
    if plan is not None and plan != len(cases):
        problems.append(f"plan 1..{plan} but {len(cases)} results")
    if totals is not None:
        counted = {r: sum(c["result"] == r for c in cases) for r in ("pass", "fail", "skip")}
        # kselftest counts XFAIL apart from pass and "# error" apart from fail.
        counted["pass"] -= sum(c["directive"] == "XFAIL" for c in cases)
        counted["fail"] -= sum(c["directive"] == "ERROR" for c in cases)
        for key, n in counted.items():
            if key in totals and totals[key] != n:
                problems.append(f"Totals says {key}:{totals[key]} but {n} results say {key}")
    return {"cases": cases, "plan": plan, "skip_all": skip_all, "bail_out": bail_out,
            "totals": totals, "problems": problems}


COLOURED = re.compile(r"^(.*?)\s*\x1b\[3([123])m(\w+)\x1b\[0m\s*$")      # khugepaged
UFFD = re.compile(r"^Testing (.*?)\.\.\. (done|skipped|failed)\b\s*(.*)$")    # uffd-unit-tests
UFFD_STARTED = re.compile(r"^Testing (.*?)\.\.\. ")         # ... its ERROR: line, the result below
UFFD_RESULT = re.compile(r"^(done|skipped|failed)\b\s*(.*)$")


def parse_plain(text):
    """Cases of the mm selftests that print no TAP: khugepaged ('<case> ... OK' in green, red
    Fail, yellow Skip) and uffd-unit-tests ('Testing <case>... done|skipped [..]|failed [..]'; a
    case whose check printed 'ERROR: ...' on its line has its result on the next one)."""
    cases, names, started = [], {}, None
    for raw in text.replace("\r\n", "\n").split("\n"):
        # progress counters rewrite the line with \r: the last piece holds the result
        pieces = [p for p in raw.split("\r") if p.strip()] or [""]
        m = COLOURED.match(pieces[-1])
        u = UFFD.match(pieces[-1]) if not m else None
        if not m and not u and (s := UFFD_STARTED.match(pieces[-1])):
            started = s[1]
            continue
        if not m and not u and started and (r := UFFD_RESULT.match(pieces[-1].strip())):
            u, started = [None, started, r[1], r[2]], None
        if m:
            desc, result = m[1].strip(" ."), {"2": "pass", "1": "fail", "3": "skip"}[m[2]]
            if not desc and len(pieces) > 1:
                desc = pieces[-2].strip(" .")
            desc, reason = re.sub(r"\s+\d+/\d+\.*$", "", desc)[:200], m[3]
        elif u:
            desc, result = u[1].strip()[:200], {"done": "pass", "skipped": "skip", "failed": "fail"}[u[2]]
            reason = u[3].strip()
        else:
            continue
        names[desc] = names.get(desc, 0) + 1
        name = desc if names[desc] == 1 else f"{desc} #{names[desc]}"
        cases.append({"case": name, "result": result, "number": len(cases) + 1, "description": desc,
                      "directive": "SKIP" if result == "skip" else None, "reason": reason})
    return cases


def last_started(output, cases):
    """The case a test was in when its output stopped: the last "# [RUN]" announcement with no
    result after it; else the last line after the last result (khugepaged, uffd-unit-tests
    print the case before its result); else "after <its last case>"."""
    announced, after = None, []
    for raw in output.replace("\r\n", "\n").split("\n"):
        pieces = [p for p in raw.split("\r") if p.strip()]      # a progress counter's last state
        line = pieces[-1].strip() if pieces else ""
        if RESULT.match(line) or COLOURED.match(line) or UFFD.match(line):
            announced, after = None, []
        elif (m := RUN.match(line)):
            announced = m[1].strip()
        elif line and not line.startswith(("#", "TAP version", "1..")):
            after.append(line)
    if announced:
        return announced
    if after and not cases:
        return after[-1][:200]
    if after:
        return after[-1].strip(" .")[:200]
    return f"after {cases[-1]['case']}" if cases else "before its first case"
