"""Checking that a dataset is de-identified (run by the commons on what arrives).

:func:`check_deidentified` looks at a dataset alone (no key, no original) and lists
what contradicts PS3.15 Annex E as RadCommons applies it:

* (0012,0062) Patient Identity Removed is YES and (0012,0064) lists CID 7050 codes
  including 113100 (Basic Profile); (0028,0303) is MODIFIED when 113107 is claimed;
* no identifier patterns (e-mail, phone, SSN-like, names after titles, dates written
  in text, runs of 5+ digits) in any text element, nested or private; a CPT code
  (five digits, 00100-99499) in a procedure description is not an identifier;
* Patient ID (wherever it occurs) is a pseudonym: the engine's (``RC`` + 20 base32 characters)
  passes; any other value (another tool's pseudonym) passes unless it is shaped like a person's
  name (``^``, a comma, or words separated by blanks), like an MRN (a run of 5+ digits with at most
  a 3-letter prefix) or holds an identifier pattern; Patient's Name may equal Patient ID only when
  Patient ID passes;
* no person names except the pseudonym in Patient's Name; Patient's Birth Date empty;
* Patient's Age not over 90 years (ages over 89 are one category, written ``090Y``);
* when no date shifting is claimed (113107 not listed), no date (DA, DT) holds a value;
* Institution Name, Address and Department Name empty or a dummy unless 113112 (Retain
  Institution Identity) is claimed, Station Name unless 113109 (Retain Device Identity) is;
* private attributes only from the safe-private allow list, only in a context (chain of
  enclosing sequences) where TCIA reviewed them (the engine's rule,
  :func:`~radcommons.deid.safe_private.disposition_in_context`), and only when 113111 is
  claimed;
* every instance UID (incl. File Meta) in ``2.25.<integer>`` form;
* Burned In Annotation not YES.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from radcommons.deid.patterns import find_patterns, is_cpt_code
from radcommons.deid.pseudonyms import PREFIX as PSEUDONYM_PREFIX
from radcommons.deid.safe_private import (
    AllowList,
    disposition,
    disposition_in_context,
    load_allow_list,
    sequence_signature,
)
from radcommons.deid.table import DUMMY_TEXT
from radcommons.deid.uids import CLASS_UID_KEYWORDS, is_deidentified_uid, is_well_known
from radcommons.dicom.elements import string_values

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
#: attributes whose values are pseudonyms or codes, not free text
_NOT_FREE_TEXT = frozenset(
    {"PatientID", "PatientName", "DeidentificationMethod", "CodeValue", "CodingSchemeDesignator"}
)
#: procedure descriptions, where a 5-digit CPT code is a procedure code, not an identifier
_DESCRIPTIONS = frozenset({
    "StudyDescription", "SeriesDescription", "RequestedProcedureDescription",
    "PerformedProcedureStepDescription", "CodeMeaning",
})
#: the engine's pseudonym (:func:`radcommons.deid.pseudonyms.patient_pseudonym`)
_ENGINE_PSEUDONYM = re.compile(rf"{PSEUDONYM_PREFIX}[A-Z2-7]{{20}}")
#: an MRN: a run of 5+ digits, alone or after a prefix of at most 3 letters ("MRN", "ID"), separators ignored
_MRN_LIKE = re.compile(r"[A-Za-z]{0,3}\d{5,}")
#: a person's name: components joined by ^ or a comma, or two words separated by blanks
_NAME_LIKE = re.compile(r"[^\W\d_][^\^,]*[\^,]|[^\W\d_]{2,}\s+[^\W\d_]{2,}")
#: attributes Annex E removes or replaces with a dummy (X/Z/D), by the CID 7050 code of the option
#: that keeps them
_REMOVED_UNLESS = {
    "InstitutionName": "113112", "InstitutionAddress": "113112", "InstitutionalDepartmentName": "113112",
    "StationName": "113109",
}
#: dummy values de-identifiers write for action D (compared in upper case)
_DUMMIES = frozenset({DUMMY_TEXT, "ANONYMOUS", "ANONYMISED", "REMOVED", "DEIDENTIFIED", "DE-IDENTIFIED"})
#: Patient's Age (AS) above this many years is not the over-89 category
_AGE_CAP_YEARS = 90


@dataclass(frozen=True)
class Finding:
    """One problem: a short code, where it is, and what is wrong."""

    code: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} at {self.path}: {self.message}"


#: Verdicts of element values already seen: ``(tag, VR, raw bytes, character set, pseudonym, keywords
#: that must be removed)`` ->
#: ``((code, message), ...)``. The instances of a series repeat most of their text values byte for
#: byte, so a repeated value is neither decoded nor searched again. Cleared when full.
_VERDICTS: dict[tuple[int, str, bytes, str, str], tuple[tuple[str, str], ...]] = {}
#: Findings of whole sequences already seen, by their undecoded bytes and everything else a
#: finding depends on (context, creator, pseudonym, whether 113111 is claimed): ``((code, path
#: below the sequence's prefix, message), ...)``. Sequences repeat within a series (method codes,
#: request attributes...) and decoding one builds a dataset per item.
_SEQUENCES: dict[tuple, tuple[tuple[str, str, str], ...]] = {}
#: De-identification method codes (0012,0064) by the sequence's undecoded bytes.
_METHOD_CODES: dict[tuple[bytes, str], frozenset[str]] = {}
_CACHE_MAX = 16384
#: Sequences larger than this are not remembered (their bytes are the key).
_SEQUENCE_KEY_MAX = 64 * 1024
#: VRs of the single flags the gate reads whose plain-ASCII bytes decode to themselves.
_PLAIN_VRS = frozenset({"CS", "LO", "SH", "DA"})
_METHOD_CODE_SEQUENCE = 0x00120064
_DATE_VRS = frozenset({"DA", "DT"})


def _has_value(element: DataElement | RawDataElement) -> bool:
    """Whether a date element holds a value (its bytes less padding, or its decoded value)."""
    if isinstance(element, RawDataElement):
        return bool(bytes(element.value or b"").strip(b" \0\\"))
    return any(str(v).strip() for v in string_values(element.value))


def _remember(cache: dict, key: object, value: object) -> None:
    """Store ``value`` under ``key``, emptying ``cache`` first when it is full."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def _plain(ds: Dataset, keyword: str) -> str:
    """``str(ds.get(keyword) or "")``, read from the undecoded bytes when that is safe.

    Bytes that are printable ASCII, do not start with a blank and hold no backslash decode to
    themselves less trailing blanks and NULs in every character set pydicom knows; anything else
    is decoded by pydicom. (An empty value reads as ``""``, which every caller judges as it
    judges a missing one.)
    """
    item = ds.get_item(_tag(keyword))
    if isinstance(item, RawDataElement) and item.VR in _PLAIN_VRS and item.value is not None:
        raw = bytes(item.value).rstrip(b" \0")
        if not raw:
            return ""
        if raw[0] != 0x20 and b"\\" not in raw and raw.isascii() and raw.decode("ascii").isprintable():
            return raw.decode("ascii")
    return str(ds.get(keyword, "") or "")


