"""Free text: cleaning descriptors (PS3.15 E.3.5 Clean Descriptors Option).

Descriptors research needs (Study / Series Description, Protocol Name ...) are cleaned,
not dropped: clinical words stay, while

* every identifier known from the same dataset (name parts, patient IDs, accession
  number, study ID, institution, station, serial numbers, and its dates written in any
  common format) is removed, and
* identifier patterns are removed: e-mail addresses, phone numbers, dates, runs of 5 or
  more digits, social-security-like numbers, and names after Dr./Mr./Mrs./Ms./Prof.

The known identifiers are also scrubbed from every other text element the profile
keeps (a safety net for PHI typed into attributes Table E.1-1 does not list).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

#: Attributes whose values identify the patient, a person or a place (their values are
#: collected before de-identification and hunted for in free text).
_IDENTIFIER_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "IssuerOfPatientID",
    "AccessionNumber",
    "StudyID",
    "MedicalRecordLocator",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MilitaryRank",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "OperatorsName",
    "RequestingPhysician",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
    "PlateID",
    "DetectorID",
    "CassetteID",
    "GantryID",
    "RequestedProcedureID",
    "PerformedProcedureStepID",
    "ScheduledProcedureStepID",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
    "AdmissionID",
    "PatientInsurancePlanCodeSequence",
)
_DATE_KEYWORDS = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
#: the same as tags (looked up once: keyword lookups cost on every file)
_IDENTIFIER_TAGS = tuple(
    (tag_for_keyword(k), k.endswith(("Name", "Names")) or "Physician" in k)
    for k in _IDENTIFIER_KEYWORDS
    if not k.endswith("Sequence")
)
_DATE_TAGS = tuple(tag_for_keyword(k) for k in _DATE_KEYWORDS)

#: Words too common in institution names to be identifying on their own (the whole
#: name is still removed as a phrase).
_COMMON_WORDS = frozenset(
    """THE OF AND FOR AT IN ON HOSPITAL HOSPITALS CLINIC CLINICS GENERAL MEDICAL MEDICINE
    CENTER CENTRE UNIVERSITY HEALTH HEALTHCARE REGIONAL COUNTY CITY SAINT ST MEMORIAL
    COMMUNITY CARE INSTITUTE DEPARTMENT DEPT RADIOLOGY IMAGING DEFAULT UNKNOWN NONE
    CHILDRENS CHILDREN WOMENS SCHOOL SYSTEM NETWORK STREET ROAD AVENUE SUITE NORTH SOUTH
    EAST WEST CT MR US CR DX PET NM XA MG""".split()
)
_MIN_TOKEN = 3

#: Identifier patterns, by name; ``True`` marks the unambiguous ones (checked even in
#: vendor private values, where runs of digits are often version numbers).
_NAMED_PATTERNS: tuple[tuple[str, bool, re.Pattern[str]], ...] = (
    ("email", True, re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    (
        "titled-name",
        True,
        re.compile(
            r"\b(?:Dr|Mr|Mrs|Ms|Miss|Prof|Doctor)\b\.?\s*[A-Za-z][\w'-]*(?:[\s,^]+[A-Z][\w'-]*)?",
            re.IGNORECASE,
        ),
    ),
    ("ssn", True, re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("phone", False, re.compile(r"(?:\+\d{1,3}[\s.-]?)?\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}\b")),
    (
        "date",
        True,
        re.compile(
            r"\b\d{1,2}[/\-]\d{1,2}[/\-](?:\d{4}|\d{2})\b"  # 08/29/1951, 8-29-51
            r"|\b(?:19|20)\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}\b"  # 2017-03-02, 2017.03.02
            r"|\b\d{1,2}\.\d{1,2}\.(?:19|20)\d{2}\b"  # 29.08.1951
        ),
    ),
    (
        "date-words",
        True,
        re.compile(
            r"\b\d{1,2}[\s-]*(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?[\s,-]*\d{2,4}\b"
            r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{2,4}\b",
            re.IGNORECASE,
        ),
    ),
    ("digits", False, re.compile(r"\d{5,}")),  # MRNs, accession numbers, compact dates
)
_PATTERNS = tuple(pattern for _, _, pattern in _NAMED_PATTERNS)


@dataclass(frozen=True)
class Identifiers:
    """Strings from one dataset that must not survive anywhere in its output."""

    phrases: tuple[str, ...]  #: whole values, longest first (removed as substrings)
    words: tuple[str, ...]  #: name parts and distinctive words (removed as whole words)

    def is_empty(self) -> bool:
        return not self.phrases and not self.words


def _values(element_value) -> list[str]:
    if element_value is None:
        return []
    if isinstance(element_value, (list, MultiValue)):
        return [str(v) for v in element_value if v is not None]
    return [str(element_value)]


def date_variants(da: str) -> list[str]:
    """A DA value written the ways people write dates in free text."""
    match = re.match(r"^(\d{4})(\d{2})(\d{2})$", da.strip())
    if not match:
        return []
    y, m, d = match.groups()
    mi, di = str(int(m)), str(int(d))
    return sorted(
        {
            f"{y}{m}{d}", f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}",
            f"{m}/{d}/{y}", f"{mi}/{di}/{y}", f"{d}/{m}/{y}", f"{d}.{m}.{y}", f"{m}-{d}-{y}",
            f"{d}-{m}-{y}", f"{m}/{d}/{y[2:]}", f"{mi}/{di}/{y[2:]}", f"{d}.{m}.{y[2:]}",
        },
        key=len,
        reverse=True,
    )


#: Sequences whose items carry identifiers of the same patient or study (PS3.3 C.4.10, C.7.1.1).
_IDENTIFIER_SEQUENCES = (
    "RequestAttributesSequence",
    "ReferencedPatientSequence",
    "OperatorIdentificationSequence",
    "PerformingPhysicianIdentificationSequence",
)


_OTHER_IDS_TAG = tag_for_keyword("OtherPatientIDsSequence")
_CHARSET_TAG = 0x00080005
#: every element :func:`collect_identifiers` reads (directly or inside its items)
_SOURCE_TAGS = tuple(
    sorted(
        {tag for tag, _ in _IDENTIFIER_TAGS}
        | set(_DATE_TAGS)
        | {_OTHER_IDS_TAG, _CHARSET_TAG}
        | {tag_for_keyword(k) for k in _IDENTIFIER_SEQUENCES}
    )
)
_IDENTIFIERS_CACHE: dict[tuple, Identifiers] = {}


def _raw_source_key(ds: Dataset) -> tuple | None:
    """The undecoded bytes of every element the identifiers come from, or ``None``.

    Two datasets with the same bytes there (and the same encoding) have the same
    identifiers: the slices of a series are collected once. An element already decoded
    enters the key by its string values (what :func:`_collect_identifiers` reads); a
    decoded sequence makes the key ``None`` (not cached).
    """
    key: list = [ds.original_encoding]
    for tag in _SOURCE_TAGS:
        item = ds.get_item(tag) if tag in ds else None
        if item is None:
            continue
        if isinstance(item, RawDataElement):
            key.append((tag, item.VR, item.value))
        elif item.VR == "SQ":
            return None
        else:
            key.append((tag, "decoded", tuple(_values(item.value))))
    return tuple(key)


def collect_identifiers(ds: Dataset) -> Identifiers:
    """Gather the identifying values of ``ds`` (top level and one level of sequences).

    Cached on the raw bytes of the elements read (:func:`_raw_source_key`), in memory
    only, so consecutive files of one series decode and split their identifiers once.
    """
    key = _raw_source_key(ds)
    if key is None:
        return _collect_identifiers(ds)
    found = _IDENTIFIERS_CACHE.get(key)
    if found is None:
        if len(_IDENTIFIERS_CACHE) >= 256:
            _IDENTIFIERS_CACHE.clear()
        found = _IDENTIFIERS_CACHE[key] = _collect_identifiers(ds)
    return found


def _collect_identifiers(ds: Dataset) -> Identifiers:
    phrases: set[str] = set()
    words: set[str] = set()

    def add(value: str, is_name: bool) -> None:
        text = value.strip()
        if len(text) < _MIN_TOKEN:
            return
        if is_name:
            parts = [p.strip() for p in re.split(r"[\^=,\s]+", text) if p.strip()]
            words.update(p for p in parts if len(p) >= _MIN_TOKEN and p.upper() not in _COMMON_WORDS)
            joined = " ".join(parts)
            if len(joined) >= _MIN_TOKEN:
                phrases.add(joined)
        phrases.add(text)
        if not is_name:
            for part in re.split(r"[\s,;/]+", text):
                if len(part) >= 4 and part.upper() not in _COMMON_WORDS and not part.isdigit():
                    words.add(part)

    def visit(dataset: Dataset, depth: int) -> None:
        for tag, is_name in _IDENTIFIER_TAGS:
            if tag in dataset:
                for value in _values(dataset[tag].value):
                    add(value, is_name=is_name)
        for tag in _DATE_TAGS:
            if tag in dataset:
                for value in _values(dataset[tag].value):
                    phrases.update(date_variants(value))
        other_ids = dataset.get("OtherPatientIDsSequence")
        if other_ids:
            for item in other_ids:
                for value in _values(item.get("PatientID")):
                    add(value, is_name=False)
        if depth == 0:
            # Looked up by keyword: iterating the dataset would decode every element.
            for keyword in _IDENTIFIER_SEQUENCES:
                items = dataset.get(keyword)
                if items and not isinstance(items, (str, bytes)):
                    for item in items:
                        if isinstance(item, Dataset):
                            visit(item, depth + 1)

    visit(ds, 0)
    ordered_phrases = tuple(sorted(phrases, key=lambda s: (-len(s), s)))
    ordered_words = tuple(sorted(words, key=lambda s: (-len(s), s)))
    return Identifiers(ordered_phrases, ordered_words)


def _compile(identifiers: Identifiers, lowered: bool = False) -> re.Pattern[str] | None:
    """One pattern for every known identifier: phrases anywhere, words whole.

    ``lowered``: for ASCII identifiers matched against lowered ASCII text, the same
    alternation over lowered literals without IGNORECASE (a fifth of the compile time;
    for ASCII both match the same spans).
    """
    if lowered:
        parts = [re.escape(p.lower()) for p in identifiers.phrases]
        parts += [r"(?<![a-z0-9])" + re.escape(w.lower()) + r"(?![a-z0-9])" for w in identifiers.words]
        return re.compile("|".join(parts)) if parts else None
    parts = [re.escape(p) for p in identifiers.phrases]
    parts += [r"(?<![A-Za-z0-9])" + re.escape(w) + r"(?![A-Za-z0-9])" for w in identifiers.words]
    if not parts:
        return None
    return re.compile("|".join(parts), re.IGNORECASE)


class TextCleaner:
    """Cleans free text of one dataset's identifiers.

    The known identifiers are compiled into a pattern only when a text first contains one
    of them (for ASCII, a plain substring test finds out): most kept text contains none.
    """

    def __init__(self, identifiers: Identifiers) -> None:
        self.identifiers = identifiers
        values = identifiers.phrases + identifiers.words
        self._ascii = all(value.isascii() for value in values)
        self._needles = tuple(value.lower() for value in values) if self._ascii else ()
        self._patterns: dict[bool, re.Pattern[str] | None] = {}

    def _pattern(self, lowered: bool) -> re.Pattern[str] | None:
        try:
            return self._patterns[lowered]
        except KeyError:
            pattern = self._patterns[lowered] = _compile(self.identifiers, lowered)
            return pattern

    @property
    def _known(self) -> re.Pattern[str] | None:
        """The identifiers as one case-insensitive pattern (``None``: there are none)."""
        return self._pattern(False)

    @staticmethod
    def for_identifiers(identifiers: Identifiers) -> "TextCleaner":
        """The cleaner for ``identifiers``, shared by the files that have the same ones.

        The slices of a series (and usually the series of a study) carry the same
        identifiers: compiling their pattern once per distinct set, not once per file,
        saves most of the cost. The cache holds original identifiers in memory only.
        """
        return _cached_cleaner(identifiers)

    def _without_known(self, text: str) -> str | None:
        """``text`` with every known identifier replaced by a space, ``None`` if it has none."""
        if not self._ascii or not text.isascii():
            known = self._known
            return known.sub(" ", text) if known is not None and known.search(text) else None
        lowered = text.lower()
        if not any(needle in lowered for needle in self._needles):
            return None  # the pattern's every alternative needs one of them as a substring
        pattern = self._pattern(True)
        assert pattern is not None
        pieces: list[str] = []
        last = 0
        for match in pattern.finditer(lowered):  # lower() keeps positions in ASCII text
            pieces.append(text[last : match.start()])
            pieces.append(" ")
            last = match.end()
        if not pieces:
            return None
        pieces.append(text[last:])
        return "".join(pieces)

    def scrub_known(self, text: str) -> str:
        """Remove only the dataset's own identifiers (the safety net for kept text)."""
        if not text:
            return text
        removed = self._without_known(text)
        return text if removed is None else _tidy(removed)

    def clean(self, text: str) -> str:
        """Clean a descriptor: known identifiers and identifier patterns removed."""
        if not text:
            return text
        result = text
        # patterns first: "Dr. Hibbert" and "john.doe@x.org" go whole, before the known
        # name parts inside them are cut out and leave "Dr." or "@x.org" behind
        for pattern in _PATTERNS:
            result = pattern.sub(" ", result)
        if result:
            removed = self._without_known(result)
            if removed is not None:
                result = removed
        return _tidy(result) if result != text else text


@lru_cache(maxsize=64)
def _cached_cleaner(identifiers: Identifiers) -> TextCleaner:
    return TextCleaner(identifiers)


def _tidy(text: str) -> str:
    text = re.sub(r"\s{2,}", " ", text)
    text = re.sub(r"(\s*[,;:/\-]\s*){2,}", " ", text)
    return text.strip(" ,;:/-_^")


def find_patterns(text: str, strong_only: bool = False) -> list[str]:
    """Identifier patterns present in ``text`` (used by the checker)."""
    found: list[str] = []
    for _, strong, pattern in _NAMED_PATTERNS:
        if strong or not strong_only:
            found.extend(m.group(0) for m in pattern.finditer(text))
    return found


def known_hits(cleaner: TextCleaner, values: Iterable[str]) -> list[str]:
    """Known identifiers still present in ``values``."""
    if cleaner._known is None:
        return []
    return [m.group(0) for v in values for m in cleaner._known.finditer(v)]
