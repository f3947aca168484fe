"""Was the feature really on? Judged from the kernel's own counters, never from the switch's return code.

What the switch is, which counters prove it took and the thresholds come from the experiment's
feature profile (harness.feature, features/<name>/profile.toml [switch] and [proof]). The judge
compares the counter read around a held fork (e.g. the growth of /proc/meminfo PageTables, read
after the per-CPU deltas were folded) with a base (e.g. the parent's VmPTE, what a copy costs):
at most max_fraction of the base plus margin_kb is "active", more is "inactive".
"""
from harness import feature
from harness.feature import ACTIVE, INACTIVE, OFF, UNPROVEN     # the states, named in harness.feature


def judge(record, profile):
    """(state, evidence) for one record that carries the counters read around a fork."""
    title = profile.title or profile.name
    if not record.get(feature.REQUESTED):
        return OFF, (f"{title} not requested" if profile.has_switch
                     else f"a plain fork: the profile '{profile.name}' has no feature to switch on")
    if not profile.has_switch:
        return UNPROVEN, f"the profile '{profile.name}' has no switch: nothing to prove"
    proof = profile.proof
    if proof.get("unprovable_thp") and record.get("thp") == proof["unprovable_thp"]:
        return UNPROVEN, ("with THP the mapping is PMD-mapped: there are no PTE tables to share, "
                          "so the counters cannot tell")
    option = proof.get("config")
    config = record.get(feature.CONFIG)
    if option and config != "y":
        return INACTIVE, f"the running kernel has {option}={config or 'n'} (from /proc/config.gz)"
    if record.get("prctl_ret") not in (None, 0):
        return INACTIVE, f"prctl({profile.switch['prctl']}) failed with errno {record.get('prctl_errno')}"
    base = record.get(proof["base"]) or 0
    delta = record.get(proof["counter"])
    if delta is None:
        return UNPROVEN, f"the counters around the fork were not read ({proof['counter']})"
    if base < proof.get("min_base_kb", 0):
        return UNPROVEN, f"{proof['base']} {base} kB is too small to tell sharing from copying"
    margin = proof.get("margin_kb", 0)
    limit = proof["max_fraction"] * base + margin
    evidence = (f"{proof['counter']} {delta} kB at fork = {delta / base:.0%} of {proof['base']} "
                f"({base} kB); shared up to {proof['max_fraction']:.0%} + {margin} kB margin "
                f"= {limit:.0f} kB")
    if "child_vmpte_kb" in record:
        evidence += f"; child VmPTE {record.get('child_vmpte_kb')} kB"
    if record.get("pagetables_refreshed") is False:
        evidence += "; per-CPU deltas not folded (stat_refresh failed)"
    again = proof.get("again")
    if again and record.get(again) is not None:
        evidence += f"; second prctl errno {record[again]}"
    if delta <= limit:
        return ACTIVE, evidence + ": tables shared"
    return INACTIVE, evidence + ": tables copied"


def label(record, profile):
    """The record with its state added (fields feature_state and feature_evidence)."""
    state, evidence = judge(record, profile)
    return {**record, feature.STATE: state, feature.EVIDENCE: evidence}


def has_evidence(record, profile=None):
    """True when the record carries the counters read around a fork (the held fork of every fork
    workload): it can be judged on its own."""
    counter = (profile.proof.get("counter") if profile else None) or "pagetables_delta_kb"
    return counter in record or feature.CONFIG in record


def verdict(record, profile):
    """The record's state: its feature_state field when it was judged already, else judged from its
    own evidence; None when it asked for the feature but carries no evidence (a timed fork beside
    the held one: harness.analysis.stats gives it the state of the evidence in its scope)."""
    if record.get(feature.STATE) in feature.STATES:
        return record[feature.STATE]
    if not (record.get(feature.REQUESTED) is True or record.get(feature.REQUESTED) == 1):
        return OFF
    return judge(record, profile)[0] if has_evidence(record, profile) else None


def kind(records, profile):
    """How the forks of these records were made: one label of the profile, or the states when mixed."""
    labels = sorted({r.get(feature.STATE, OFF) for r in records})
    if len(labels) == 1 and labels[0] in feature.STATES:
        return profile.label(labels[0])
    return "mixed: " + "/".join(labels)