def _method_codes(ds: Dataset) -> frozenset[str]:
    """The DCM code values of (0012,0064) De-identification Method Code Sequence."""
    item = ds.get_item(_METHOD_CODE_SEQUENCE)
    key = None
    if isinstance(item, RawDataElement) and item.VR == "SQ" and item.value:
        key = (bytes(item.value), repr(ds._character_set))
        if key in _METHOD_CODES:
            return _METHOD_CODES[key]
    codes = frozenset(
        str(entry.get("CodeValue", ""))
        for entry in (ds.get("DeidentificationMethodCodeSequence") or [])
        if str(entry.get("CodingSchemeDesignator", "")) == "DCM"
    )
    if key is not None:
        _remember(_METHOD_CODES, key, codes)
    return codes


def _path(prefix: str, tag: int) -> str:
    """``(gggg,eeee)`` after its sequence prefix; only built for findings and sequences."""
    return f"{prefix}({tag >> 16:04X},{tag & 0xFFFF:04X})"


@lru_cache(maxsize=8192)
def _pattern_hits(text: str, strong_only: bool) -> tuple[str, ...]:
    """:func:`find_patterns`, remembered: the instances of a series repeat most of their text values."""
    return tuple(find_patterns(text, strong_only=strong_only))


@lru_cache(maxsize=4096)
def _keyword(tag: int) -> str:
    """The dictionary keyword of a tag (``""`` for private and unknown tags)."""
    return keyword_for_tag(tag) or ""


