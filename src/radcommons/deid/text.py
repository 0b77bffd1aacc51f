"""Free text: cleaning descriptors (PS3.15 E.3.5 Clean Descriptors Option).

Descriptors research needs (Study / Series Description, Protocol Name ...) are cleaned,
not dropped: clinical words stay, while

* every identifier known from the same dataset is removed: every person name in it (the
  patient's name parts of two letters and its CJK / kana / hangul parts of any length
  included, also joined without a separator, with a plural or possessive ending, glued to
  digits, with or without diacritics or a transliteration, hyphenated and apostrophe parts
  apart and together), patient IDs, accession number, study ID and other IDs (also their
  digit core without letters or leading zeros, written with separators), phone numbers,
  institution, station, serial numbers, the original Study / Series / Frame of Reference
  UIDs (and UIDs under their root), and its dates written in any common format; and
* identifier patterns are removed: e-mail addresses, UIDs, phone numbers (7 and 10 digits),
  dates (numeric, with month names, month and year, day and month), ages over 89, runs of
  5 or more digits, social-security-like numbers, and names after Dr./Mr./Mrs./Ms./Prof.

The known identifiers are also scrubbed from every other text element the profile
keeps (a safety net for PHI typed into attributes Table E.1-1 does not list).

Known identifiers are matched on a folded copy of the text (case, diacritics and
ligatures removed: "Müller", "MULLER" and "Mu\\u0308ller" fold alike), and what matched
is cut from the original text through a map of positions.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator

from pydicom.datadict import DicomDictionary, dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

#: Attributes whose values identify the patient, a person or a place (their values are
#: collected before de-identification and hunted for in free text). Every other Person
#: Name (PN) attribute of the dictionary is collected too (:data:`_PN_KEYWORDS`).
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
    "IssuerOfAdmissionID",
    "ServiceEpisodeID",
    "IssuerOfServiceEpisodeID",
    "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID",
    "SpecimenAccessionNumber",
    "ResponsibleOrganization",
    "RegionOfResidence",
    "CurrentPatientLocation",
    "PatientInstitutionResidence",
    "PerformedLocation",
    "ScheduledProcedureStepLocation",
    "PerformedStationName",
    "ScheduledStationName",
    "ReferringPhysicianTelephoneNumbers",
    "PersonTelephoneNumbers",
    "PersonAddress",
    "OrderCallbackPhoneNumber",
)
#: the patient's own names: every part of them is an identifier, common words included
_PATIENT_NAME_KEYWORDS = frozenset({"PatientName", "OtherPatientNames", "PatientBirthName"})
#: every Person Name attribute of the dictionary (a person anywhere, nested included)
_PN_KEYWORDS = tuple(sorted({entry[4] for entry in DicomDictionary.values() if entry[0] == "PN" and entry[4]}))
_DATE_KEYWORDS = (
    "PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AdmittingDate",
)
#: the dataset's own UIDs that are the same for every file of a series (a SOP Instance UID
#: is not: the identifiers are collected once per series; UIDs under the root of these go too)
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
#: an element of this name inside an item is an identifier (IDs, numbers, phones)
_ID_LIKE = re.compile(r"(?:ID|IDs|Number|Numbers|Identifier)$")
_ID_LIKE_VRS = frozenset({"LO", "SH", "UC", "ST", "LT", "UT"})
#: items whose code values name the patient's insurance plan
_CODE_KEYWORDS = ("CodeValue", "CodeMeaning")


def _kind(keyword: str, vr: str | None) -> str:
    """How a value is split into identifiers: ``patient`` / ``person`` (PN), ``phone``,
    ``name`` (institution, station: name-like, not a person), ``id`` (IDs and places)."""
    if vr == "PN" or (vr is None and keyword in _PN_KEYWORDS):
        return "patient" if keyword in _PATIENT_NAME_KEYWORDS else "person"
    if "Telephone" in keyword or "Phone" in keyword:
        return "phone"
    if keyword.endswith(("Name", "Names")) or "Physician" in keyword:
        return "name"
    return "id"


#: the same as tags, with their kind (looked up once: keyword lookups cost on every file)
_IDENTIFIER_TAGS = tuple(
    (tag_for_keyword(k), _kind(k, dictionary_VR(tag_for_keyword(k))))
    for k in dict.fromkeys(_IDENTIFIER_KEYWORDS + _PN_KEYWORDS)
    if tag_for_keyword(k) is not None
)
_DATE_TAGS = tuple(tag_for_keyword(k) for k in _DATE_KEYWORDS)
_UID_TAGS = tuple(tag_for_keyword(k) for k in _UID_KEYWORDS)

#: Words too common in institution names to be identifying on their own (the whole
#: name is still removed as a phrase). A patient's own name parts are identifiers even
#: when they are one of these words (a patient called West or Street).
_COMMON_WORDS = frozenset(
    """THE OF AND FOR AT IN ON HOSPITAL HOSPITALS CLINIC CLINICS GENERAL MEDICAL MEDICINE
    CENTER CENTRE UNIVERSITY HEALTH HEALTHCARE REGIONAL COUNTY CITY SAINT ST MEMORIAL
    COMMUNITY CARE INSTITUTE DEPARTMENT DEPT RADIOLOGY IMAGING DEFAULT UNKNOWN NONE
    CHILDRENS CHILDREN WOMENS SCHOOL SYSTEM NETWORK STREET ROAD AVENUE SUITE NORTH SOUTH
    EAST WEST CT MR US CR DX PET NM XA MG""".split()
)
#: Two-letter words of real study descriptions and titles: a part of another person's
#: name that is one of them is left to the whole name (operators' initials "RT", "LT").
_SHORT_WORDS = frozenset(
    """AB AM AN AP AT AV BX BY CA CH CM CO CR CS CT DE DG DR DX ED EG EP ER EX FL FU GA GD GH
    GI GR GU HI HP HR IF IP IR IV LA LB LD LE LG LT LW MG MR NG NM NO OF OP OR PA PE PL PM PO
    PR PT PV QA RA RH RM RP RT SP TC TO TX UP US VP VW WC WO WS WT XL XR
    MS JR SR MD DO RN NP OT II IV VI""".split()
)
_MIN_TOKEN = 3  #: shortest identifier value or word (a name part: 2, CJK: any length)
_MIN_NAME_PART = 2
_MIN_DIGIT_CORE = 5  #: an ID's digits are matched with separators when there are this many

_CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff66-\uff9f]"
)

# ---- identifier patterns

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?(?![a-z])"
)
_WEEKDAY = r"(?:(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|sday|urday)?\.?,?\s+)?"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_ORDINAL = r"(?:st|nd|rd|th)?"

#: Identifier patterns, by name; ``True`` marks the unambiguous ones (checked even in
#: vendor private values, where runs of digits are often version numbers); the last
#: value says whether the checker (:func:`find_patterns`) reports them too (the ones added
#: for cleaning only would flag version numbers and counts in kept text).
_NAMED_PATTERNS: tuple[tuple[str, bool, bool, re.Pattern[str]], ...] = (
    ("email", True, True, re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    # a UID (digits with 3+ dots, the first 0-2): before dates and digits cut it up
    ("uid", True, False, re.compile(r"(?<![\w.])[0-2](?:\.\d+){3,}(?!\.?\w)")),
    (
        "titled-name",
        True,
        True,
        # "Dr." in any case, "Dr" / "DOCTOR" without the dot, never "MR" or "DR" alone
        # (modalities: "MR BRAIN", "DR CHEST"); a second word only when capitalised
        re.compile(
            r"(?:\b(?i:dr|mr|mrs|ms|miss|prof|doctor)\.\s*|\b(?:Dr|Mr|Mrs|Ms|Miss|Prof|Doctor|DOCTOR|MISS|PROF)\b\s*)"
            r"[A-Za-z][\w'-]*(?:[\s,^]+[A-Z][a-z][\w'-]*)?"
        ),
    ),
    ("ssn", True, True, re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("ssn-spaced", False, False, re.compile(r"(?<![\d-])\d{3}[ -]\d{2}[ -]\d{4}(?![\d-])")),
    ("phone", False, True, re.compile(r"(?:\+\d{1,3}[\s.-]?)?\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}\b")),
    ("phone-local", False, False, re.compile(r"(?<![\d/:-])(?<!\d[.,])\d{3}[-. ]\d{4}(?![\d/:-]|[.,]\d)")),
    (
        "date",
        True,
        True,
        re.compile(
            r"\b\d{1,2}[/\-]\d{1,2}[/\-](?:\d{4}|\d{2})\b"  # 08/29/1951, 8-29-51
            r"|\b(?:19|20)\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}(?!\d)"  # 2017-03-02, 2017.03.02, 2017-03-02T10:11
            r"|\b\d{1,2}\.\d{1,2}\.(?:19|20)\d{2}\b"  # 29.08.1951
        ),
    ),
    (
        "date-more",
        True,
        False,
        re.compile(
            rf"(?<![\d.]){_DAY}\.{_MONTH}\.\d{{2}}(?![\d.])"  # 12.3.19
            rf"|\b(?:19|20)\d{{2}} {_MONTH} {_DAY}\b"  # 2019 03 12
            rf"|\b{_DAY} {_MONTH} (?:19|20)\d{{2}}\b"  # 12 03 2019
            rf"|(?<![\d/.-]){_MONTH}[/.-](?:19|20)\d{{2}}\b",  # 03/2019
        ),
    ),
    (
        "date-words",
        True,
        True,
        re.compile(
            rf"(?<![a-z]){_WEEKDAY}\b{_DAY}{_ORDINAL}[\s.-]*{_MONTHS}(?:[\s,.-]*(?:\d{{4}}|\d{{2}})\b)?"  # 12th March 2019, 12-MAR
            rf"|(?<![a-z]){_WEEKDAY}{_MONTHS}\s+{_DAY}{_ORDINAL},?\s+\d{{2,4}}\b"  # March 12, 2019
            rf"|(?<![a-z]){_MONTHS}[\s,.-]*(?:19|20)\d{{2}}\b",  # March 2019
            re.IGNORECASE,
        ),
    ),
    (
        "age-over-89",
        False,
        False,
        re.compile(
            r"\b(?:aged?|age:)\s*[:=]?\s*(?:9\d|1[0-4]\d)\b"  # age 93
            r"|\b(?:9\d|1[0-4]\d)\s*-?\s*(?:y/o|y\.o\.?|yo|yrs?|years?)(?:[\s-]*old)?(?![a-z])",  # 93 yo, 93 YEARS OLD
            re.IGNORECASE,
        ),
    ),
    ("digits", False, True, re.compile(r"\d{5,}")),  # MRNs, accession numbers, compact dates
)
_DIGIT = re.compile(r"\d")
_NOT_DIGITS = re.compile(r"\D+")
_PATTERNS = tuple(pattern for _, _, _, pattern in _NAMED_PATTERNS)
#: the patterns with what a text needs for them to match at all: a digit (all but two), "@"
_CLEAN_STEPS = tuple(
    (pattern, name not in ("email", "titled-name"), "@" if name == "email" else "")
    for name, _, _, pattern in _NAMED_PATTERNS
)


@dataclass(frozen=True)
class Identifiers:
    """Strings from one dataset that must not survive anywhere in its output."""

    phrases: tuple[str, ...]  #: whole values, longest first (removed as substrings)
    words: tuple[str, ...]  #: name parts and distinctive words (removed as whole words)
    #: person-name parts among ``words``: also with a plural or possessive ending, glued to digits
    names: tuple[str, ...] = ()
    digits: tuple[str, ...] = ()  #: digit cores of IDs and phones: also with separators, leading zeros
    dates: tuple[str, ...] = ()  #: DA values (YYYYMMDD): written any common way
    uids: tuple[str, ...] = ()  #: original UIDs: whole, and any UID under their root

    def is_empty(self) -> bool:
        return not (self.phrases or self.words or self.digits or self.dates or self.uids)


def _values(element_value) -> list[str]:
    if element_value is None:
        return []
    if isinstance(element_value, (list, MultiValue)):
        return [str(v) for v in element_value if v is not None]
    return [str(element_value)]


_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)


def date_variants(da: str) -> list[str]:
    """A DA value written the ways people write dates in free text."""
    match = re.match(r"^(\d{4})(\d{2})(\d{2})$", da.strip())
    if not match:
        return []
    y, m, d = match.groups()
    mi, di = str(int(m)), str(int(d))
    if not 1 <= int(m) <= 12:
        month, mon = "", ""
    else:
        month = _MONTH_NAMES[int(m) - 1]
        mon = month[:3]
    numeric = {
        f"{y}{m}{d}", f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}", f"{y} {m} {d}", f"{y}/{mi}/{di}",
        f"{m}/{d}/{y}", f"{mi}/{di}/{y}", f"{d}/{m}/{y}", f"{di}/{mi}/{y}", f"{d}.{m}.{y}", f"{di}.{mi}.{y}",
        f"{m}-{d}-{y}", f"{d}-{m}-{y}", f"{d} {m} {y}", f"{m} {d} {y}",
        f"{m}/{d}/{y[2:]}", f"{mi}/{di}/{y[2:]}", f"{d}.{m}.{y[2:]}", f"{di}.{mi}.{y[2:]}",
    }
    if month:
        numeric |= {
            f"{di} {month} {y}", f"{d}-{mon}-{y}", f"{d}{mon}{y}", f"{d}{mon}{y[2:]}", f"{month} {di}, {y}",
            f"{mon} {di}, {y}", f"{month} {di} {y}",
        }
    return sorted(numeric, key=lambda s: (-len(s), s))


#: Sequences whose items carry identifiers of the same patient or study (PS3.3 C.4.10,
#: C.7.1.1, C.30): every person name, ID-like value and date in their items (nested ones
#: too) is collected. A sequence here is part of what identifies a series
#: (:data:`_SOURCE_TAGS`), so none whose items change from file to file is listed.
_IDENTIFIER_SEQUENCES = (
    "RequestAttributesSequence",
    "ReferencedPatientSequence",
    "ReferencedPatientAliasSequence",
    "OperatorIdentificationSequence",
    "PerformingPhysicianIdentificationSequence",
    "ReferringPhysicianIdentificationSequence",
    "ConsultingPhysicianIdentificationSequence",
    "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence",
    "RequestingPhysicianIdentificationSequence",
    "ScheduledPerformingPhysicianIdentificationSequence",
    "IntendedRecipientsOfResultsIdentificationSequence",
    "ScheduledProcedureStepSequence",
    "ScheduledStepAttributesSequence",
    "PerformedSeriesSequence",
    "ReferencedRequestSequence",
    "ScheduledHumanPerformersSequence",
    "ActualHumanPerformersSequence",
    "VerifyingObserverSequence",
    "AuthorObserverSequence",
    "ParticipantSequence",
    "CustodialOrganizationSequence",
    "ContributingEquipmentSequence",
    "PatientClinicalTrialParticipationSequence",
    "IssuerOfAdmissionIDSequence",
    "IssuerOfServiceEpisodeIDSequence",
    "IssuerOfPatientIDQualifiersSequence",
    "PatientInsurancePlanCodeSequence",
)
_SEQUENCE_DEPTH = 4  #: how deep items inside items are searched


_OTHER_IDS_TAG = tag_for_keyword("OtherPatientIDsSequence")
_INSURANCE_TAG = tag_for_keyword("PatientInsurancePlanCodeSequence")
_CHARSET_TAG = 0x00080005
#: every element :func:`collect_identifiers` reads (directly or inside its items)
_SOURCE_TAGS = tuple(
    sorted(
        {tag for tag, _ in _IDENTIFIER_TAGS}
        | set(_DATE_TAGS)
        | set(_UID_TAGS)
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
    """Gather the identifying values of ``ds`` (top level and the items of the sequences
    that carry persons and IDs).

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


