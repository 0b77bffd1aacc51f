"""Rules: read method, body region, views and contrast out of a description or a code's name.

The same reader parses a site's description ("XR PORT CHEST 1V") and a code's long common
name ("Portable XR Chest AP single view"), so the two meet in one vocabulary
(:class:`Features`). The matcher then uses the features two ways: curated rows that share a
description's features vote for their code, and a code whose own name has the same features
is a candidate even when no curated row names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from radcommons.harmonize.normalize import canonical_tokens, modality_groups

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

METHODS = ("PET", "XR", "CT", "MR", "US", "NM", "MG", "RF")

#: Body-region words (after :mod:`~radcommons.harmonize.normalize`'s synonyms).
REGIONS: frozenset[str] = frozenset(
    """CHEST ABDOMEN PELVIS HEAD NECK CSPINE TSPINE LSPINE SPINE HEART BREAST RIBS ESOPHAGUS FACE
    WHOLEBODY KNEE SHOULDER HIP FOOT ANKLE HAND WRIST CLAVICLE ELBOW KIDNEY FINGER FINGERS TOE
    TOES HUMERUS FEMUR TIBIA FIBULA FOREARM LEG THIGH SCAPULA STERNUM SACRUM COCCYX ORBIT
    ORBITS MANDIBLE PANCREAS LIVER BLADDER PROSTATE AORTA THYROID HYPOPHARYNX PHARYNX""".split()
)

#: Words naming what the exam is for; a description and a code must agree on them.
PURPOSES: frozenset[str] = frozenset(
    {"PE", "SCREENING", "CALCIUM", "BIOPSY", "TUBE", "INSPEXP", "PERFUSION", "TOMO", "LIMITED", "BRONCHOSCOPY"}
)

PROJECTIONS: frozenset[str] = frozenset({"AP", "PA", "LATERAL", "FRONTAL", "UPRIGHT", "SUPINE"})
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
    if "PULMONARY" in tokens:
        regions.add("CHEST")
        if angio:
            # CT pulmonary angiography is the PE study whether or not the text says "PE".
            purposes.add("PE")
    if "PE" in purposes:
        angio = True
        regions.add("CHEST")
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
        purposes.add("SCREENING")
    views = next((t for t in sorted(tokens) if t.startswith("VIEWS")), None)
    laterality = next((t for t in ("BILATERAL", "LEFT", "RIGHT") if t in tokens), None)
    return Features(
        method=_method(tokens, modality),
        angio=angio,
        regions=frozenset(regions),
        contrast=contrast,
        views=views,
        projections=frozenset(tokens & PROJECTIONS),
        portable="PORTABLE" in tokens,
        laterality=laterality,
        purposes=frozenset(purposes),
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


def agree(description: Features, code: Features) -> tuple[bool, float]:
    """Whether a code's features fit a description's, and how completely (0..1).

    Hard disagreements (another method, region set, laterality, purpose or a contradicting
    contrast) rule a code out. A description silent on contrast or views fits a code that
    states them, for less.
    """
    if description.method != code.method or description.regions != code.regions:
        return False, 0.0
    if description.angio != code.angio or description.purposes != code.purposes:
        return False, 0.0
    if description.laterality != code.laterality:
        return False, 0.0
    if description.portable != code.portable:
        return False, 0.0
    score = 1.0
    if description.contrast != code.contrast:
        if description.contrast is not None and code.contrast is not None:
            return False, 0.0
        score -= 0.3
    if description.method == "XR":
        if description.views != code.views:
            if description.views is not None and code.views is not None:
                return False, 0.0
            score -= 0.2
        if description.projections != code.projections:
            score -= 0.1
    return True, score


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