@lru_cache(maxsize=64)
def _tag(keyword: str) -> int:
    """The tag of a dictionary keyword."""
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return tag


def _raw_uids(value: bytes | None) -> list[str]:
    """The values of a UI element from its bytes, as pydicom decodes them (``convert_UI``:
    ISO 8859-1, trailing NULs and spaces removed, split at backslashes); no DataElement is built."""
    if not value:
        return []
    text = value.decode("iso8859").rstrip("\0 ")
    return [part for part in text.split("\\") if part] if text else []


def _uid_verdicts(keyword: str, uids: list[str]) -> tuple[tuple[str, str], ...]:
    """UID findings: every UID that is not a registry UID must be in ``2.25.<integer>`` form."""
    if keyword in CLASS_UID_KEYWORDS:
        return ()
    return tuple(("uid-form", f"{uid} is not a 2.25 UID") for uid in uids
                 if uid and not is_well_known(uid) and not is_deidentified_uid(uid))


def patient_id_problem(value: str) -> str | None:
    """Why a Patient ID is no pseudonym (``None``: it passes; so does an empty one).

    The engine's pseudonym passes; another tool's pseudonym (a hash, ``ANON0001``) passes unless it
    is shaped like a person's name or an MRN, or holds an identifier pattern.
    """
    value = value.strip()
    if not value or _ENGINE_PSEUDONYM.fullmatch(value):
        return None
    if _NAME_LIKE.search(value):
        return "Patient ID is shaped like a person's name, not a pseudonym"
    if _MRN_LIKE.fullmatch(re.sub(r"[\s._/-]", "", value)):
        return "Patient ID is shaped like a medical record number, not a pseudonym"
    if _pattern_hits(value, True):
        return "Patient ID holds identifier-like text, not a pseudonym"
    return None


