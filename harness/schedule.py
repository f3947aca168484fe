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
"""
import random
import secrets
from dataclasses import dataclass

from harness.experiment import ORDERS


@dataclass
class Plan:
    labels: list
    boots: int
    order: str
    seed: int
    slots: list            # [(boot number, kernel label)] in the order they run

    def as_dict(self):
        return {"boots": self.boots, "order": self.order, "seed": self.seed,
                "unit": "boot" if self.boots > 1 else "boot (one per kernel: repetitions only)",
                "slots": [f"{label}#{boot}" for boot, label in self.slots]}

    def describe(self):
        how = f"{self.boots} boot{'s' if self.boots != 1 else ''} per kernel"
        if self.boots > 1 and len(self.labels) > 1:
            how += f", {self.order}" + (f" (seed {self.seed})" if self.order == "random" else "")
        return how


def rounds(labels, boots, order, seed):
    """The order of the slots: [(boot, label)]."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r} (known: {', '.join(ORDERS)})")
    if order == "sequential":
        return [(b, label) for label in labels for b in range(1, boots + 1)]
    rng = random.Random(seed)
    slots = []
    for b in range(1, boots + 1):
        one = list(labels)
        if order == "alternating" and b % 2 == 0:
            one.reverse()
        elif order == "random":
            rng.shuffle(one)
        slots += [(b, label) for label in one]
    return slots


def new_seed():
    return secrets.randbelow(2 ** 31)


def plan(exp):
    """The plan of an experiment whose seed is set (Run sets it for a random order)."""
    labels = [k.label for k in exp.kernels]
    boots = exp.boots or 1
    return Plan(labels, boots, exp.order, exp.seed, rounds(labels, boots, exp.order, exp.seed))