def _other_kana(text: str) -> str:
    """Hiragana written as katakana and katakana as hiragana (the same name either way)."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0x3041 <= code <= 0x3096:
            out.append(chr(code + 0x60))
        elif 0x30A1 <= code <= 0x30F6:
            out.append(chr(code - 0x60))
        else:
            out.append(ch)
    return "".join(out)


class _Collector:
    """Splits values into :class:`Identifiers` by kind (see :func:`_kind`)."""

    def __init__(self) -> None:
        self.phrases: set[str] = set()
        self.words: set[str] = set()
        self.names: set[str] = set()
        self.digits: set[str] = set()
        self.dates: set[str] = set()
        self.uids: set[str] = set()

    def add(self, value: str, kind: str) -> None:
        if kind in ("patient", "person"):
            self._person(value, kind == "patient")
            return
        text = value.strip()
        if kind == "phrase":
            if len(text) >= _MIN_TOKEN:
                self.phrases.add(text)
            return
        self._digit_cores(text, whole=kind == "phone")
        if len(text) < _MIN_TOKEN:
            return
        self.phrases.add(text)
        if kind == "name":
            parts = [p.strip() for p in re.split(r"[\^=,\s]+", text) if p.strip()]
            self.words.update(p for p in parts if len(p) >= _MIN_TOKEN and p.upper() not in _COMMON_WORDS)
            joined = " ".join(parts)
            if len(joined) >= _MIN_TOKEN:
                self.phrases.add(joined)
        elif kind == "id":
            for part in re.split(r"[\s,;/]+", text):
                if len(part) >= 4 and part.upper() not in _COMMON_WORDS and not part.isdigit():
                    self.words.add(part)

    def _digit_cores(self, text: str, whole: bool) -> None:
        """The digits of an ID (a phone: of the whole value), leading zeros left out."""
        tokens = [text] if whole or " " not in text.strip() else text.split()
        for token in tokens:
            core = re.sub(r"\D", "", token).lstrip("0")
            if len(core) >= _MIN_DIGIT_CORE:
                self.digits.add(core)

    def _person(self, value: str, patient: bool) -> None:
        text = value.strip()
        if not text:
            return
        if len(text) >= _MIN_TOKEN or _CJK.search(text):
            self.phrases.add(text)
        for group in text.split("="):  # alphabetic, ideographic, phonetic (PS3.5 6.2.1)
            components = group.split("^")
            parts: list[str] = []
            for index, component in enumerate(components):
                pieces = [p.strip(" .") for p in re.split(r"[,\s]+", component) if p.strip(" .")]
                parts.extend(pieces)
                if index < 3:  # family, given, middle; prefix and suffix are titles ("Dr", "Jr")
                    for piece in pieces:
                        self._name_part(piece, patient)
            joined = " ".join(parts)
            if len(joined) >= _MIN_TOKEN or (joined and _CJK.search(joined)):
                self.phrases.add(joined)
            family = "".join(components[0].split()) if components else ""
            given = "".join(components[1].split()) if len(components) > 1 else ""
            if family and given:  # ZYXWORTQUENNEL, QUENNELZYXWORT, 山田太郎
                for glued in (family + given, given + family):
                    if len(glued) >= 4 or _CJK.search(glued):
                        self.phrases.add(glued)
                        self.phrases.add(_other_kana(glued))

    def _name_part(self, part: str, patient: bool) -> None:
        if _CJK.search(part):  # no spaces between CJK words: any length, anywhere
            self.phrases.add(part)
            self.phrases.add(_other_kana(part))
            return
        pieces = [p for p in re.split(r"['\u2019`\-\u2010]+", part) if p]
        candidates = [part]
        if len(pieces) > 1:  # Zyxwort-Smythe, O'Brannagh: the pieces, glued, spaced
            candidates += pieces + ["".join(pieces)]
            self.phrases.add(" ".join(pieces))
        for candidate in candidates:
            if len(candidate) < _MIN_NAME_PART:
                continue
            upper = candidate.upper()
            if not patient and (upper in _COMMON_WORDS or (len(candidate) < _MIN_TOKEN and upper in _SHORT_WORDS)):
                continue
            self.words.add(candidate)
            if len(candidate) >= _MIN_TOKEN and candidate.isalpha():
                self.names.add(candidate)

    def date(self, value: str) -> None:
        if date_variants(value):  # a valid DA: matched by :func:`_date_regex`
            self.dates.add(value.strip())

    def uid(self, value: str) -> None:
        uid = value.strip("\0 ")
        if re.fullmatch(r"\d+(?:\.\d+){2,}", uid):
            self.uids.add(uid)

    def identifiers(self) -> Identifiers:
        def ordered(values: set[str]) -> tuple[str, ...]:
            return tuple(sorted(values, key=lambda s: (-len(s), s)))

        words = ordered(self.words)
        return Identifiers(
            ordered(self.phrases), words, ordered(self.names & self.words), ordered(self.digits),
            ordered(self.dates), ordered(self.uids),
        )


def _collect_identifiers(ds: Dataset) -> Identifiers:
    found = _Collector()

    def item_element(element, in_insurance: bool, depth: int) -> None:
        keyword = element.keyword or ""
        vr = element.VR
        if vr == "SQ":
            if depth < _SEQUENCE_DEPTH:
                for item in element.value or ():
                    if isinstance(item, Dataset):
                        visit_item(item, in_insurance or int(element.tag) == _INSURANCE_TAG, depth + 1)
            return
        if vr == "PN":
            kind = _kind(keyword, vr)
        elif vr == "DA":
            for value in _values(element.value):
                found.date(value)
            return
        elif in_insurance and keyword in _CODE_KEYWORDS:
            kind = "phrase"
        elif keyword in _IDENTIFIER_KEYWORDS or (vr in _ID_LIKE_VRS and _ID_LIKE.search(keyword)):
            kind = _kind(keyword, vr)
        else:
            return
        for value in _values(element.value):
            found.add(value, kind)

    def visit_item(item: Dataset, in_insurance: bool, depth: int) -> None:
        for element in item:  # items are small: every element is looked at
            if not element.tag.is_private:
                item_element(element, in_insurance, depth)

    for tag, kind in _IDENTIFIER_TAGS:
        if tag in ds:
            for value in _values(ds[tag].value):
                found.add(value, kind)
    for tag in _DATE_TAGS:
        if tag in ds:
            for value in _values(ds[tag].value):
                found.date(value)
    for tag in _UID_TAGS:
        if tag in ds:
            for value in _values(ds[tag].value):
                found.uid(value)
    other_ids = ds.get("OtherPatientIDsSequence")
    if other_ids:
        for item in other_ids:
            for value in _values(item.get("PatientID")):
                found.add(value, "id")
    # Looked up by keyword: iterating the dataset would decode every element.
    for keyword in _IDENTIFIER_SEQUENCES:
        items = ds.get(keyword)
        if items and not isinstance(items, (str, bytes)):
            for item in items:
                if isinstance(item, Dataset):
                    visit_item(item, keyword == "PatientInsurancePlanCodeSequence", 1)
    return found.identifiers()


# ---- folding: case, diacritics, ligatures

#: letters NFKD leaves alone, and their plain spelling
_SPECIAL_FOLDS = {
    "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "ł": "l", "ı": "i", "ß": "ss",
    "ħ": "h", "ŧ": "t", "ŀ": "l", "ĸ": "k",
}
#: other spellings of a name: German umlauts and Scandinavian letters written out
_TRANSLITERATIONS = {"ä": "ae", "ö": "oe", "ü": "ue", "ø": "oe", "å": "aa"}
_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya".split(),
    )
)


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """One character folded: lower case (casefold), without diacritics, ligatures spelled out."""
    if ch.isascii():
        return ch.lower()
    decomposed = unicodedata.normalize("NFKD", ch.casefold())
    return "".join(_SPECIAL_FOLDS.get(c, c) for c in decomposed if not unicodedata.combining(c))


def _fold(text: str) -> str:
    return text.lower() if text.isascii() else "".join(_fold_char(c) for c in text)


def _folded_with_map(text: str) -> tuple[str, list[int], list[int]]:
    """``text`` folded, with the original start and end of each folded character.

    An end reaches over the combining marks that follow (they fold to nothing), so a cut
    takes a name's diacritics with it.
    """
    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for index, ch in enumerate(text):
        folded = _fold_char(ch)
        if not folded:
            if ends:  # a mark (or nothing) after the last character: it goes with it
                last = len(ends) - 1
                while last >= 0 and ends[last] == index:
                    ends[last] = index + 1
                    last -= 1
            continue
        pieces.append(folded)
        starts.extend([index] * len(folded))
        ends.extend([index + 1] * len(folded))
    return "".join(pieces), starts, ends


def _spellings(value: str, name: bool) -> set[str]:
    """The folded forms a value is matched in: itself, and for a name its transliterations
    (Müller: muller, mueller; Mueller: mueller, muller; Пётр: петр, petr)."""
    lowered = value.casefold()
    found = {_fold(value)}
    if not name:
        return found
    found.add(_fold("".join(_TRANSLITERATIONS.get(c, c) for c in lowered)))
    if any(c in _CYRILLIC for c in lowered):
        found.add(_fold("".join(_CYRILLIC.get(c, c) for c in lowered).replace("-", "")))
    for spelling in list(found):
        if spelling.isascii() and re.search(r"[aou]e", spelling):
            short = re.sub(r"([aou])e", r"\1", spelling)
            if len(short) >= 4:
                found.add(short)
    return {s for s in found if s}


# ---- compiled identifiers

_LETTER_BEFORE = r"(?<![^\W\d_])"  # not after a letter
_LETTER_AFTER = r"(?![^\W\d_])"
_WORD_BEFORE = r"(?<![^\W_])"  # not after a letter or digit
_WORD_AFTER = r"(?![^\W_])"
_SEPARATOR = r"[\s./_-]?"
_MONTH_SPELLINGS = tuple(
    (name.lower(), name[:3].lower()) for name in _MONTH_NAMES
)


def _date_regex(da: str) -> str:
    """One folded DA value written any common way (numbers in any order, 2- or 4-digit
    year, month names, weekday, ordinal, day and month alone)."""
    y, m, d = da[:4], da[4:6], da[6:8]
    mi, di = str(int(m)), str(int(d))
    day = f"0?{di}" if len(di) == 1 else di
    month = f"0?{mi}" if len(mi) == 1 else mi
    year = f"(?:{y}|{y[2:]})"
    sep = r"(?:\s*[./-]\s*|\s+)"
    numeric = [
        f"{y}{sep}{month}{sep}{day}", f"{day}{sep}{month}{sep}{year}", f"{month}{sep}{day}{sep}{year}",
        f"{y}{m}{d}", f"{y[2:]}{m}{d}", f"{d}{m}{y}", f"{m}{d}{y}",
        f"{day}/{month}(?!/)", f"{month}/{day}(?!/)", f"{month}{sep}{y}",
    ]
    regex = r"(?<![\d/.])(?:" + "|".join(numeric) + ")"
    if 1 <= int(m) <= 12:
        full, short = _MONTH_SPELLINGS[int(m) - 1]
        names = f"(?:{full}|{short}" + ("|sept" if int(m) == 9 else "") + r")\.?(?![a-z])"
        weekday = _WEEKDAY
        words = [
            rf"{weekday}{day}{_ORDINAL}[\s,.-]*{names}(?:[\s,.-]*{year})?",
            rf"{weekday}{names}[\s,.-]*{day}{_ORDINAL}(?:,?[\s.-]*{year})?",
            rf"{names}[\s,.-]*{y}",
        ]
        regex += r"|(?<![\d/.])" + _LETTER_BEFORE + "(?:" + "|".join(words) + ")"
    return "(?:" + regex + r")(?!\d)"


def _digits_regex(core: str) -> str:
    """An ID's digits, separators between them allowed, leading zeros too."""
    return r"(?<!\d)(?:0" + _SEPARATOR + ")*" + _SEPARATOR.join(core) + r"(?!\d)"


