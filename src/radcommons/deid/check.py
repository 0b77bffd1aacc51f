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
* every instance UID (incl. File Meta) in ``2.25.<integer>`` form, and File Meta's Media Storage
  SOP Instance UID equal to the SOP Instance UID (a File Meta left as it was keeps the original);
  no File Meta Private Information (0002,0102);
* every attribute Table E.1-1 removes (Basic Profile action X: Other Patient IDs, Issuer of Patient
  ID, Patient's Address, Birth Time, Icon Image Sequence, Digital Signatures, overlay and curve
  data...) holds no value, wherever it occurs, unless a claimed option keeps or cleans it;
* content the gate cannot read holds nothing: an Encapsulated Document (PDF, CDA), a Content
  Sequence unless 113104 (Clean Structured Content) is claimed, graphic text objects unless 113103
  (Clean Graphics) is, an overlay in the pixel data's high bits; Recognizable Visual Features not YES;
* by SOP Class, whatever the instance holds: an encapsulated document (PDF, CDA, STL, OBJ, MTL;
  1.2.840.10008.5.1.4.1.1.104.x) is never published, and a structured report (...88.x) only when
  113104 is claimed (its content items are then read like any other element); an empty one too,
  since the gate cannot tell a document left out from one written where it does not look;
* every Integer and Decimal String (IS, DS) value is a number (the engine's rule,
  :func:`~radcommons.deid.engine.plain_number`, a decimal comma read as a point), and its digits
  are not a date (YYYYMMDD, 1900-2099) nor, in a public attribute that numbers things (Series,
  Instance, Acquisition Number...), a run of 8 or more digits (a record or accession number a
  vendor wrote there); measured values (a dose in Bq, counts) are not judged by length;
* an element whose VR in the file is not the dictionary's (Patient's Name written as LO or OB) is
  judged as the dictionary's VR, and quarantined when it cannot be read so;
* Burned In Annotation not YES, and an image with a burned-in text risk (the engine's header
  triage, :func:`~radcommons.deid.engine.pixel_review`: modality US/SC/OT..., screen captures,
  derived images) claims 113101 (Clean Pixel Data).

