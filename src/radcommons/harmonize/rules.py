"""Rules: read method, body region, views and contrast out of a description or a code's name.

The same reader parses a site's description ("XR PORT CHEST 1V") and a code's long common
name ("Portable XR Chest AP single view"), so the two meet in one vocabulary
(:class:`Features`). The matcher then uses the features two ways: curated rows that share a
description's features vote for their code, and a code whose own name has the same features
is a candidate even when no curated row names it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from radcommons.harmonize.normalize import METHODS, REGIONS, canonical_tokens, exams_named, modality_groups

#: Method read from the modality when the description does not name one.
MODALITY_METHOD: dict[str, str] = {
    "CR/DX": "XR",
    "CT/PT": "CT",
    "MR": "MR",
    "US": "US",
    "NM": "NM",
    "ST": "NM",
    "MG": "MG",
    "RF": "RF",
    "XA": "RF",
}

#: Words naming what the exam is for; a description and a code must agree on them.
PURPOSES: frozenset[str] = frozenset(
    {"PE", "SCREENING", "CALCIUM", "BIOPSY", "TUBE", "INSPEXP", "PERFUSION", "TOMO", "LIMITED", "BRONCHOSCOPY"}
)

PROJECTIONS: frozenset[str] = frozenset(
    {"AP", "PA", "LATERAL", "OBLIQUE", "OBLIQUES", "FRONTAL", "UPRIGHT", "SUPINE", "DECUBITUS"}
)

#: Words that name a kind of exam within a method and region ("US Heart Transthoracic", "XR Chest
#: Single view during surgery"): a code naming one is no answer for a description without it.
QUALIFIERS: frozenset[str] = frozenset(
    """CINE FUNCTION STRESS VENTILATION TRANSTHORACIC TRANSESOPHAGEAL TRANSABDOMINAL TRANSVAGINAL
    SURGERY VIDEOGRAPHY SWALLOWING RUNOFF""".split()
)
LATERALITY: frozenset[str] = frozenset({"LEFT", "RIGHT", "BILATERAL"})


@dataclass(frozen=True)
class Features:
    """What a description or code name says about the exam, in one vocabulary."""

    method: str | None
    angio: bool = False
    regions: frozenset[str] = frozenset()
    contrast: str | None = None
    views: str | None = None
    projections: frozenset[str] = frozenset()
    portable: bool = False
    laterality: str | None = None
    purposes: frozenset[str] = frozenset()
    qualifiers: frozenset[str] = frozenset()
    #: How many exams the text joins (:func:`~radcommons.harmonize.normalize.exams_named`).
    exams: int = 1

    @property
    def informative(self) -> bool:
        """True when at least a body region is known (a method alone names no exam)."""
        return bool(self.regions)

    def core(self) -> Features:
        """The features without views and projections (what CT/MR codes distinguish)."""
        return replace(self, views=None, projections=frozenset())


def _method(tokens: set[str], modality: str) -> str | None:
    named = [m for m in METHODS if m in tokens]
    raw = {t for t in re.split(r"[^A-Z]+", modality.upper()) if t}
    if "PET" in named or raw & {"PT", "CTPT", "PET"}:
        # PET/CT arrives as modality PT or "CT, PT"; the PET is the exam.
        return "PET"
    if named:
        return named[0]
    from_modality = {MODALITY_METHOD.get(g, g) for g in modality_groups(modality)}
    if len(from_modality) == 1:
        return next(iter(from_modality))
    return None


@lru_cache(maxsize=65536)
def features(description: str, modality: str = "") -> Features:
    """Read :class:`Features` from a description (``modality`` fills in the method)."""
    tokens = set(canonical_tokens(description, modality))
    contrast = next((t.split("_", 1)[1] for t in tokens if t.startswith("CONTRAST_")), None)
    regions = {t for t in tokens if t in REGIONS}
    purposes = {t for t in tokens if t in PURPOSES}
    angio = "ANGIO" in tokens or "VESSELS" in tokens or "ARTERIES" in tokens
    qualifiers = tokens & QUALIFIERS
    method = _method(tokens, modality)
    if _pulmonary_angiogram(tokens, method, contrast):
        angio = True
    if "PULMONARY" in tokens:
        regions.add("CHEST")
        if angio and not tokens & _NOT_PULMONARY_ARTERIES:
            # The pulmonary arteries' CTA ("CTA Pulmonary arteries W contrast IV"); whether it is
            # the PE study is said by "PE" or "embolus" only: MIDRC's curators answer "CT ANGIO
            # PULMONARY" with the former and "CT CHEST PULMONARY ANGIO WITH IV CON" the latter.
            qualifiers.add("PULMONARY")
    if "PE" in purposes:
        angio = True
        regions.add("CHEST")
        qualifiers.add("PULMONARY")
    if "CALCIUM" in purposes:
        # Calcium scoring names the coronary arteries but is no angiogram.
        angio = False
        regions.discard("CHEST")
        regions.add("HEART")
    if "HEART" in regions and "CHEST" in regions and "CALCIUM" not in purposes:
        regions.discard("CHEST")
    if "HIRES" in tokens and contrast is None:
        # High-resolution chest CT is done without contrast.
        contrast = "WO"
    if "LOWDOSE" in tokens and "CHEST" in regions and "PE" not in purposes and "PET" not in tokens:
        # A low-dose chest CT screens for lung cancer, unless it follows a nodule up (LOINC
        # has no follow-up code: "CT Chest WO contrast", as MIDRC's curators answer it).
        if not tokens & {"NODULE", "NODULES", "FU", "FOLLOWUP", "FOLLOW"} or "SCREENING" in tokens:
            purposes.add("SCREENING")
    views = next((t for t in sorted(tokens) if t.startswith("VIEWS")), None)
    laterality = next((t for t in ("BILATERAL", "LEFT", "RIGHT") if t in tokens), None)
    # Counted from the text itself: a raw word ("EXAMS2", "EXAMSX") is no count of exams.
    exams = max(exams_named(description), 1)
    return Features(
        method=method,
        angio=angio,
        regions=frozenset(regions),
        contrast=contrast,
        views=views,
        projections=frozenset(tokens & PROJECTIONS),
        portable="PORTABLE" in tokens,
        laterality=laterality,
        purposes=frozenset(purposes),
        qualifiers=frozenset(qualifiers),
        exams=exams,
    )


#: Words after which "PULMONARY" names no pulmonary arteries (veins, a nodule, the heart's study).
_NOT_PULMONARY_ARTERIES = frozenset({"VEIN", "VEINS", "NODULE", "NODULES", "HEART", "PERFUSION", "PET"})


def _pulmonary_angiogram(tokens: set[str], method: str | None, contrast: str | None) -> bool:
    """A contrast CT of the "pulmonary" is the pulmonary CTA, as MIDRC's curators answer "CT
    PULMONARY W/CONTRAST" ("CTA Pulmonary arteries W contrast IV"); without contrast, or of the
    pulmonary veins or a nodule, it is not."""
    return (
        "PULMONARY" in tokens and method == "CT" and contrast == "W"
        and not tokens & _NOT_PULMONARY_ARTERIES
    )


def code_features(long_common_name: str) -> Features:
    """Read :class:`Features` from a code's long common name ("CTA Chest vessels W contrast IV")."""
    name = long_common_name.replace("PET+CT", "PET CT").replace("--", " ")
    # LOINC writes contrast as "W contrast IV", "WO contrast", "WO and W contrast IV".
    parsed = features(name)
    if parsed.method is None and "PORTABLE" in name.upper():
        parsed = replace(parsed, method="XR")
    if "SINGLE VIEW" in name.upper() and parsed.views is None:
        parsed = replace(parsed, views="VIEWS1")
    return parsed


