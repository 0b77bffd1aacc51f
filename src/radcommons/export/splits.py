"""Patient-level, stratified, deterministic splits (DOMAIN.md section 6, generalised).

Patients (never images) are assigned, so one patient is never in two splits. Patients are
grouped into strata by the requested fields; each stratum of at least ``min_stratum``
patients is shuffled and handed out by weight: ``floor(weight x n)`` each, then the
remaining patients one by one to the splits with the largest fractional parts (ties: the
order the splits were given). Smaller strata cannot be split proportionally, so each of
their patients draws a split with probability equal to its weight.

The random stream of a stratum depends only on the seed and the stratum's values, so
adding a stratum never reshuffles the others, and the same input always gives the same
assignment.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from radcommons.errors import UserError

#: Strata smaller than this draw each patient by probability (DOMAIN.md section 6 uses 5).
MIN_STRATUM = 5


def parse_weights(text: str) -> dict[str, float]:
    """``"train=0.7,val=0.15,test=0.15"`` -> ordered weights normalised to sum 1."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not name or not 0 <= weight < math.inf:  # NaN fails every comparison
            raise UserError(f"bad split {part!r}", "write NAME=WEIGHT pairs, e.g. train=0.7,val=0.15,test=0.15")
        if name in weights:
            raise UserError(f"split {name!r} is given twice")
        weights[name] = weight
    total = sum(weights.values())
    if not weights or total <= 0:
        raise UserError("a split needs at least one NAME=WEIGHT with a positive weight",
                        "e.g. --split train=0.8,test=0.2")
    return {name: weight / total for name, weight in weights.items()}


def _rng(seed: int, stratum: tuple[Hashable, ...]) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\x00{stratum!r}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def largest_remainder(count: int, weights: Mapping[str, float]) -> dict[str, int]:
    """How many of ``count`` items each split gets: floors, then remainders by fractional part."""
    names = list(weights)
    exact = [weights[name] * count for name in names]
    given = [int(np.floor(e)) for e in exact]
    left = count - sum(given)
    by_fraction = sorted(range(len(names)), key=lambda i: (-(exact[i] - given[i]), i))
    for i in by_fraction[:left]:
        given[i] += 1
    return dict(zip(names, given))


def assign_splits(
    patients: Mapping[str, Sequence[Hashable]] | Sequence[str],
    weights: Mapping[str, float],
    *,
    seed: int = 0,
    min_stratum: int = MIN_STRATUM,
) -> dict[str, str]:
    """Split name of every patient.

    ``patients`` maps a patient key to its stratum values (or is a plain list of keys: one
    stratum). ``weights`` (name -> weight) need not sum to 1.
    """
    total = float(sum(weights.values()))
    if not weights or total <= 0 or any(w < 0 for w in weights.values()):
        raise UserError("split weights must be non-negative and not all zero")
    norm = {name: w / total for name, w in weights.items()}
    strata_of: Mapping[str, Sequence[Hashable]] = (
        patients if isinstance(patients, Mapping) else {p: () for p in patients}
    )
    strata: dict[tuple[Hashable, ...], list[str]] = defaultdict(list)
    for patient, values in strata_of.items():
        strata[tuple(values)].append(patient)
    names = list(norm)
    probabilities = np.asarray([norm[n] for n in names])
    out: dict[str, str] = {}
    for stratum in sorted(strata, key=repr):
        members = sorted(strata[stratum])
        rng = _rng(seed, stratum)
        if len(members) >= min_stratum:
            shuffled = [members[i] for i in rng.permutation(len(members))]
            start = 0
            for name, size in largest_remainder(len(shuffled), norm).items():
                for patient in shuffled[start:start + size]:
                    out[patient] = name
                start += size
        else:
            for patient in members:
                out[patient] = names[int(rng.choice(len(names), p=probabilities))]
    return out
