"""A verdict on one comparison as a value: its direction, its size (the ratio of medians), the
ratio's 95% interval and its evidence (boots, layout variants, whether the repetitions of one boot
stood in for boots). Code asks the value (`.direction`, `.called`, `.judged`); the words are made
only at the edge (`prose()`, `str()`: report, tables, junit, kcidb, nightly, attribute), and no
code reads a verdict back from its words.

Directions:
- called: "slower"/"faster" (times), "larger"/"smaller" (sizes), "higher"/"lower" (rates and the
  rest; units.direction_words): q below alpha and a change of at least the practical threshold
- "no practical difference": significant, smaller than the threshold (`change`, `practical`)
- "no significant difference": the interval allows no change larger than `bound`
- "not judged": a level's spread was not measured (`level`: "1 boot" or "1 layout"); the ratio
  and the design that would judge it
- "not enough data", "no ratio" (the baseline is 0), "not comparable" (`detail`: the hosts)
- "baseline", "first point": the first points of attribute's step lines, compared with nothing
"""
import math
from dataclasses import dataclass

NAN = float("nan")
CALLED = frozenset({"slower", "faster", "larger", "smaller", "higher", "lower"})
NO_PRACTICAL, NO_SIGNIFICANT = "no practical difference", "no significant difference"
NOT_JUDGED, NOT_ENOUGH, NO_RATIO = "not judged", "not enough data", "no ratio"
NOT_COMPARABLE, BASELINE, FIRST_POINT = "not comparable", "baseline", "first point"
DIRECTIONS = CALLED | {NO_PRACTICAL, NO_SIGNIFICANT, NOT_JUDGED, NOT_ENOUGH, NO_RATIO, NOT_COMPARABLE,
                       BASELINE, FIRST_POINT}
# the directions that say nothing about the size of a difference (no interval to wait for)
UNSIZED = frozenset({NOT_ENOUGH, NO_RATIO, NOT_COMPARABLE, BASELINE, FIRST_POINT})

# a level whose spread was not measured: what would judge it
UNJUDGED = {
    "1 boot": "boot-to-boot spread not measured; judge it with --boots 5 or more (or harness reproduce)",
    "1 layout": "layout spread not measured between two binaries; judge it with --variants 3 or more "
                "(or harness reproduce)",
}


def _nan(x):
    return x is None or (isinstance(x, float) and math.isnan(x))


@dataclass(frozen=True, eq=False)
class Verdict:
    direction: str
    ratio: float = NAN          # candidate median / baseline median
    low: float = NAN            # the ratio's 95% interval
    high: float = NAN
    boots: int = 0              # evidence: boots on the side with fewer
    layouts: int = 0            # evidence: layout variants (0: none measured)
    repetitions: bool = False   # one boot per kernel: its repetitions stood in for boots
    change: float = NAN         # ratio - 1 (no practical difference)
    practical: float = NAN      # the practical threshold, a fraction
    bound: float = NAN          # the largest change the interval allows (no significant difference)
    noisy_cv: float = NAN       # the largest CV when above the noise threshold
    level: str = ""             # not judged: "1 boot" or "1 layout"
    detail: str = ""            # not comparable: the hosts

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"verdict direction {self.direction!r}: allowed: {', '.join(sorted(DIRECTIONS))}")
        if self.direction == NOT_JUDGED and self.level not in UNJUDGED:
            raise ValueError(f"a verdict not judged needs its level: {', '.join(UNJUDGED)}")

    @property
    def called(self):
        """A difference called (a direction word), with or without the one-boot caveat."""
        return self.direction in CALLED

    @property
    def sized(self):
        """The verdict is about a measured ratio (its interval can narrow with more boots)."""
        return self.direction not in UNSIZED

    def __eq__(self, other):
        if not isinstance(other, Verdict):
            return NotImplemented
        return self.prose() == other.prose() and self.direction == other.direction

    def __hash__(self):
        return hash((self.direction, self.prose()))

    def prose(self):
        """The verdict in words, as reports and tables print it."""
        d = self.direction
        if d == NOT_JUDGED:
            shown = "no ratio" if _nan(self.ratio) else f"ratio {self.ratio:.3f}"
            text = f"not judged [{self.level}]: {shown}; {UNJUDGED[self.level]}"
        elif d == NO_PRACTICAL:
            text = f"{d} ({self.change:+.1%} < {self.practical:.0%})"
        elif d == NO_SIGNIFICANT:
            text = d + ("" if _nan(self.bound) else f" (none > {self.bound:.1%})")
        elif d == NO_RATIO:
            return "no ratio (the baseline is 0)"
        elif d == NOT_COMPARABLE:
            return f"not comparable: {self.detail}" if self.detail else d
        else:
            text = d
        if self.repetitions and d != NOT_JUDGED:
            text += " [1 boot]"             # boot-to-boot variation not measured
        if not _nan(self.noisy_cv):
            text += f" (noisy: CV {self.noisy_cv:.0%})"
        return text

    __str__ = prose

    def __repr__(self):
        return f"Verdict({self.prose()!r})"


def prose(value):
    """A verdict (or an empty cell) as text, for the edges that print or store words."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def called(value):
    return isinstance(value, Verdict) and value.called


def direction(value):
    return value.direction if isinstance(value, Verdict) else None
