"""The curator's review queue: pairs the matcher could not answer confidently, busiest first.

Curators map the long tail by hand every month; ordering the queue by how many studies carry
each pair puts the pairs that matter for searches first. Each item shows the matcher's best
suggestion so a curator can accept it in one step (the decision then wins: see
:class:`~radcommons.harmonize.matcher.Decision`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from radcommons.harmonize.matcher import Match, Matcher
from radcommons.harmonize.normalize import midrc_key
from radcommons.harmonize.tables import StudyPair


@dataclass(frozen=True)
class ReviewItem:
    """One pair waiting for a curator, with how many studies carry it and the suggestion."""

    rank: int
    modality: str
    description: str
    studies: int
    suggestion: Match


def review_queue(pairs: Iterable[StudyPair], matcher: Matcher, only_unanswered: bool = True) -> list[ReviewItem]:
    """Pairs below the matcher's threshold, most studies first (ties: modality, description).

    The same pair listed twice (after MIDRC's normalisation) is one item with the studies
    added up. ``only_unanswered=False`` lists every pair (the index's pending pairs have no
    code whatever the matcher answers now), each with the matcher's suggestion.
    """
    merged: dict[tuple[frozenset[str], str], list] = {}
    for pair in pairs:
        key = midrc_key(pair.modality, pair.description)
        if key in merged:
            merged[key][2] += pair.frequency
        else:
            merged[key] = [pair.modality, pair.description, pair.frequency]
    waiting = []
    items = list(merged.values())
    matches = matcher.match_all([(modality, description) for modality, description, _ in items])
    for (modality, description, studies), match in zip(items, matches, strict=True):
        if not (only_unanswered and match.accepted):
            waiting.append((modality, description, studies, match))
    waiting.sort(key=lambda item: (-item[2], item[0], item[1]))
    return [
        ReviewItem(rank=i, modality=m, description=d, studies=n, suggestion=match)
        for i, (m, d, n, match) in enumerate(waiting, start=1)
    ]