@dataclass(frozen=True)
class Fit:
    """How a code's features fit a description's, attribute by attribute.

    ``same``: attributes both state alike; ``broader``: attributes the description states and
    the code leaves open (the code covers the exam, less specifically: "CT PELVIS WO CONTRAST"
    and "CT Pelvis"); ``guessed``: attributes the code states and the description does not
    (answering it would guess them: "CT HEAD" and "CT Head WO contrast").
    """

    guessed: int
    same: int
    broader: int

    @property
    def kind(self) -> str:
        """``same`` (the code states what the description states), ``broader`` or ``guess``."""
        if self.guessed:
            return "guess"
        return "broader" if self.broader else "same"

    @property
    def rank(self) -> tuple[int, int, int]:
        """Sort key, best first: fewer guesses, more attributes stated alike, fewer left open."""
        return (self.guessed, -self.same, self.broader)


_VIEW_RANGE = re.compile(r"^VIEWS(\d)(?:OR(\d)|(PLUS))?$")
#: The projections a radiograph counts as one view each (for "AP+LAT" read as 2 views).
_COUNTED = ("AP", "PA", "LATERAL", "OBLIQUE", "OBLIQUES")
#: Positions that may repeat the projections ("AP+LAT, SUPINE+UPRIGHT"): the count is unknown.
_POSITIONS = frozenset({"SUPINE", "UPRIGHT", "DECUBITUS"})


