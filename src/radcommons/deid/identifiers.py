"""The identifiers of one dataset: what must not survive in any of its text.

Before a dataset is de-identified, the values that identify its patient, a person or a
place are gathered from it (PS3.15 E.3.5 Clean Descriptors Option; the attributes of
Table E.1-1 that carry them, every Person Name attribute, and the items of the sequences
that carry persons and IDs): every person name (the patient's name parts of two letters
and its CJK / kana / hangul parts of any length included, glued family and given names,
a family or given name of several words glued, hyphenated and apostrophe parts apart and
together), patient IDs, accession number,
study ID and other IDs (and their digit cores), phone numbers, institution, station,
serial numbers, the original Study / Series / Frame of Reference UIDs and the dataset's
dates. :class:`radcommons.deid.text.TextCleaner` hunts for them in free text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.datadict import DicomDictionary, dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from radcommons.deid.patterns import date_variants
from radcommons.dicom.elements import string_values

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
    "InstanceCreationDate", "PerformedProcedureStepStartDate", "DateOfSecondaryCapture",
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


#: Sequences whose items carry identifiers of the same patient or study (PS3.3 C.4.10,
#: C.7.1.1, C.30): every person name, ID-like value and date in their items (nested ones
#: too) is collected. A sequence here is part of what identifies a series
#: (:data:`SOURCE_TAGS`), so none whose items change from file to file is listed.
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
SOURCE_TAGS = tuple(
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
    for tag in SOURCE_TAGS:
        item = ds.get_item(tag) if tag in ds else None
        if item is None:
            continue
        if isinstance(item, RawDataElement):
            key.append((tag, item.VR, item.value))
        elif item.VR == "SQ":
            return None
        else:
            key.append((tag, "decoded", tuple(string_values(item.value))))
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
                    glued = "".join(pieces)
                    if len(pieces) > 1 and len(glued) >= 4:  # De La Cruz: DELACRUZ; Mary Ann: MARYANN
                        self.phrases.add(glued)
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
            for value in string_values(element.value):
                found.date(value)
            return
        elif in_insurance and keyword in _CODE_KEYWORDS:
            kind = "phrase"
        elif keyword in _IDENTIFIER_KEYWORDS or (vr in _ID_LIKE_VRS and _ID_LIKE.search(keyword)):
            kind = _kind(keyword, vr)
        else:
            return
        for value in string_values(element.value):
            found.add(value, kind)

    def visit_item(item: Dataset, in_insurance: bool, depth: int) -> None:
        for element in item:  # items are small: every element is looked at
            if not element.tag.is_private:
                item_element(element, in_insurance, depth)

    for tag, kind in _IDENTIFIER_TAGS:
        if tag in ds:
            for value in string_values(ds[tag].value):
                found.add(value, kind)
    for tag in _DATE_TAGS:
        if tag in ds:
            for value in string_values(ds[tag].value):
                found.date(value)
    for tag in _UID_TAGS:
        if tag in ds:
            for value in string_values(ds[tag].value):
                found.uid(value)
    other_ids = ds.get("OtherPatientIDsSequence")
    if other_ids:
        for item in other_ids:
            for value in string_values(item.get("PatientID")):
                found.add(value, "id")
    # Looked up by keyword: iterating the dataset would decode every element.
    for keyword in _IDENTIFIER_SEQUENCES:
        items = ds.get(keyword)
        if items and not isinstance(items, (str, bytes)):
            for item in items:
                if isinstance(item, Dataset):
                    visit_item(item, keyword == "PatientInsurancePlanCodeSequence", 1)
    return found.identifiers()

