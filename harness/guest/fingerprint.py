"""A machine's fingerprint: what makes its timings differ from another's (or from its own on
another day): CPU model, microcode, frequency governor, turbo, SMT.

`fingerprint(read)` takes a function that returns a file's text (None when it cannot be read), so
the same code reads this host (`local`) and, through a Target, a machine booted for measuring.
Runs record the host's in metadata.json; `differences` names what differs between two.
"""
from pathlib import Path

FIELDS = ("cpu", "microcode", "governor", "turbo", "smt")


def local(path):
    """This host's file's text, or None."""
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cpuinfo(text, key):
    for line in (text or "").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def _turbo(read):
    """'on', 'off' or None: intel_pstate's no_turbo, or the acpi-cpufreq/amd boost switch."""
    no_turbo = (read("/sys/devices/system/cpu/intel_pstate/no_turbo") or "").strip()
    if no_turbo in ("0", "1"):
        return "off" if no_turbo == "1" else "on"
    boost = (read("/sys/devices/system/cpu/cpufreq/boost") or "").strip()
    if boost in ("0", "1"):
        return "on" if boost == "1" else "off"
    return None


def fingerprint(read=local):
    """{field: value} of FIELDS; a field the machine does not expose (a VM has no governor) is None."""
    cpuinfo = read("/proc/cpuinfo")
    governor = read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    smt = read("/sys/devices/system/cpu/smt/control")
    return {"cpu": _cpuinfo(cpuinfo, "model name"), "microcode": _cpuinfo(cpuinfo, "microcode"),
            "governor": governor.strip() if governor else None, "turbo": _turbo(read),
            "smt": smt.strip() if smt else None}


def differences(a, b):
    """'field: A vs B' for every field two fingerprints disagree on (missing ones are not compared)."""
    a, b = a or {}, b or {}
    return [f"{f}: {a.get(f)} vs {b.get(f)}" for f in FIELDS
            if f in a and f in b and a.get(f) != b.get(f)]


def between_runs(metas):
    """A message for every run whose machine differs from the first run's (runs' metadata)."""
    first = metas[0] if metas else {}
    messages = []
    for m in metas[1:]:
        differ = differences((first.get("host") or {}).get("fingerprint"),
                             (m.get("host") or {}).get("fingerprint"))
        if differ:
            messages.append(f"runs {first.get('run_id')} and {m.get('run_id')} ran on machines that "
                            f"differ ({'; '.join(differ)}): compare their times with care")
    return messages