def _uid_root(uid: str) -> str | None:
    """The root a UID shares with its siblings (its components but the last two), when
    that still names an organisation (at least 4 components, 8 characters)."""
    components = uid.split(".")
    root = ".".join(components[:-2])
    return root if len(components) - 2 >= 4 and len(root) >= 8 else None


@dataclass(frozen=True)
class _Alternative:
    regex: str
    ascii: bool  #: can match ASCII text (what the lowered fast path compiles)
    needles: tuple[str, ...]  #: a match contains one of these literals (none: see the digit cores)


def _alternatives(identifiers: Identifiers) -> list[_Alternative]:
    alternatives: list[_Alternative] = []
    seen: set[str] = set()

    def add(regex: str, literal: str | None, *needles: str) -> None:
        if regex in seen:
            return
        seen.add(regex)
        alternatives.append(_Alternative(regex, literal is None or literal.isascii(), needles))

    for root in sorted({r for r in map(_uid_root, identifiers.uids) if r}, key=len, reverse=True):
        add(r"(?<![\d.])" + re.escape(root) + r"(?:\.\d+)+(?!\.?\d)", root, root)
    for uid in identifiers.uids:
        add(r"(?<![\d.])" + re.escape(uid) + r"(?!\.?\d)", uid, uid)
    for da in identifiers.dates:
        if re.fullmatch(r"\d{8}", da):
            add(_date_regex(da), None, str(int(da[6:])), da[:4])  # every form has its day or year
    literals = sorted({s for p in identifiers.phrases for s in _spellings(p, False)}, key=lambda s: (-len(s), s))
    for literal in literals:
        add(re.escape(literal), literal, literal)
    for core in identifiers.digits:
        add(_digits_regex(core), core)
    names = set(identifiers.names)
    spelled = []
    for word in identifiers.words:
        for spelling in _spellings(word, word in names):
            spelled.append((spelling, word in names))
    spelled.sort(key=lambda item: (-len(item[0]), item))
    for spelling, name in spelled:
        if name:  # Zyxworts, Zyxwort's, zyxwort2019
            regex = _LETTER_BEFORE + re.escape(spelling) + r"(?:['\u2019]?s|es)?" + _LETTER_AFTER
        else:
            regex = _WORD_BEFORE + re.escape(spelling) + _WORD_AFTER
        add(regex, spelling, spelling)
    return alternatives


