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
from radcommons.harmonize.catalogue import with_codes
from radcommons.harmonize.confidence import DEFAULT_THRESHOLD
from radcommons.harmonize.matcher import Decision, Matcher
from radcommons.harmonize.normalize import midrc_key, modality_tokens, normalize_space_case
from radcommons.harmonize.tables import CodeInfo, MappingRow, MappingTable, builtin_table

#: The imaging_study columns harmonization sets (all of them, so a decision can clear them).
CODE_FIELDS = ("loinc_code", "loinc_long_common_name", "loinc_method", "loinc_system", "loinc_contrast")

#: The key of a decision: (modality alias group such as ``CR/DX``, MIDRC-normalised description).
DecisionKey = tuple[str, str]

#: The longest study description a decision keeps, as given (white space collapsed) and as its
#: key (upper-cased too): the index's ``harmonization_decision`` columns hold 256 characters.
MAX_DESCRIPTION = 256


@functools.lru_cache(maxsize=1)
def builtin_matcher() -> Matcher:
    """The matcher over MIDRC's curated table shipped with the package."""
    return Matcher(builtin_table())


def curated_matcher(rows: tuple[MappingRow, ...] = (), codes: tuple[CodeInfo, ...] = (), *,
                    table: MappingTable | None = None, threshold: float = DEFAULT_THRESHOLD) -> Matcher:
    """The matcher with more curated rows (curators' decisions) and more codes (an operator's
    imports): the decisions' sibling pairs ("XR CHEST 2 VWS" once "XR CHEST 2 VIEWS" is decided)
    are answered by the same rules, and the imported codes may be answered and suggested.

    ``table`` replaces the built-in table (``harmonize queue --mapping-table``). The one way the
    index's matchers are built: indexing's (:class:`~radcommons.store.index.harmonization.StoredDecisions`)
    and the review queue's. Over the built-in table, the matchers are kept (a few at a time):
    building one per study or per request was the cost, not the lookups.
    """
    if table is None:
        return _builtin_curated_matcher(rows, codes, threshold)
    return _curated(table, rows, codes, threshold)


@functools.lru_cache(maxsize=4)
def _builtin_curated_matcher(rows: tuple[MappingRow, ...], codes: tuple[CodeInfo, ...], threshold: float) -> Matcher:
    if not rows and not codes and threshold == DEFAULT_THRESHOLD:
        return builtin_matcher()
    return _curated(builtin_table(), rows, codes, threshold)


def _curated(table: MappingTable, rows: tuple[MappingRow, ...], codes: tuple[CodeInfo, ...],
             threshold: float) -> Matcher:
    if rows:  # rows first: with_rows keeps only the codes that came with attributes, not the imported ones
        table = table.with_rows(table.rows + rows, source=f"{table.source} and curator decisions")
    return Matcher(with_codes(table, codes) if codes else table, threshold=threshold)


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
    ``series.modality``) made a decision that no study would ever match; a description that is
    empty or longer than the index keeps (:func:`decision_description`)."""
    from radcommons.dictionary import load_dictionary

    known = load_dictionary()["series"].get("modality").enum
    unknown = [t for t in modality_tokens(modality) if t not in known]
    if unknown:
        raise UserError(f"modality {unknown[0]!r} is not a DICOM modality, so no study carries it",
                        "give the studies' Modality as DICOM writes it: CR, DX, CT, MR, US, MG, PT, NM, RF, XA ...")
    decision_description(description)
    key = decision_key(modality, description)
    if key is None:
        raise UserError(
            f"modality {modality!r}: give exactly one modality (CR and DX count as one, as do CT and PT)",
            "e.g. radcommons harmonize decide DX 'XR CHEST 2 VIEWS' 36643-5",
        )
    return key


def decision_description(description: str) -> str:
    """The description a decision stores (white space collapsed), or a :class:`UserError` when it
    is empty (also as MIDRC reads it: ``[blank]`` or only quotes) or either it or its key is longer
    than :data:`MAX_DESCRIPTION`. The one check of both the server's request body and the store."""
    kept = " ".join(description.split())
    key = normalize_space_case(description)
    if not key:
        raise UserError("the study description is empty" + (f" as MIDRC reads it ({kept!r})" if kept else ""),
                        "give the description as the studies carry it")
    length = max(len(kept), len(key))
    if length > MAX_DESCRIPTION:
        how = "once white space is collapsed" if len(kept) >= len(key) else "once white space is collapsed " \
            "and it is upper-cased"
        raise UserError(f"the study description is {length} characters long {how}; "
                        f"the index keeps at most {MAX_DESCRIPTION}",
                        f"give the description as the index stores it (its first {MAX_DESCRIPTION} characters)")
    return kept


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
