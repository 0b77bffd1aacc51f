"""Measuring a matcher: cross-validation over a curated table, and coverage of real pairs.

Cross-validation hides one fold of the curated rows and maps it with a matcher built on the
other folds only (the code attributes stay, as with ``harmonize map --mapping-table``).
Rows are folded by MIDRC's normalised key, so a pair that appears twice in the table
("CR, DX" and "CR") is hidden as a whole and the exact matcher cannot see its twin.

* precision = correct codes / answered (answered: confidence at or above the threshold)
* coverage = answered / hidden
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from radcommons.harmonize.matcher import ExactMatcher, Match, Matcher
from radcommons.harmonize.normalize import midrc_key
from radcommons.harmonize.tables import MappingRow, MappingTable, StudyPair


@dataclass(frozen=True)
class Prediction:
    """One hidden row: the curated code and what the matcher answered."""

    row: MappingRow
    fold: int
    match: Match

    def correct(self) -> bool:
        """The suggested code equals the curated one."""
        return self.match.code == self.row.code


@dataclass(frozen=True)
class Score:
    """Precision and coverage at one threshold."""

    threshold: float
    hidden: int
    answered: int
    correct: int

    @property
    def precision(self) -> float:
        """Correct / answered (1.0 when nothing was answered: no wrong answer was given)."""
        return self.correct / self.answered if self.answered else 1.0

    @property
    def coverage(self) -> float:
        """Answered / hidden."""
        return self.answered / self.hidden if self.hidden else 0.0


def fold_rows(rows: Sequence[MappingRow], k: int = 5, seed: int = 0) -> list[list[MappingRow]]:
    """Split rows into ``k`` folds; rows with the same normalised description stay together."""
    groups: dict[str, list[MappingRow]] = {}
    for row in rows:
        _, description = midrc_key(row.modality, row.description)
        groups.setdefault(description, []).append(row)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    folds: list[list[MappingRow]] = [[] for _ in range(k)]
    for i, key in enumerate(keys):
        folds[i % k].extend(groups[key])
    return folds


MatcherFactory = Callable[[MappingTable], "Matcher | ExactMatcher"]


def cross_validate(
    table: MappingTable,
    k: int = 5,
    seed: int = 0,
    folds: Iterable[int] | None = None,
    factory: MatcherFactory = Matcher,
) -> list[Prediction]:
    """Predictions for every hidden row of the chosen folds (default: all ``k``)."""
    split = fold_rows(table.rows, k, seed)
    chosen = range(k) if folds is None else folds
    out: list[Prediction] = []
    for fold in chosen:
        training = [row for i, part in enumerate(split) if i != fold for row in part]
        matcher = factory(table.with_rows(training, source=f"fold {fold} hidden"))
        hidden = split[fold]
        matches = (
            matcher.match_all([(r.modality, r.description) for r in hidden])
            if isinstance(matcher, Matcher)
            else [matcher.match(r.modality, r.description) for r in hidden]
        )
        out.extend(Prediction(row, fold, match) for row, match in zip(hidden, matches, strict=True))
    return out


def score(predictions: Sequence[Prediction], threshold: float) -> Score:
    """Precision and coverage of predictions at a threshold."""
    answered = [p for p in predictions if p.match.code and p.match.confidence >= threshold]
    return Score(
        threshold=threshold,
        hidden=len(predictions),
        answered=len(answered),
        correct=sum(p.correct() for p in answered),
    )


def choose_threshold(
    predictions: Sequence[Prediction], target_precision: float = 0.9, grid: Iterable[float] | None = None
) -> float:
    """The lowest threshold whose precision on ``predictions`` reaches the target (most coverage)."""
    grid = sorted(grid if grid is not None else [round(0.3 + 0.01 * i, 2) for i in range(71)])
    for threshold in grid:
        if score(predictions, threshold).precision >= target_precision:
            return threshold
    return grid[-1]


def nested_score(predictions: Sequence[Prediction], target_precision: float = 0.9) -> tuple[Score, list[float]]:
    """Precision/coverage when each fold's threshold is chosen on the other folds only."""
    folds = sorted({p.fold for p in predictions})
    thresholds = []
    hidden = answered = correct = 0
    for fold in folds:
        others = [p for p in predictions if p.fold != fold]
        mine = [p for p in predictions if p.fold == fold]
        threshold = choose_threshold(others, target_precision)
        thresholds.append(threshold)
        s = score(mine, threshold)
        hidden += s.hidden
        answered += s.answered
        correct += s.correct
    return Score(float("nan"), hidden, answered, correct), thresholds


@dataclass(frozen=True)
class Coverage:
    """How much of a set of pairs a matcher answers at or above its threshold."""

    pairs: int
    studies: int
    answered_pairs: int
    answered_studies: int
    by_method: dict[str, tuple[int, int]]

    @property
    def pair_share(self) -> float:
        """Answered distinct pairs / all distinct pairs."""
        return self.answered_pairs / self.pairs if self.pairs else 0.0

    @property
    def study_share(self) -> float:
        """Studies carrying an answered pair / all studies."""
        return self.answered_studies / self.studies if self.studies else 0.0


def coverage(pairs: Sequence[StudyPair], matches: Sequence[Match]) -> Coverage:
    """Coverage of pairs (weighted by study count too), and answered pairs/studies per method."""
    by_method: dict[str, tuple[int, int]] = {}
    answered_pairs = answered_studies = 0
    for pair, match in zip(pairs, matches, strict=True):
        if match.accepted and match.code:
            answered_pairs += 1
            answered_studies += pair.frequency
            n, s = by_method.get(match.method, (0, 0))
            by_method[match.method] = (n + 1, s + pair.frequency)
    return Coverage(
        pairs=len(pairs),
        studies=sum(p.frequency for p in pairs),
        answered_pairs=answered_pairs,
        answered_studies=answered_studies,
        by_method=by_method,
    )