class _Hit:
    """What one known identifier matched (the part of :class:`re.Match` callers use)."""

    __slots__ = ("_text", "_start", "_end")

    def __init__(self, text: str, start: int, end: int) -> None:
        self._text, self._start, self._end = text, start, end

    def group(self, index: int = 0) -> str:
        return self._text[self._start : self._end]

    def span(self) -> tuple[int, int]:
        return self._start, self._end


class _Known:
    """Every known identifier of one dataset as patterns over folded text (one for any
    text, one of the alternatives that can match ASCII for ASCII text, which folds to its
    lower case with the same positions)."""

    def __init__(self, alternatives: list[_Alternative]) -> None:
        self.pattern = re.compile("|".join(a.regex for a in alternatives))
        ascii_parts = [a.regex for a in alternatives if a.ascii]
        self.ascii_pattern = re.compile("|".join(ascii_parts)) if ascii_parts else None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where known identifiers are in ``text`` (original positions, in order)."""
        if text.isascii():
            if self.ascii_pattern is None:
                return []
            return [m.span() for m in self.ascii_pattern.finditer(text.lower()) if m.end() > m.start()]
        folded, starts, ends = _folded_with_map(text)
        return [(starts[m.start()], ends[m.end() - 1]) for m in self.pattern.finditer(folded) if m.end() > m.start()]

    def search(self, text: str) -> bool:
        return bool(self.spans(text))

    def finditer(self, text: str) -> Iterator[_Hit]:
        for start, end in self.spans(text):
            yield _Hit(text, start, end)

    def sub(self, replacement: str, text: str) -> str:
        return _cut(text, self.spans(text), replacement)


def _cut(text: str, spans: list[tuple[int, int]], replacement: str = " ") -> str:
    pieces: list[str] = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        pieces.append(replacement)
        last = max(last, end)
    pieces.append(text[last:])
    return "".join(pieces)


def _compile(identifiers: Identifiers) -> _Known | None:
    """The known identifiers as one matcher (:class:`_Known`), ``None`` if there are none."""
    alternatives = _alternatives(identifiers)
    return _Known(alternatives) if alternatives else None


class TextCleaner:
    """Cleans free text of one dataset's identifiers.

    The known identifiers are compiled into a pattern only when a text may contain one
    of them (for ASCII text, a plain substring test of the literals every match contains,
    and a test on its digits): most kept text contains none.
    """

    def __init__(self, identifiers: Identifiers) -> None:
        self.identifiers = identifiers
        alternatives = _alternatives(identifiers)
        self._alternatives = alternatives
        self._needles = tuple(dict.fromkeys(n for a in alternatives if a.ascii for n in a.needles))
        self._cores = tuple(identifiers.digits)
        self._compiled: list[_Known | None] = []

    @property
    def _known(self) -> _Known | None:
        """The identifiers as one matcher (``None``: there are none)."""
        if not self._compiled:
            self._compiled.append(_Known(self._alternatives) if self._alternatives else None)
        return self._compiled[0]

    @staticmethod
    def for_identifiers(identifiers: Identifiers) -> "TextCleaner":
        """The cleaner for ``identifiers``, shared by the files that have the same ones.

        The slices of a series (and usually the series of a study) carry the same
        identifiers: compiling their pattern once per distinct set, not once per file,
        saves most of the cost. The cache holds original identifiers in memory only.
        """
        return _cached_cleaner(identifiers)

    def _may_contain(self, lowered: str) -> bool:
        """Could an ASCII text (lowered) contain a known identifier? (Every ASCII
        alternative needs one of its needles or, for an ID's digits, the digits in a row
        once everything else is left out.)"""
        if any(needle in lowered for needle in self._needles):
            return True
        if self._cores and _DIGIT.search(lowered):
            digits = _NOT_DIGITS.sub("", lowered)
            return any(core in digits for core in self._cores)
        return False

    def _without_known(self, text: str) -> str | None:
        """``text`` with every known identifier replaced by a space, ``None`` if it has none."""
        if text.isascii() and not self._may_contain(text.lower()):
            return None
        known = self._known
        if known is None:
            return None
        spans = known.spans(text)
        return _cut(text, spans) if spans else None

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
        has_digit = _DIGIT.search(text) is not None
        # patterns first: "Dr. Hibbert" and "john.doe@x.org" go whole, before the known
        # name parts inside them are cut out and leave "Dr." or "@x.org" behind
        for pattern, needs_digit, needs in _CLEAN_STEPS:
            if (has_digit or not needs_digit) and needs in result:
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
    for _, strong, checked, pattern in _NAMED_PATTERNS:
        if checked and (strong or not strong_only):
            found.extend(m.group(0) for m in pattern.finditer(text))
    return found


def known_hits(cleaner: TextCleaner, values: Iterable[str]) -> list[str]:
    """Known identifiers still present in ``values``."""
    known = cleaner._known
    if known is None:
        return []
    return [m.group(0) for v in values for m in known.finditer(v)]
