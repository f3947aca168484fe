"""The replication design: how many boots each kernel gets, and in which order they run.

A boot is the unit of replication: the forks of one boot share its page placement, its vCPU
threads' host cores and TCG's translation cache, so two kernels are compared over boots, not over
the repetitions inside one. The boots of the kernels are interleaved in rounds, so a slow drift of
the host (other jobs, thermal state, the page cache) lands on every kernel alike instead of on
the one measured last:

  alternating  A B C, C B A, A B C, ...   (the default: a linear drift is balanced exactly)
  interleaved  A B C, A B C, ...
  random       each round in its own random order (randomised blocks; the seed is recorded)
  sequential   A A A, B B B, C C C        (the old design: drift is confounded with the kernel)

With `until` the rounds go on past `boots` until every comparison's 95% interval is within
±until of its ratio, or `max_boots` rounds have run (the time to a verdict; the rule and where
it stopped are recorded).
"""
import random
import secrets
from dataclasses import dataclass, field

from harness.options import ORDERS
from harness.experiment import MAX_BOOTS


@dataclass
class Plan:
    labels: list
    boots: int
    order: str
    seed: int
    until: float = None    # add rounds until every interval is within +-until (a fraction) ...
    max_boots: int = None  # ... or this many boots per kernel
    ran: list = field(default_factory=list)     # [(boot, label)] as they ran
    stopped: str = None    # with `until`: why the rounds stopped where they did
    variants: int = 1      # layout variants per kernel: boot k runs variant (k - 1) mod variants

    def batch(self, done):
        """(slots, boots done after them): the next slots to run after `done` rounds. Sequential
        runs every planned boot of a kernel before the next kernel; rounds past the plan (until)
        go in the plain order."""
        if self.order == "sequential" and done == 0:
            return self.slots, self.boots
        return [(done + 1, label) for label in self.round(done + 1)], done + 1

    def round(self, boot):
        """The kernels of round `boot`, in the order they boot."""
        if self.order not in ORDERS:
            raise ValueError(f"unknown order {self.order!r} (known: {', '.join(ORDERS)})")
        one = list(self.labels)
        if self.order == "alternating" and boot % 2 == 0:
            one.reverse()
        elif self.order == "random":
            random.Random(f"{self.seed}:{boot}").shuffle(one)
        return one

    @property
    def slots(self):
        """[(boot, label)] of the planned boots, in the order they run."""
        if self.order == "sequential":
            return [(b, label) for label in self.labels for b in range(1, self.boots + 1)]
        return [(b, label) for b in range(1, self.boots + 1) for label in self.round(b)]

    def as_dict(self):
        out = {"boots": self.boots, "order": self.order, "seed": self.seed,
               "unit": "boot" if self.boots > 1 else "boot (one per kernel: repetitions only)",
               "slots": [f"{label}#{boot}" for boot, label in (self.ran or self.slots)]}
        if self.until:
            out.update(until=self.until, max_boots=self.max_boots, stopped=self.stopped)
        if self.variants > 1:
            out["variants"] = self.variants
        return out

    def describe(self):
        how = f"{self.boots} boot{'s' if self.boots != 1 else ''} per kernel"
        if self.boots > 1 and len(self.labels) > 1:
            how += f", {self.order}" + (f" (seed {self.seed})" if self.order == "random" else "")
        if self.until:
            how += f", more (up to {self.max_boots}) until every headline interval is within ±{self.until:.1%}"
        if self.variants > 1:
            how += f"; {self.variants} layout variants per kernel, taking turns"
        return how


def stop_reason(widest, until, done, max_boots, left, kernels):
    """The stopping rule of --until-ci, pure: why the rounds stop after `done` boots per kernel,
    or None for one more round. widest: the widest headline interval (a fraction of its ratio)
    between the kernels still booting; left: how many of the `kernels` still boot."""
    if widest <= until:
        return f"every headline interval within ±{until:.1%} (widest ±{widest:.2%})"
    if done >= max_boots:
        return f"max_boots ({max_boots}) reached; widest headline interval ±{widest:.2%}"
    if left < 2 and kernels > 1:
        return "fewer than two kernels left to compare"
    return None


def replayed(skip, labels, boot):
    """True when round `boot` finished in an earlier attempt (resume) for every kernel in
    `labels`: it is run again as a skip, and the stopping rule judges only after the rounds
    already on disk. skip: {(label, boot)} done before."""
    return bool(skip) and all((label, boot) in skip for label in labels)


def rounds(labels, boots, order, seed):
    """The order of the slots: [(boot, label)]."""
    return Plan(list(labels), boots, order, seed).slots


def new_seed():
    return secrets.randbelow(2 ** 31)


def plan(exp):
    """The plan of an experiment whose seed is set (Run sets it for a random order)."""
    labels = [k.label for k in exp.kernels]
    until = exp.until
    return Plan(labels, exp.boots or 1, exp.order, exp.seed, until,
                (exp.max_boots or MAX_BOOTS) if until else None, variants=exp.variants or 1)
