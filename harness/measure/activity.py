"""Was COW PTE really on? Judged from the kernel's own counters, never from prctl's return code.

prctl(65) returns 0 on a patched kernel built without CONFIG_COW_PTE (and does nothing), and on
Linux >= 6.3 option 65 is PR_SET_MDWE. What proves sharing is the page-table memory around the
fork: a normal fork copies the parent's PTE tables, so /proc/meminfo PageTables grows by about the
parent's VmPTE; with COW PTE the child shares them, and PageTables grows by a small fraction.
"""

ACTIVE = "active"
INACTIVE = "inactive"
UNPROVEN = "unproven"
OFF = "off"

# how each verdict is named in tables and reports: the one labelling of a fork's kind
KINDS = {OFF: "fork", ACTIVE: "COW PTE fork",
         INACTIVE: "COW PTE requested, inactive", UNPROVEN: "COW PTE requested, unproven"}

MIN_VMPTE_KB = 512        # below this a fork copies too few tables to tell sharing from copying
MAX_SHARED_FRACTION = 0.25


def judge(record):
    """(label, evidence) for one record that carries the counters read around a fork."""
    if not record.get("cow_pte_requested"):
        return OFF, "COW PTE not requested"
    if record.get("thp") == "huge":
        return UNPROVEN, ("with THP the mapping is PMD-mapped: there are no PTE tables to share, "
                          "so the counters cannot tell")
    config = record.get("config_cow_pte")
    if config != "y":
        return INACTIVE, f"the running kernel has CONFIG_COW_PTE={config or 'n'} (from /proc/config.gz)"
    if record.get("prctl_ret") not in (None, 0):
        return INACTIVE, f"prctl(65) failed with errno {record.get('prctl_errno')}"
    parent = record.get("parent_vmpte_kb") or 0
    delta = record.get("pagetables_delta_kb")
    if delta is None:
        return UNPROVEN, "the page-table counters around the fork were not read"
    if parent < MIN_VMPTE_KB:
        return UNPROVEN, f"parent VmPTE {parent} kB is too small to tell sharing from copying"
    fraction = delta / parent
    evidence = (f"PageTables grew by {delta} kB at fork = {fraction:.0%} of the parent's VmPTE "
                f"({parent} kB); child VmPTE {record.get('child_vmpte_kb')} kB")
    if record.get("prctl_again_errno") is not None:
        evidence += f"; second prctl errno {record['prctl_again_errno']}"
    if fraction <= MAX_SHARED_FRACTION:
        return ACTIVE, evidence + ": tables shared"
    return INACTIVE, evidence + ": tables copied"


def label(record):
    """The record with its verdict added (fields cow_pte and cow_pte_evidence)."""
    verdict, evidence = judge(record)
    return {**record, "cow_pte": verdict, "cow_pte_evidence": evidence}


def has_evidence(record):
    """True when the record carries the counters read around a fork (the held fork of every fork
    workload): it can be judged on its own."""
    return "pagetables_delta_kb" in record or "config_cow_pte" in record


def verdict(record):
    """The record's verdict: its cow_pte field when it was judged already, else judged from its own
    evidence; None when it asked for COW PTE but carries no evidence (a timed fork beside the held
    one: harness.analysis.stats gives it the verdict of the evidence in its scope)."""
    if record.get("cow_pte") in KINDS:
        return record["cow_pte"]
    if not (record.get("cow_pte_requested") is True or record.get("cow_pte_requested") == 1):
        return OFF
    return judge(record)[0] if has_evidence(record) else None


def kind(records):
    """How the forks of these records were made: one name of KINDS, or the verdicts when mixed."""
    labels = sorted({r.get("cow_pte", OFF) for r in records})
    return KINDS[labels[0]] if len(labels) == 1 and labels[0] in KINDS else "mixed: " + "/".join(labels)