Findings name the element (its path) and what is wrong, not its value: the reason reaches the
sender's receipt, the curator's listing and operators' consoles; the quarantined file holds the
value for a curator who needs it. (A non-2.25 UID is shown by its first components only.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from radcommons.deid.patterns import find_patterns, is_cpt_code
from radcommons.deid.pseudonyms import PREFIX as PSEUDONYM_PREFIX
from radcommons.deid.safe_private import (
    AllowList,
    disposition,
    disposition_in_context,
    load_allow_list,
    sequence_signature,
)
from radcommons.deid.engine import (
    ENCAPSULATED_DOCUMENT_PREFIX,
    NUMBERING_IDENTIFIER_DIGITS,
    STRUCTURED_REPORT_PREFIX,
    date_like,
    identifier_form,
    number_bytes,
    pixel_review,
    plain_number,
)
from radcommons.deid.table import DUMMY_TEXT, OPTIONS, load_table
from radcommons.deid.uids import CLASS_UID_KEYWORDS, is_deidentified_uid, is_well_known
from radcommons.dicom.elements import PIXEL_TAGS, string_values

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
#: CID 7050 code -> option column name of Table E.1-1
_OPTION_OF_CODE = {code: name for name, (_, code, _) in OPTIONS.items()}
#: content the gate cannot read (free text in a document, structured content, graphics), by tag: the
#: CID 7050 code of the option that cleans it ("" none: always quarantined), and what it is
_UNREADABLE = {
    0x00420011: ("", "an encapsulated document (PDF, CDA) whose text the gate cannot check"),
    0x0040A730: ("113104", "a Content Sequence (structured free text) without Clean Structured Content (113104)"),
    0x00700008: ("113103", "graphic text objects without Clean Graphics (113103)"),
}
#: VRs the walk judges; an element written with another VR where the dictionary has one of these
#: is read as the dictionary's VR
_NUMBER_VRS = frozenset({"IS", "DS"})
_JUDGED_VRS = frozenset({"SQ", "UI", "AS", *_TEXT_VRS, *("DA", "DT"), *_NUMBER_VRS})


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
#: IS / DS verdicts (:func:`_number_verdicts`) by ``(tag, VR, bytes)``: a series repeats its numbers.
_NUMBERS: dict[tuple[int, str, bytes], tuple[tuple[str, str], ...]] = {}
_CACHE_MAX = 16384
#: Sequences larger than this are not remembered (their bytes are the key).
_SEQUENCE_KEY_MAX = 64 * 1024
#: VRs of the single flags the gate reads whose plain-ASCII bytes decode to themselves.
_PLAIN_VRS = frozenset({"CS", "LO", "SH", "DA"})
_METHOD_CODE_SEQUENCE = 0x00120064
_DATE_VRS = frozenset({"DA", "DT"})
#: an Item tag (FFFE,E000), little endian: how a sequence's bytes start
_ITEM_LE = b"\xfe\xff\x00\xe0"


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


@lru_cache(maxsize=64)
def _removed(codes: frozenset[str]) -> tuple[frozenset[str], frozenset[int]]:
    """What must hold no value given the claimed ``codes``: keywords whose text values are judged by
    :func:`_value_verdicts` (a dummy passes) and tags judged by presence of a value (any VR).

    Table E.1-1 rows whose Basic Profile action is X, unless a claimed option's cell keeps or cleans
    them (K, C...); Institution Name, Address, Department and Station Name unless their retain
    option is claimed; the content the gate cannot read (:data:`_UNREADABLE`) unless its option is.
    """
    options = {_OPTION_OF_CODE[code] for code in codes if code in _OPTION_OF_CODE}
    keywords = {keyword for keyword, kept_by in _REMOVED_UNLESS.items() if kept_by not in codes}
    tags = {tag for tag, (kept_by, _) in _UNREADABLE.items() if not kept_by or kept_by not in codes}
    for row in load_table().rows:
        if row.basic != "X" or row.tag_int is None:
            continue
        if any(row.options.get(option, "X") not in ("", "X") for option in options):
            continue
        keywords.add(_keyword(row.tag_int))
        tags.add(row.tag_int)
    return frozenset(keywords), frozenset(tags)


def _repeating_removed(tag: int, codes_graphics: bool) -> bool:
    """Curve data (50xx,eeee) and overlay data and comments (60xx,3000/4000): removed (X) unless
    Clean Graphics (113103) is claimed."""
    group = tag >> 16
    if codes_graphics or group & 1:
        return False
    return 0x5000 <= group <= 0x501E or (0x6000 <= group <= 0x601E and tag & 0xFFFF in (0x3000, 0x4000))


def _holds_value(ds: Dataset, element: DataElement | RawDataElement) -> bool:
    """Whether an element holds anything (bytes less padding, items, a non-blank value)."""
    value = element.value
    if element.VR == "SQ":
        return bool(ds[element.tag].value) if isinstance(element, RawDataElement) and value else bool(value)
    if isinstance(value, (bytes, bytearray)):
        return bool(bytes(value).strip(b" \0"))
    return any(str(v).strip() for v in string_values(value))


#: :func:`_dictionary_vr` by tag (a plain dict: looked up for every element of every header)
_DICTIONARY_VRS: dict[int, str] = {}


def _dictionary_vr(tag: int) -> str:
    """The VR the dictionary gives a public tag when the walk judges that VR (``""`` otherwise:
    unknown, one of several, or a VR no check reads)."""
    vr = _DICTIONARY_VRS.get(tag)
    if vr is None:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = ""
        vr = vr if vr in _JUDGED_VRS else ""
        _remember(_DICTIONARY_VRS, tag, vr)
    return vr


def _uid_shown(uid: str) -> str:
    """A UID as a finding shows it: its first four components (the organisation's root tells the
    curator which device or tool wrote it; the rest may encode dates, serials or record numbers)."""
    parts = uid.split(".")
    return uid if len(parts) <= 4 else ".".join(parts[:4]) + ".…"


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
    return tuple(("uid-form", f"{_uid_shown(uid)} is not a 2.25 UID") for uid in uids
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
        how = "removes it or writes a dummy" if keyword in _REMOVED_UNLESS else "removes it"
        return tuple(("not-removed", f"{keyword} holds a value; the Basic Profile {how}")
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


def _number_verdicts(tag: int, vr: str, raw: bytes) -> tuple[tuple[str, str], ...]:
    """What is wrong with an IS / DS value (its bytes): not a number, or digits an identifier would
    have. The gate knows no original ID, so it judges by form (:func:`~radcommons.deid.engine.identifier_form`,
    which the engine applies too, so that what it keeps passes), and a measured value is never judged by its length (a dose of
    370000000 Bq, counts in the millions)."""
    key = (tag, vr, raw)
    verdicts = _NUMBERS.get(key)
    if verdicts is None:
        looks = identifier_form(tag)
        verdicts = ()
        if not plain_number(raw, vr, frozenset()):
            verdicts = (("not-a-number", f"{_an(vr)} value is not a number (PS3.5 6.2): it may hold text"),)
        elif not plain_number(raw, vr, frozenset(), looks):
            what = "a date (YYYYMMDD)" if looks is date_like else \
                f"a date (YYYYMMDD) or a record number ({NUMBERING_IDENTIFIER_DIGITS}+ digits)"
            verdicts = (("number-identifier", f"{_an(vr)} value whose digits look like {what}"),)
        _remember(_NUMBERS, key, verdicts)
    return verdicts


def _an(vr: str) -> str:
    """``an IS``, ``a DS``: a VR with its article, as a finding reads."""
    return f"an {vr}" if vr == "IS" else f"a {vr}"


def _sop_class_findings(sop_class: str, codes: frozenset[str]) -> list[Finding]:
    """Instances whose SOP Class holds content the gate cannot read (see the module's docstring)."""
    name = f"{UID(sop_class).name} ({sop_class})" if sop_class else ""
    if sop_class.startswith(ENCAPSULATED_DOCUMENT_PREFIX):
        return [Finding("sop-class", "(0008,0016)", f"{name} is an encapsulated document, which the gate cannot "
                        "read: a curator must review it")]
    if sop_class.startswith(STRUCTURED_REPORT_PREFIX) and "113104" not in codes:
        return [Finding("sop-class", "(0008,0016)", f"{name} is a structured report, whose content items the gate "
                        "reads only when Clean Structured Content (113104) is claimed")]
    return []


class _Walk:
    """One pass over every element of a dataset, nested ones too, collecting findings.

    Only values a check reads are looked at (text, PN, UI, IS / DS, and sequences to descend): a text
    value is decoded only the first time its bytes are seen (:data:`_VERDICTS`), a UID and an IS /
    DS value are read from their bytes (:data:`_NUMBERS`), and binary numbers, most of a header,
    are never looked at. An element whose VR the
    file does not give (implicit VR, UN) is converted to learn it, and one whose VR is not the
    dictionary's is read as the dictionary's VR.
    """

    def __init__(self, allow: AllowList, pseudonym: str, codes: frozenset[str]) -> None:
        self.allow = allow
        self.pseudonym = pseudonym
        self.codes = codes
        #: keywords that must be empty or a dummy, tags that must hold no value (:func:`_removed`)
        self.removed, self.removed_tags = _removed(codes)
        #: whether dates may hold values (113107 claimed); curves and overlays may (113103)
        self.dates_kept = "113107" in codes
        self.graphics_cleaned = "113103" in codes
        self.findings: list[Finding] = []

    def dataset(self, ds: Dataset, prefix: str, context: tuple[str, ...]) -> None:
        """Check every element of ``ds``; ``context`` is the chain of enclosing sequence signatures."""
        charset = ""
        creators: dict[tuple[int, int], str | None] = {}
        for element in ds.elements():
            tag = element.tag
            number = int(tag)  # plain int keys: a BaseTag compares in Python in every cache lookup
            group = number >> 16
            vr = element.VR
            private = group & 1 == 1
            if vr is None or vr == "UN":
                element = ds[tag]
                vr = element.VR
            elif not private:
                expected = _dictionary_vr(number)
                # an IS written as DS or the reverse is a number either way (a Generator Power of
                # "12.5"): judged in the VR it was written in
                if expected and expected != vr and not (expected in _NUMBER_VRS and vr in _NUMBER_VRS):
                    element = self._as_dictionary_vr(ds, element, prefix)
                    if element is None:
                        continue
                    vr = element.VR
            creator: str | None = None
            if private:
                creator = self._private(ds, tag, prefix, context, creators)
            elif (number in self.removed_tags or (0x5000 <= group <= 0x601E and _repeating_removed(
                    number, self.graphics_cleaned))) and (vr not in _TEXT_VRS or _keyword(number) not in self.removed) \
                    and _holds_value(ds, element):
                self.findings.append(Finding("not-removed", _path(prefix, tag), self._removed_message(number)))
                if vr != "SQ":
                    continue
            elif 0x6000 <= group <= 0x601E and number & 0xFFFF == 0x0102 and not prefix \
                    and (number & 0xFFFF0000 | 0x3000) not in ds and _holds_value(ds, element) and ds[tag].value:
                self.findings.append(Finding(
                    "overlay-in-pixels", _path(prefix, tag), "an overlay in the pixel data's high bits (Overlay "
                    "Bit Position not 0, no Overlay Data): whatever it draws is in the pixels, which the gate "
                    "cannot check"))
            if vr == "SQ":
                if isinstance(element, RawDataElement) and element.value \
                        and len(element.value) <= _SEQUENCE_KEY_MAX:
                    if not charset:
                        charset = repr(ds._character_set)
                    self._raw_sequence(ds, element, prefix, context, creator, private, charset)
                else:  # decoded, or read as the dictionary's VR (ds[tag] has the file's)
                    self._sequence(element if isinstance(element, DataElement) else ds[tag], prefix, context,
                                   creator, private)
            elif vr in _DATE_VRS:
                if not self.dates_kept and _has_value(element):
                    self.findings.append(Finding("dates-not-shifted", _path(prefix, tag),
                                                 "a date is present but no date shifting (113107) is claimed"))
            elif vr in _NUMBER_VRS:
                for code, message in _number_verdicts(number, vr, number_bytes(element)):
                    self.findings.append(Finding(code, _path(prefix, tag), message))
            elif vr == "UI" or vr in _TEXT_VRS or vr == "AS":
                if isinstance(element, RawDataElement):
                    if not charset:
                        charset = repr(ds._character_set)
                    verdicts = self._raw_verdicts(ds, element, vr, private, charset)
                else:
                    value = element.value
                    if isinstance(value, (bytes, bytearray)):  # built in memory with another VR
                        value = bytes(value).decode("latin-1").rstrip("\0 ")
                    verdicts = _value_verdicts(_keyword(tag), vr, private, value, self.pseudonym, self.removed)
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

    def _removed_message(self, tag: int) -> str:
        """Why an element that must hold no value is a finding."""
        if tag in _UNREADABLE:
            return f"{_UNREADABLE[tag][1]}: the gate cannot verify it holds no identifiers"
        name = _keyword(tag) or ("curve data" if tag >> 16 < 0x6000 else "overlay data")
        return f"{name} holds a value; the Basic Profile removes it"

    def _as_dictionary_vr(self, ds: Dataset, element: DataElement | RawDataElement, prefix: str
                          ) -> DataElement | RawDataElement | None:
        """``element`` read as the VR the dictionary gives its tag (a name written as LO or OB is
        still a name), or ``None`` with a finding when its value cannot be read so."""
        expected = _dictionary_vr(element.tag)
        try:
            if isinstance(element, RawDataElement):
                read = convert_raw_data_element(element._replace(VR=expected), encoding=ds._character_set, ds=ds)
            else:
                read = DataElement(element.tag, expected, element.value)
            if expected == "SQ" and (
                    not all(isinstance(item, Dataset) for item in read.value or [])
                    or isinstance(element.value, bytes) and element.value and element.value[:4] != _ITEM_LE):
                raise ValueError("not a sequence of items")  # pydicom reads any bytes as some items
            return read
        except Exception:  # bytes that are no value of that VR: nobody can say what they hold
            self.findings.append(Finding(
                "wrong-vr", _path(prefix, element.tag),
                f"written with VR {element.VR} where the standard has {expected}, and unreadable as {expected}"))
            return None

    def _raw_sequence(self, ds: Dataset, raw: RawDataElement, prefix: str, context: tuple[str, ...],
                      creator: str | None, private: bool, charset: str) -> None:
        """A sequence not yet decoded: its findings from :data:`_SEQUENCES`, or from a walk of its items."""
        key = (int(raw.tag), bytes(raw.value), charset, self.pseudonym, context, creator, bool(self.allow),
               self.codes)
        found = _SEQUENCES.get(key)
        if found is None:
            inner = _Walk(self.allow, self.pseudonym, self.codes)
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


#: :func:`~radcommons.deid.engine.pixel_review` verdicts by the undecoded values it reads
_TRIAGE: dict[tuple, tuple[bool, str]] = {}
_TRIAGE_KEYWORDS = ("Modality", "SOPClassUID", "ImageType", "BurnedInAnnotation")
_IMAGE_TAGS = (0x00280010, *PIXEL_TAGS)


def _pixel_triage(ds: Dataset) -> tuple[bool, str]:
    """Whether the image is likely to carry burned-in text, and why: the engine's header triage
    (:func:`~radcommons.deid.engine.pixel_review`), which decodes four attributes, remembered by
    their bytes (a series repeats them)."""
    if not any(tag in ds for tag in _IMAGE_TAGS):
        return False, "no pixel data"
    items = [ds.get_item(_tag(keyword)) for keyword in _TRIAGE_KEYWORDS]
    if not all(item is None or isinstance(item, RawDataElement) for item in items):
        return pixel_review(ds)
    key = (repr(ds._character_set), *((item.VR, bytes(item.value or b"")) if item is not None else None
                                      for item in items))
    verdict = _TRIAGE.get(key)
    if verdict is None:
        verdict = pixel_review(ds)
        _remember(_TRIAGE, key, verdict)
    return verdict


def _meta_findings(ds: Dataset, meta: Dataset) -> list[Finding]:
    """File Meta Information rewritten: its instance UID in 2.25 form and the dataset's own, no
    private information (the de-identifier rewrites the File Meta, PS3.15 E.1.1)."""
    found = []
    uid = _plain_uid(meta, "MediaStorageSOPInstanceUID")
    if uid and not is_deidentified_uid(uid):
        found.append(Finding("uid-form", "(0002,0003)", f"{_uid_shown(uid)} is not a 2.25 UID"))
    elif uid and uid != _plain_uid(ds, "SOPInstanceUID"):
        found.append(Finding("meta-uid", "(0002,0003)", "Media Storage SOP Instance UID is not the SOP Instance UID "
                             "(0008,0018): the File Meta Information was not rewritten with the dataset"))
    if any(_holds_value(meta, meta.get_item(tag)) for tag in (0x00020100, 0x00020102) if tag in meta):
        found.append(Finding("private", "(0002,0102)", "File Meta Private Information is present"))
    return found


def _plain_uid(ds: Dataset, keyword: str) -> str:
    """One UID value as pydicom reads it (from the bytes when undecoded)."""
    item = ds.get_item(_tag(keyword))
    if isinstance(item, RawDataElement):
        values = _raw_uids(item.value)
        return values[0] if len(values) == 1 else "\\".join(values)
    return "\\".join(string_values(item.value)) if item is not None else ""


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
    elif "113101" not in codes:
        needs_cleaning, why = _pixel_triage(ds)
        if needs_cleaning:
            findings.append(Finding("pixels-not-cleaned", "(7FE0,0010)",
                                    f"burned-in text is likely ({why}) but Clean Pixel Data (113101) is not claimed"))
    if _plain(ds, "RecognizableVisualFeatures").upper() == "YES" and "113102" not in codes:
        findings.append(Finding("visual-features", "(0028,0302)", "Recognizable Visual Features is YES and Clean "
                                "Recognizable Visual Features (113102) is not claimed"))
    if _plain(ds, "PatientBirthDate"):
        findings.append(Finding("birth-date", "(0010,0030)", "Patient's Birth Date is not empty"))
    pseudonym = _plain(ds, "PatientID")
    if patient_id_problem(pseudonym):
        pseudonym = ""  # not a pseudonym: Patient's Name equal to it is a name like any other
    allow = load_allow_list() if "113111" in codes else {}

    findings.extend(_sop_class_findings(_plain_uid(ds, "SOPClassUID"), codes))

    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        findings.extend(_meta_findings(ds, meta))

    walk = _Walk(allow, pseudonym, codes)
    walk.dataset(ds, "", ())
    return findings + walk.findings