def _age_over_cap(value: str) -> bool:
    """Whether an AS value (``095Y``) is an age above the over-89 category."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", value.upper())
    if not match:
        return False
    per_year = {"D": 365, "W": 52, "M": 12, "Y": 1}[match.group(2)]
    return int(match.group(1)) / per_year > _AGE_CAP_YEARS


def _value_verdicts(keyword: str, vr: str, private: bool, value: object, pseudonym: str,
                    removed: frozenset[str] = frozenset()) -> tuple[tuple[str, str], ...]:
    """What is wrong with one element's value: ``(code, message)`` pairs, path left out.

    ``removed``: the keywords that must be empty or a dummy (no option keeps them).
    """
    if vr == "UI":
        return _uid_verdicts(keyword, string_values(value))
    if keyword == "PatientID":
        problems = (patient_id_problem(text) for text in string_values(value))
        return tuple(("patient-id", problem) for problem in problems if problem)
    if keyword in removed:
        return tuple(("not-removed", f"{keyword} holds a value; the Basic Profile removes it or writes a dummy")
                     for text in string_values(value) if text.strip() and text.strip().upper() not in _DUMMIES)
    if keyword == "PatientAge":
        return tuple(("age-over-89", f"Patient's Age {text} is over 89 and not the {_AGE_CAP_YEARS:03d}Y category")
                     for text in string_values(value) if _age_over_cap(text))
    if vr == "PN":
        return tuple(("person-name", "a person name is present") for name in string_values(value)
                     if name and name != DUMMY_TEXT and not (keyword == "PatientName" and name == pseudonym))
    if vr in _TEXT_VRS and keyword not in _NOT_FREE_TEXT:
        found = []
        for text in string_values(value):
            hits = [h for h in _pattern_hits(text, private)
                    if h != pseudonym and not (keyword in _DESCRIPTIONS and is_cpt_code(h))]
            if hits:
                found.append(("residual-pattern", f"identifier-like text ({len(hits)} match(es))"))
        return tuple(found)
    return ()


class _Walk:
    """One pass over every element of a dataset, nested ones too, collecting findings.

    Only values a check reads are looked at (text, PN, UI, and sequences to descend): a text
    value is decoded only the first time its bytes are seen (:data:`_VERDICTS`), a UID is read
    from its bytes, and numbers, most of a header, are never decoded. An element whose VR the
    file does not give (implicit VR, UN) is converted to learn it.
    """

    def __init__(self, allow: AllowList, pseudonym: str, removed: frozenset[str] = frozenset(),
                 dates_kept: bool = True) -> None:
        self.allow = allow
        self.pseudonym = pseudonym
        #: keywords that must be empty or a dummy; whether dates may hold values (113107 claimed)
        self.removed = removed
        self.dates_kept = dates_kept
        self.findings: list[Finding] = []

    def dataset(self, ds: Dataset, prefix: str, context: tuple[str, ...]) -> None:
        """Check every element of ``ds``; ``context`` is the chain of enclosing sequence signatures."""
        charset = ""
        creators: dict[tuple[int, int], str | None] = {}
        for element in ds.elements():
            tag = element.tag
            vr = element.VR
            if vr is None or vr == "UN":
                element = ds[tag]
                vr = element.VR
            private = tag.group & 1 == 1
            creator: str | None = None
            if private:
                creator = self._private(ds, tag, prefix, context, creators)
            if vr == "SQ":
                if isinstance(element, RawDataElement) and element.value \
                        and len(element.value) <= _SEQUENCE_KEY_MAX:
                    if not charset:
                        charset = repr(ds._character_set)
                    self._raw_sequence(ds, element, prefix, context, creator, private, charset)
                else:
                    self._sequence(ds[tag], prefix, context, creator, private)
            elif vr in _DATE_VRS:
                if not self.dates_kept and _has_value(element):
                    self.findings.append(Finding("dates-not-shifted", _path(prefix, tag),
                                                 "a date is present but no date shifting (113107) is claimed"))
            elif vr == "UI" or vr in _TEXT_VRS or vr == "AS":
                if isinstance(element, RawDataElement):
                    if not charset:
                        charset = repr(ds._character_set)
                    verdicts = self._raw_verdicts(ds, element, vr, private, charset)
                else:
                    verdicts = _value_verdicts(_keyword(tag), vr, private, element.value, self.pseudonym,
                                               self.removed)
                for code, message in verdicts:
                    self.findings.append(Finding(code, _path(prefix, tag), message))

    def _raw_verdicts(self, ds: Dataset, raw: RawDataElement, vr: str, private: bool, charset: str
                      ) -> tuple[tuple[str, str], ...]:
        """Findings of a value not yet decoded: UIDs from the bytes, text through the cache."""
        tag = raw.tag
        if vr == "UI":
            return _uid_verdicts(_keyword(tag), _raw_uids(raw.value))
        key = (int(tag), vr, bytes(raw.value or b""), charset, self.pseudonym, self.removed)
        verdicts = _VERDICTS.get(key)
        if verdicts is None:
            element = ds[tag]  # decoded as pydicom decodes it, character set included
            verdicts = _value_verdicts(_keyword(tag), element.VR, private, element.value, self.pseudonym,
                                       self.removed)
            _remember(_VERDICTS, key, verdicts)
        return verdicts

    def _raw_sequence(self, ds: Dataset, raw: RawDataElement, prefix: str, context: tuple[str, ...],
                      creator: str | None, private: bool, charset: str) -> None:
        """A sequence not yet decoded: its findings from :data:`_SEQUENCES`, or from a walk of its items."""
        key = (int(raw.tag), bytes(raw.value), charset, self.pseudonym, context, creator, bool(self.allow),
               self.removed, self.dates_kept)
        found = _SEQUENCES.get(key)
        if found is None:
            inner = _Walk(self.allow, self.pseudonym, self.removed, self.dates_kept)
            inner._sequence(ds[raw.tag], "", context, creator, private)
            found = tuple((f.code, f.path, f.message) for f in inner.findings)
            _remember(_SEQUENCES, key, found)
        self.findings.extend(Finding(code, prefix + path, message) for code, path, message in found)

    def _private(self, ds: Dataset, tag: BaseTag, prefix: str, context: tuple[str, ...],
                 creators: dict[tuple[int, int], str | None]) -> str | None:
        """Check a private element against the safe list in its context (the engine's rule,
        :func:`~radcommons.deid.safe_private.disposition_in_context`); returns its creator."""
        if tag.element < 0x0010:
            self.findings.append(Finding("private", _path(prefix, tag), "illegal private element"))
            return None
        if tag.element <= 0x00FF:
            return None  # a private creator: checked with the elements of its block
        block = (tag.group, tag.element >> 8)
        if block not in creators:
            creator_tag = Tag(*block)
            value = ds[creator_tag].value if creator_tag in ds else None
            creators[block] = str(value) if value else None
        creator = creators[block]
        if disposition_in_context(self.allow, tag.group, creator, tag.element, "/".join(context)) is None:
            where = f" inside {'/'.join(context)}" if context and disposition(
                self.allow, tag.group, creator, tag.element) is not None else ""
            self.findings.append(Finding("private", _path(prefix, tag),
                                         f"private element of {creator!r} is not on the safe list{where}"))
        return creator

    def _sequence(self, element: DataElement, prefix: str, context: tuple[str, ...], creator: str | None,
                  private: bool) -> None:
        """Descend into the items of a sequence, its signature added to the context as the engine adds it."""
        tag = element.tag
        signature = sequence_signature(tag.group, tag.element, creator if private else None)
        path = _path(prefix, tag)
        inner = (*context, signature)
        for index, item in enumerate(element.value or []):
            self.dataset(item, f"{path}[{index}].", inner)


def check_deidentified(ds: Dataset) -> list[Finding]:
    """Everything in ``ds`` that says it is not (properly) de-identified; ``[]`` if clean."""
    findings: list[Finding] = []
    # Exactly YES: CS values are upper case (PS3.5 6.2), and a writer that got this wrong
    # cannot be trusted to have done the rest; a privacy officer would not accept "yes".
    identity_removed = _plain(ds, "PatientIdentityRemoved")
    if identity_removed != "YES":
        shown = f"'{identity_removed}'" if identity_removed else "empty"
        findings.append(Finding("identity-not-removed", "(0012,0062)",
                                f"Patient Identity Removed is {shown}, not YES"))
    codes = _method_codes(ds)
    if "113100" not in codes:
        findings.append(
            Finding("no-method-codes", "(0012,0064)", "CID 7050 code 113100 (Basic Profile) not listed")
        )
    if "113107" in codes and _plain(ds, "LongitudinalTemporalInformationModified") != "MODIFIED":
        findings.append(
            Finding("dates-flag", "(0028,0303)", "113107 claimed but Longitudinal Temporal Information Modified is not MODIFIED")
        )
    if _plain(ds, "BurnedInAnnotation").upper() == "YES":
        findings.append(Finding("burned-in", "(0028,0301)", "Burned In Annotation is YES"))
    if _plain(ds, "PatientBirthDate"):
        findings.append(Finding("birth-date", "(0010,0030)", "Patient's Birth Date is not empty"))
    pseudonym = _plain(ds, "PatientID")
    if patient_id_problem(pseudonym):
        pseudonym = ""  # not a pseudonym: Patient's Name equal to it is a name like any other
    allow = load_allow_list() if "113111" in codes else {}
    removed = frozenset(keyword for keyword, kept_by in _REMOVED_UNLESS.items() if kept_by not in codes)

    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
        if uid and not is_deidentified_uid(uid):
            findings.append(Finding("uid-form", "(0002,0003)", f"{uid} is not a 2.25 UID"))

    walk = _Walk(allow, pseudonym, removed, dates_kept="113107" in codes)
    walk.dataset(ds, "", ())
    return findings + walk.findings
