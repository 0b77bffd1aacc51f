"""Harmonization: LOINC / RSNA Radiology Playbook study codes and normalised enumerations.

Study descriptions::

    >>> from radcommons.harmonize import Matcher, builtin_table
    >>> matcher = Matcher(builtin_table())
    >>> matcher.match("DX", "XR CHEST 1 VIEW AP").code
    '36572-6'

Modules: :mod:`~radcommons.harmonize.tables` (reading and checking mapping tables),
:mod:`~radcommons.harmonize.normalize` (MIDRC's and our description normalisation),
:mod:`~radcommons.harmonize.rules` (method/region/views/contrast features),
:mod:`~radcommons.harmonize.matcher` (the matcher and curator decisions),
:mod:`~radcommons.harmonize.confidence` (the confidence an answer needs without a curator),
:mod:`~radcommons.harmonize.review` (the review queue),
:mod:`~radcommons.harmonize.similarity` (TF-IDF ranking, without scikit-learn),
:mod:`~radcommons.harmonize.catalogue` (the LOINC/RSNA Radiology Playbook),
:mod:`~radcommons.harmonize.study_codes` (a study's code fields; curator decisions win),
:mod:`~radcommons.harmonize.evaluation` (cross-validation and coverage),
:mod:`~radcommons.harmonize.enumerations` (sex, race, ethnicity, body part ... values).

Pure domain code: no storage, HTTP or CLI imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radcommons.harmonize.confidence import DEFAULT_THRESHOLD
    from radcommons.harmonize.enumerations import (
        Normalized,
        ValueNormalizer,
        body_part_term,
        load_site_mapping,
        normalize_body_part,
        normalize_ethnicity,
        normalize_race,
        normalize_sex,
        normalize_value,
    )
    from radcommons.harmonize.matcher import Decision, ExactMatcher, Match, Matcher
    from radcommons.harmonize.review import ReviewItem, review_queue
    from radcommons.harmonize.tables import (
        CodeInfo,
        Conflict,
        MappingRow,
        MappingTable,
        StudyPair,
        builtin_table,
        find_conflicts,
        load_table,
        read_mapping_rows,
        read_pairs,
    )

#: Where each name of the package's API is defined. The modules are imported on first use
#: (PEP 562), so that a command that only needs a constant does not import NumPy and YAML.
_HOMES = {
    "DEFAULT_THRESHOLD": "confidence",
    **dict.fromkeys(("Normalized", "ValueNormalizer", "body_part_term", "load_site_mapping", "normalize_body_part",
                     "normalize_ethnicity", "normalize_race", "normalize_sex", "normalize_value"), "enumerations"),
    **dict.fromkeys(("Decision", "ExactMatcher", "Match", "Matcher"), "matcher"),
    **dict.fromkeys(("ReviewItem", "review_queue"), "review"),
    **dict.fromkeys(("CodeInfo", "Conflict", "MappingRow", "MappingTable", "StudyPair", "builtin_table",
                     "find_conflicts", "load_table", "read_mapping_rows", "read_pairs"), "tables"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = sorted(_HOMES)
