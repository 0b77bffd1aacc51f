"""Patient-level stratified splits: properties over many random cohorts."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from radcommons.errors import UserError
from radcommons.export.splits import assign_splits, largest_remainder, parse_weights


def _cohort(rng: np.random.Generator, size: int) -> dict[str, tuple[str, str]]:
    return {f"P{i:05d}": (str(rng.choice(["Yes", "No"])), str(rng.choice(["Female", "Male", "Not Reported"])))
            for i in range(size)}


@pytest.mark.parametrize("seed", range(20))
def test_every_patient_in_exactly_one_split_and_proportions_close(seed: int) -> None:
    rng = np.random.default_rng(seed)
    patients = _cohort(rng, int(rng.integers(50, 2000)))
    weights = {"train": 0.7, "val": 0.15, "test": 0.15}
    out = assign_splits(patients, weights, seed=seed)
    assert set(out) == set(patients)  # one split per patient (a dict: never two)
    counts = Counter(out.values())
    for name, weight in weights.items():
        # Strata of 5 or more are exact to one patient each; small strata add sampling noise.
        assert abs(counts[name] / len(patients) - weight) < 0.05 + 6 / len(patients)
    # Within each large stratum, proportions hold to one patient per split.
    for stratum in set(patients.values()):
        members = [p for p, s in patients.items() if s == stratum]
        if len(members) >= 5:
            local = Counter(out[p] for p in members)
            for name, weight in weights.items():
                assert abs(local[name] - weight * len(members)) < 1 + 1e-9


def test_deterministic_and_seed_dependent() -> None:
    patients = _cohort(np.random.default_rng(1), 300)
    weights = {"train": 0.8, "test": 0.2}
    assert assign_splits(patients, weights, seed=7) == assign_splits(dict(reversed(patients.items())), weights, seed=7)
    assert assign_splits(patients, weights, seed=7) != assign_splits(patients, weights, seed=8)


def test_largest_remainder() -> None:
    assert largest_remainder(10, {"a": 0.7, "b": 0.15, "c": 0.15}) == {"a": 7, "b": 2, "c": 1}
    assert sum(largest_remainder(7, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}).values()) == 7


def test_tiny_strata_are_drawn_by_probability() -> None:
    patients = {f"P{i}": (f"s{i}",) for i in range(4000)}  # every stratum has one patient
    counts = Counter(assign_splits(patients, {"train": 0.75, "test": 0.25}, seed=3).values())
    assert abs(counts["train"] / 4000 - 0.75) < 0.03


def test_parse_weights() -> None:
    assert parse_weights("train=7,test=3") == {"train": 0.7, "test": 0.3}
    for bad in ("train", "train=x", "train=0.5,train=0.5", "a=0"):
        with pytest.raises(UserError):
            parse_weights(bad)
