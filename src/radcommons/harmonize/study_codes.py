"""The harmonized study code fields of an imaging study, as the index records them.

One matcher over the built-in curated table is built per process. Building it is cheap
(about 0.02 s: the exact index only); the normalised-words, rules and similarity indexes are
built on the first pair the exact index cannot answer (about 0.2 s more), and scikit-learn
is never imported (see :mod:`~radcommons.harmonize.similarity`). Every study then costs one
lookup. Only answers at or above the threshold are recorded; the others stay empty and reach
the review queue.

A curator's decision for a pair (stored by :mod:`radcommons.store.index.harmonization`) wins
over the matcher: :func:`decision_key` is the pair's key and :func:`decision_fields` the
values it gives a study.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from radcommons.errors import UserError
from radcommons.harmonize.matcher import Decision, Matcher
from radcommons.harmonize.normalize import midrc_key, modality_tokens
from radcommons.harmonize.tables import CodeInfo, MappingRow, builtin_table

#: The imaging_study columns harmonization sets (all of them, so a decision can clear them).
CODE_FIELDS = ("loinc_code", "loinc_long_common_name", "loinc_method", "loinc_system", "loinc_contrast")

#: The key of a decision: (modality alias group such as ``CR/DX``, MIDRC-normalised description).
DecisionKey = tuple[str, str]


@functools.lru_cache(maxsize=1)
def builtin_matcher() -> Matcher:
    """The matcher over MIDRC's curated table shipped with the package."""
    return Matcher(builtin_table())


@functools.lru_cache(maxsize=4)
def curated_matcher(rows: tuple[MappingRow, ...] = ()) -> Matcher:
    """The built-in matcher with more curated rows (curators' decisions): their sibling pairs
    ("XR CHEST 2 VWS" once "XR CHEST 2 VIEWS" is decided) are answered by the same rules."""
    if not rows:
        return builtin_matcher()
    table = builtin_table()
    return Matcher(table.with_rows(table.rows + rows, source="built-in table and curator decisions"))


def decision_row(decision: Decision) -> MappingRow | None:
    """A decision as a curated row for the matcher (None for "not mappable": no code to teach)."""
    if not decision.code:
        return None
    return MappingRow(decision.modality, decision.description, decision.code, decision.long_common_name,
                      source="curator decision")


def decision_key(modality: str, description: str) -> DecisionKey | None:
    """The key a decision for this pair is stored under; None without exactly one modality group.

    >>> decision_key("DX", "xr  chest 1 view")
    ('CR/DX', 'XR CHEST 1 VIEW')
    """
    groups, text = midrc_key(modality, description)
    if len(groups) != 1 or not text:
        return None
    return next(iter(groups)), text


def require_decision_key(modality: str, description: str) -> DecisionKey:
    """:func:`decision_key`, or a :class:`UserError` saying what is wrong with the pair: a
    modality that is not a DICOM defined term (PS3.3 C.7.3.1.1.1, the data dictionary's
    ``series.modality``) made a decision that no study would ever match."""
    from radcommons.dictionary import load_dictionary

    known = load_dictionary()["series"].get("modality").enum
    unknown = [t for t in modality_tokens(modality) if t not in known]
    if unknown:
        raise UserError(f"modality {unknown[0]!r} is not a DICOM modality, so no study carries it",
                        "give the studies' Modality as DICOM writes it: CR, DX, CT, MR, US, MG, PT, NM, RF, XA ...")
    key = decision_key(modality, description)
    if key is None:
        if not description.strip():
            raise UserError("the study description is empty", "give the description as the studies carry it")
        raise UserError(
            f"modality {modality!r}: give exactly one modality (CR and DX count as one, as do CT and PT)",
            "e.g. radcommons harmonize decide DX 'XR CHEST 2 VIEWS' 36643-5",
        )
    return key


def decision_fields(decision: Decision, info: CodeInfo | None = None) -> dict[str, str | None]:
    """Every code column of a study for a decision: the code's values, or all None ("not mappable")."""
    if not decision.code:
        return dict.fromkeys(CODE_FIELDS)
    return {
        "loinc_code": decision.code,
        "loinc_long_common_name": (info.long_common_name if info else "") or decision.long_common_name or None,
        "loinc_method": (info.method if info else "") or None,
        "loinc_system": (info.system if info else "") or None,
        "loinc_contrast": (info.timing if info else "") or None,
    }


def study_code_fields(
    modality: str,
    description: str,
    decisions: Mapping[DecisionKey, Mapping[str, str | None]] | None = None,
    matcher: Matcher | None = None,
) -> Mapping[str, str | None]:
    """``loinc_*`` values of the data dictionary's imaging_study for one (Modality, StudyDescription).

    ``decisions`` maps :func:`decision_key` to the fields a curator's decision gives (see
    :func:`decision_fields`); a decided pair gets them, whatever the matcher says. Otherwise
    the answer of ``matcher`` (default: the built-in one; with decisions, see
    :func:`curated_matcher`): empty when the description is empty or no answer reaches the
    confidence threshold.
    """
    if not description.strip():
        return {}
    if decisions:
        key = decision_key(modality, description)
        if key is not None and key in decisions:
            return decisions[key]
    matcher = matcher or builtin_matcher()
    match = matcher.match(modality, description)
    if not match.accepted:
        return {}
    info = match.info or matcher.codes.get(match.code)
    fields = {"loinc_code": match.code, "loinc_long_common_name": match.long_common_name}
    if info is not None:
        fields.update(loinc_method=info.method, loinc_system=info.system, loinc_contrast=info.timing)
    return {name: value for name, value in fields.items() if value}
