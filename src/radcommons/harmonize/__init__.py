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
:mod:`~radcommons.harmonize.review` (the review queue),
:mod:`~radcommons.harmonize.similarity` (TF-IDF ranking, without scikit-learn),
:mod:`~radcommons.harmonize.catalogue` (the LOINC/RSNA Radiology Playbook),
:mod:`~radcommons.harmonize.study_codes` (a study's code fields; curator decisions win),
:mod:`~radcommons.harmonize.evaluation` (cross-validation and coverage),
:mod:`~radcommons.harmonize.enumerations` (sex, race, ethnicity, body part ... values).

Pure domain code: no storage, HTTP or CLI imports.
"""

from __future__ import annotations

from radcommons.harmonize.enumerations import (
    Normalized,
    ValueNormalizer,
    load_site_mapping,
    normalize_body_part,
    normalize_ethnicity,
    normalize_race,
    normalize_sex,
    normalize_value,
)
from radcommons.harmonize.matcher import DEFAULT_THRESHOLD, Decision, ExactMatcher, Match, Matcher
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

__all__ = [
    "DEFAULT_THRESHOLD",
    "CodeInfo",
    "Conflict",
    "Decision",
    "ExactMatcher",
    "MappingRow",
    "MappingTable",
    "Match",
    "Matcher",
    "Normalized",
    "ReviewItem",
    "StudyPair",
    "ValueNormalizer",
    "builtin_table",
    "find_conflicts",
    "load_site_mapping",
    "load_table",
    "normalize_body_part",
    "normalize_ethnicity",
    "normalize_race",
    "normalize_sex",
    "normalize_value",
    "read_mapping_rows",
    "read_pairs",
    "review_queue",
]