def _views(parsed: Features) -> tuple[tuple[float, float] | None, bool]:
    """The number of views as a range (1, 1), (2, 3), (3, inf), and whether it was stated.

    A description that lists its projections ("AP+LAT") and no count has that many views.
    """
    found = _VIEW_RANGE.match(parsed.views or "")
    if found:
        low = int(found.group(1))
        high = float("inf") if found.group(3) else int(found.group(2) or low)
        return (low, high), True
    counted = sum(1 for p in _COUNTED if p in parsed.projections)
    if counted < 2 or parsed.projections & _POSITIONS:
        return None, False
    return (counted, counted), False


def _views_grade(description: Features, code: Features) -> str:
    """:func:`_graded` for view counts: a count inside the code's range ("3 VIEWS", "GE 3 Views")
    is the same, an overlapping one a guess, a disjoint one a conflict.

    A count read from listed projections ("AP+LAT") only rules codes out: the projections
    themselves are compared, so "PA AND LAT" is "XR Chest PA and Lateral" before "2 Views".
    """
    mine, mine_stated = _views(description)
    theirs, theirs_stated = _views(code)
    if mine is None or theirs is None:
        if mine is None and theirs is not None and theirs_stated:
            return "guess"
        return "broader" if theirs is None and mine is not None and mine_stated else ""
    if theirs[0] <= mine[0] and mine[1] <= theirs[1]:
        # A count inside the code's range is what the range is for ("3 VIEWS", "GE 3 Views").
        return "same" if mine_stated else ""
    if mine[1] < theirs[0] or mine[0] > theirs[1]:
        return "conflict"
    return "guess"


def _projections_grade(description: frozenset[str], code: Features, counted: tuple[float, float] | None) -> str:
    """:func:`_graded` for projections; a code that states a view count and no projections
    leaves none open when the listed projections make a count inside its range ("AP, LAT,
    OBL" and "XR Foot - right GE 3 Views")."""
    grade = _graded(description, code.projections)
    theirs, stated = _views(code)
    if grade == "broader" and not code.projections and stated and theirs and counted:
        if theirs[0] <= counted[0] and counted[1] <= theirs[1]:
            return ""
    return grade


def _graded(mine: frozenset[str], theirs: frozenset[str]) -> str:
    """Compare what the description (``mine``) and the code state as sets of words."""
    if mine == theirs:
        return "same" if mine else ""
    if theirs <= mine:
        return "broader"
    if mine <= theirs:
        return "guess"
    return "conflict"


