"""The confidence a study-code answer needs to be given without a curator, and how a rule earns it."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Answers below this confidence go to the review queue (chosen on the CV folds; see bench).
DEFAULT_THRESHOLD = 0.9

#: How many rows' worth of weight a class's parent class lends it (see :class:`Calibration`).
PRIOR_ROWS = 4.0


@dataclass
class Calibration:
    """How often a rule's answer was the curated code, per class of answer.

    Counted on the curated rows the matcher is given (never on the rows it is measured on), so
    cross-validation measures the calibration too. A class is a tuple, most general part
    first; its weight is its precision shrunk towards its parent class's (the tuple less its
    last part) by :data:`PRIOR_ROWS` rows, down to 0.5 for the empty class: a class seen 3
    times and right 3 times under a parent right 90% of the time weighs (3 + 4 x 0.9) / 7.
    """

    counts: dict[tuple[str, ...], list[int]] = field(default_factory=dict)

    def add(self, key: tuple[str, ...], right: bool) -> None:
        """Count one curated row whose class is ``key`` (and each of its parents)."""
        for size in range(len(key) + 1):
            seen = self.counts.setdefault(key[:size], [0, 0])
            seen[0] += 1
            seen[1] += int(right)

    def weight(self, key: tuple[str, ...]) -> float:
        """The estimated precision of answers of class ``key``."""
        prior = 0.5 if not key else self.weight(key[:-1])
        seen, right = self.counts.get(key, (0, 0))
        return (right + PRIOR_ROWS * prior) / (seen + PRIOR_ROWS)

    def describe(self, key: tuple[str, ...]) -> str:
        """"right/seen curated rows", for the rule text a curator reads."""
        seen, right = self.counts.get(key, (0, 0))
        return f"{right}/{seen} curated rows of this kind"