def _frontal(description: frozenset[str], code: frozenset[str]) -> tuple[frozenset[str], bool]:
    """A "frontal" view is AP or PA: read it as the code's, a guess of which."""
    if "FRONTAL" in description and "FRONTAL" not in code and code & {"AP", "PA"}:
        return (description - {"FRONTAL"}) | (code & {"AP", "PA"}), True
    return description, False


def fit(description: Features, code: Features) -> Fit | None:
    """How ``code`` fits ``description``, or None when it cannot be the answer.

    Method, body regions and angiography must be equal: another region set is another exam
    (LOINC/RSNA Playbook codes name the imaged region exactly). Contrast timing, views,
    projections, laterality, portable, purposes and qualifiers are graded; one both state
    differently rules the code out. A description joining two exams fits only a code joining
    as many.
    """
    if description.method != code.method or description.regions != code.regions:
        return None
    if description.exams > 1 and code.exams != description.exams:
        # Two exams joined are answered by a code of that combination or by a curator, never as
        # one exam of their regions together. (One exam may name a combination code: sites
        # write "CT CHEST PELVIS W ABDOMEN WWO" for "CT Abdomen WO and CT Chest ... W".)
        return None
    if description.angio != code.angio:
        return None
    grades: list[str] = []
    projections, guessed = _frontal(description.projections, code.projections)
    if guessed:
        grades.append("guess")
    for mine, theirs in (
        (frozenset({description.contrast} - {None}), frozenset({code.contrast} - {None})),
        (frozenset({description.laterality} - {None}), frozenset({code.laterality} - {None})),
        (frozenset({"PORTABLE"} if description.portable else ()), frozenset({"PORTABLE"} if code.portable else ())),
        (description.purposes, code.purposes),
        (description.qualifiers, code.qualifiers),
    ):
        grades.append(_graded(mine, theirs))
    counted = _views(replace(description, views=None))[0]
    grades.append(_projections_grade(projections, code, counted))
    grades.append(_views_grade(description, code))
    if "conflict" in grades:
        return None
    return Fit(guessed=grades.count("guess"), same=grades.count("same"), broader=grades.count("broader"))


def best_fit(description: Features, codes: Mapping[str, Features]) -> tuple[tuple[str, ...], Fit] | None:
    """The codes that fit ``description`` best (:attr:`Fit.rank`), in ``codes`` order, and their fit.

    More than one code is an ambiguity the caller must not answer with confidence ("CHEST 1
    VIEW" would fit "XR Chest Single view" and "... during surgery" alike were the surgery
    qualifier unread).
    """
    best: Fit | None = None
    tied: list[str] = []
    for code, parsed in codes.items():
        found = fit(description, parsed)
        if found is None or (best is not None and found.rank > best.rank):
            continue
        if best is None or found.rank < best.rank:
            best, tied = found, []
        tied.append(code)
    return None if best is None else (tuple(tied), best)


def contradicts(description: Features, code: Features) -> str:
    """Why a code cannot be the answer for a description ("" when nothing contradicts).

    Only what both state counts: a description silent on contrast contradicts no timing.
    Similarity ranking uses this so "XR RIGHT WRIST" never lands on the left wrist's code.
    """
    if description.method and code.method and description.method != code.method:
        return "method"
    if description.regions and code.regions and description.regions != code.regions:
        return "region"
    if description.laterality and code.laterality and description.laterality != code.laterality:
        return "laterality"
    if description.contrast and code.contrast and description.contrast != code.contrast:
        return "contrast"
    if description.views and code.views and description.views != code.views:
        return "views"
    if description.method == "XR" and description.portable != code.portable:
        return "portable"
    if description.purposes and description.purposes != code.purposes:
        return "purpose"
    if description.angio != code.angio and description.regions:
        return "angio"
    return ""
