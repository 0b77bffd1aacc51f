"""The de-identification engine: one pydicom Dataset, in memory (PS3.15 Annex E).

:func:`deidentify_dataset` applies a :class:`~radcommons.deid.profile.Profile` to every
attribute of a dataset, wherever it occurs (nested sequences included), driven by
Table E.1-1 (:mod:`radcommons.deid.table`):

* each listed attribute gets its Basic Profile action or the action of a selected
  option (PS3.15 E.1.1, E.3), compound actions resolved by the attribute's Type
  (:mod:`radcommons.deid.iod`);
* attributes Table E.1-1 does not list are kept, with three safety nets: every UID is
  replaced (action U) unless it is a registry UID, every date is shifted (or emptied
  under the plain Basic Profile), every person name is emptied, the dataset's own
  identifiers are scrubbed from any text, code or AE title that is kept, URLs other
  than a code's are removed (they name the site's archive), and a number string (IS, DS)
  that is not a number or spells an ID or a date of the dataset goes by its Type;
* private attributes are removed unless the Retain Safe Private Option (E.3.10) is
  selected and TCIA's knowledge base lists them as safe where they occur (top level, or
  the same chain of enclosing sequences: :mod:`radcommons.deid.safe_private`);
* the patient gets a keyed pseudonym (:mod:`radcommons.deid.pseudonyms`) and a date offset
  of 30 to 365 days either way, or the one the site's registry recorded for a patient already
  in it (:mod:`radcommons.deid.dates`, :meth:`DeidContext.offset_for`);
* (0012,0062) Patient Identity Removed, (0012,0063) De-identification Method, (0012,0064)
  De-identification Method Code Sequence (CID 7050) and (0028,0303) Longitudinal
  Temporal Information Modified record what was done (PS3.15 E.1.1 and E.3).

The function changes the dataset in place (a DIMSE gateway de-identifies what it just
received) and never touches Pixel Data unless the pixel cleaner redacts burned-in text.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date as _date
from functools import lru_cache
from typing import Any, Callable, Mapping

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from radcommons import __version__
from radcommons.deid import dates, iod
from radcommons.dicom.elements import PIXEL_TAGS
from radcommons.deid.fileio import ascii_compatible
from radcommons.deid.identifiers import collect_identifiers
from radcommons.deid.profile import Decision, Profile, load_profile
from radcommons.deid.pseudonyms import patient_key, patient_pseudonym
from radcommons.deid.safe_private import disposition_in_context, load_allow_list, sequence_signature
from radcommons.deid.table import CLEAN_PIXEL_DATA_CODE, DUMMY_TEXT, Table, load_table
from radcommons.deid.text import TextCleaner
from radcommons.deid.uids import CLASS_UID_KEYWORDS, UIDMapper, clean_uid

DEIDENTIFIED = "deidentified"
WITHHELD = "withheld"
REJECTED = "rejected"

TABLE_EDITION = "PS3.15 E.1-1 2024b"

_TAG_PATIENT_ID = 0x00100020
_TAG_PATIENT_NAME = 0x00100010
_TAG_PATIENT_AGE = 0x00101010
_TAG_PATIENT_BIRTH_DATE = 0x00100030
#: attributes the engine writes itself at the end (any incoming value is replaced)
_RECORD_TAGS = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})

#: What :meth:`_Transformer.plan` says of an element, before its value is looked at.
KEEP = "keep"  #: written back as read (never decoded)
DELETE = "delete"
UID = "uid"  #: every value replaced by its keyed UID (:meth:`_Transformer._uid`)
VALUE = "value"  #: the value decides (text cleaned, date shifted, items visited, ...)
FIXED = "fixed"  #: replaced by a value that depends on the VR only (actions Z, D)
SCRUB = "scrub"  #: text kept once the known identifiers are scrubbed (VALUE, but as read if clean)
CLEAN = "clean"  #: a descriptor cleaned (VALUE, but as read if clean)
CREATOR = "creator"  #: a private creator: kept while an element of its block is kept
#: an IS / DS: kept as read when every value is a number (PS3.5 6.2) that is not one of the
#: dataset's identifiers or dates, else replaced as its Type allows (:meth:`_Transformer._number`)
NUMBER = "number"

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_MULTI_VALUED_TEXT_VRS = frozenset({"LO", "SH", "UC"})
#: Codes and AE titles Table E.1-1 does not list (Scan Options, Body Part Examined, Retrieve AE
#: Title ...): kept once scrubbed of the dataset's own identifiers, as text is (an MRN typed
#: into a Code String is still the MRN).
_SCRUBBED_CODE_VRS = frozenset({"CS", "AE"})
_STRING_VRS = _TEXT_VRS | frozenset({"PN", "CS", "AE", "DA", "DT", "TM", "AS", "IS", "DS", "UI", "UR"})
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
#: VRs of attributes Table E.1-1 does not list whose values the safety nets inspect
#: (:meth:`_Transformer._unlisted`); any other unlisted element is kept as read, raw.
_UNLISTED_INSPECTED_VRS = _TEXT_VRS | frozenset({"SQ", "UI", "DA", "DT", "PN"})
#: Free text (not a short string): where Table E.1-1 does not list it, or a safe private element
#: holds it, it is cleaned as a descriptor is (identifier patterns too), not only scrubbed of the
#: dataset's own identifiers.
_FREE_TEXT_VRS = frozenset({"ST", "LT", "UT"})
#: Content that makes an object withheld wherever it is nested (PS3.15 E.3.6, E.3.8: the Clean
#: Structured Content and Clean Graphics Options are not implemented): Content Sequence, Text
#: Object Sequence.
_CONTENT_SEQUENCE, _TEXT_OBJECT_SEQUENCE = 0x0040A730, 0x00700008
#: URLs Table E.1-1 does not list that define a code (Coding Scheme URL, URN Code Value): kept once
#: scrubbed of the dataset's identifiers. Every other unlisted UR (Retrieve URL / URI, Pixel Data
#: Provider URL, Storage URL, Contact URI ...) points at the site's archive, by its host name and
#: often with the original UIDs and Patient ID in the query: removed.
_CODE_URLS = frozenset({0x0008010E, 0x00080120})
#: String VRs of a safe private element whose value is looked at before it is kept (a text value
#: in a Code String or a Decimal String is not what TCIA reviewed): removed when it holds a known
#: identifier, and IS / DS when they are not numbers (:meth:`_Transformer._private`).
_CHECKED_PRIVATE_VRS = frozenset({"CS", "AE", "AS", "IS", "DS", "TM", "UR"})
_NUMBER = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
_NUMBER_VRS = frozenset({"IS", "DS"})
#: one value of an Integer String / a Decimal String as PS3.5 6.2 allows it (leading and trailing
#: spaces, an optional sign; DS: a fixed or floating point number), and its length limit: 12 bytes
#: for IS, and for DS 32 rather than PS3.5's 16, since writers that print a double in full
#: ("-125.12345678901234": 19) are common and a number that long hides no text (its digits are
#: still checked); zeroing Image Position (Patient) for that would cost the research its geometry
_PLAIN_NUMBER = {
    "IS": (re.compile(rb" *[-+]?[0-9]+ *"), 12),
    "DS": (re.compile(rb" *[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)? *"), 32),
}
#: a number with fewer digits than this is never taken for an identifier (Instance Number 7)
_MIN_IDENTIFIER_DIGITS = 6

_DUMMY = {
    "PN": DUMMY_TEXT,
    "LO": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "UT": DUMMY_TEXT,
    "UC": DUMMY_TEXT,
    "CS": DUMMY_TEXT,
    "AE": DUMMY_TEXT,
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "UR": "",
}

#: Action Z: the empty value by VR (any other VR but SQ: None).
_EMPTY_VALUE: dict[str, Any] = {vr: "" for vr in _STRING_VRS} | {vr: b"" for vr in _BINARY_VRS}
#: VRs whose Z and D values do not depend on the old value (not SQ, UI: those recurse
#: or remap; not an ambiguous VR such as "US or SS", resolved only on decoding).
_REPLACED_WITHOUT_READING = (_STRING_VRS | _BINARY_VRS | frozenset(
    {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"}
)) - {"UI"}


def _dummy_value(vr: str) -> Any:
    """Action D: a dummy value of the VR (PS3.15 E.1.1: "non-zero length" where possible)."""
    if vr in _DUMMY:
        return _DUMMY[vr]
    if vr in _BINARY_VRS:
        return b""
    return 0 if vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV") else None


#: SOP Class UID prefixes (PS3.4 B.5): the SR storage classes, whose text is in content items, and
#: the encapsulated documents (PDF, CDA, STL, OBJ, MTL), whose content is a file of its own kind
STRUCTURED_REPORT_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
ENCAPSULATED_DOCUMENT_PREFIX = "1.2.840.10008.5.1.4.1.1.104."
_UNSUPPORTED_SOP_PREFIXES = (
    (STRUCTURED_REPORT_PREFIX, "structured report"),
    (ENCAPSULATED_DOCUMENT_PREFIX, "encapsulated document"),
)


@dataclass(frozen=True)
class DeidContext:
    """Everything a de-identification needs besides the data: key, site and profile."""

    key: bytes
    site: str
    profile: Profile = field(default_factory=load_profile)
    #: run the burned-in text cleaner where :mod:`radcommons.deid.pixels` asks for it
    review_pixels: bool = True
    #: shortcuts that give the same bytes with less work (kept text checked undecoded,
    #: strings packed by :mod:`radcommons.deid.fileio`); False: the plain pydicom
    #: reference path, which tests compare the shortcuts against byte for byte
    fast_paths: bool = True
    #: Patient (``patient_key``) -> the date offset the site's registry recorded, where the
    #: derivation would give another (patients first de-identified before offsets had a
    #: minimum): filled by :meth:`radcommons.deid.registry.Registry.bind`, kept by :meth:`offset_for`
    recorded_offsets: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.key) < 32:
            raise ValueError("the key must be at least 32 bytes")
        if not self.site or not self.site.strip():
            raise ValueError("a site identifier is required")

    def __repr__(self) -> str:  # never print the key
        return f"DeidContext(site={self.site!r}, profile={self.profile.name!r})"

    def offset_for(self, patient_key: str) -> int:
        """The patient's date offset: the registry's for a recorded patient, else the derived one
        (:func:`radcommons.deid.dates.date_offset_days`; the rule is in that module)."""
        recorded = self.recorded_offsets.get(patient_key)
        return recorded if recorded is not None else dates.date_offset_days(self.key, self.site, patient_key)

    def settings_fingerprint(self) -> str:
        """SHA-256 of everything besides the key and the input that decides an output's bytes:
        the profile with its options and overrides, the pixel review, and this software's
        version (a new version may remove more). Not secret."""
        settings = {
            "version": __version__,
            "profile": self.profile.name,
            "options": sorted(self.profile.options),
            "overrides": sorted((f"{tag:08X}", action) for tag, action in self.profile.overrides.items()),
            "site_overrides": sorted((f"{tag:08X}", action) for tag, action in self.profile.site_overrides.items()),
            "review_pixels": self.review_pixels,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PatientRecord:
    """One line of the site's pseudonym registry (original identifiers: keep private)."""

    site: str
    patient_id: str  #: the original Patient ID (or "study:<uid>" when there was none)
    pseudonym: str
    date_offset_days: int


@dataclass(frozen=True)
class StudyRecord:
    """Which original study became which de-identified one (private to the site)."""

    site: str
    study_uid: str
    new_study_uid: str
    accession_number: str
    patient_id: str
    pseudonym: str


@dataclass
class DeidOutcome:
    """The result of de-identifying one dataset."""

    status: str  #: "deidentified", "withheld" or "rejected"
    reason: str = ""
    dataset: Dataset | None = None
    patient: PatientRecord | None = None
    study: StudyRecord | None = None
    pixels_cleaned: bool = False
    pixel_regions: tuple[tuple[int, int, int, int], ...] = ()
    new_uids: dict[str, str] = field(default_factory=dict)  #: study/series/sop: new UID

    @property
    def ok(self) -> bool:
        return self.status == DEIDENTIFIED


# --------------------------------------------------------------------------- pixels


def _pixels_module():
    """The burned-in text cleaner, imported lazily (it is optional and heavy)."""
    try:
        from radcommons.deid import pixels
    except ImportError:
        return None
    return pixels


def _fallback_needs_review(ds: Dataset) -> tuple[bool, str]:
    """Used only when the pixel cleaner is not installed: the DOMAIN signals (PS3.15
    E.3.1 note: Burned In Annotation absent does not mean NO)."""
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return True, "Burned In Annotation is YES"
    modality = str(ds.get("Modality", "")).upper()
    if modality in {"US", "SC", "OT", "DOC", "XC", "ES"}:
        return True, f"modality {modality} often carries burned-in text"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if any(v in {"SECONDARY", "DERIVED", "SCREEN SAVE"} for v in image_type):
        return True, "Image Type is SECONDARY/DERIVED/SCREEN SAVE"
    return False, "no burned-in text signal"


def pixel_review(ds: Dataset) -> tuple[bool, str]:
    """Does this image need its pixels cleaned? (decided from the header only)."""
    if not any(tag in ds for tag in PIXEL_TAGS) and "Rows" not in ds:
        return False, "no pixel data"
    module = _pixels_module()
    if module is None:
        return _fallback_needs_review(ds)
    verdict = module.needs_pixel_review(ds)
    return bool(verdict.needs_cleaning), str(verdict.reason)


def clean_pixels(ds: Dataset) -> tuple[bool, str | None, tuple[tuple[int, int, int, int], ...]]:
    """Run the burned-in text cleaner on a full dataset: (cleaned, withheld reason, boxes)."""
    module = _pixels_module()
    if module is None:
        return False, "burned-in text may be present and the pixel cleaner is not installed", ()
    try:
        result = module.clean_burned_in_text(ds)
    except Exception as error:  # the cleaner failing must withhold, never leak
        return False, f"pixel cleaner failed: {type(error).__name__}: {error}", ()
    if result.withheld_reason:
        return False, str(result.withheld_reason), tuple(result.regions)
    return bool(result.cleaned), None if result.cleaned else "pixels could not be confirmed clean", tuple(
        result.regions
    )


# --------------------------------------------------------------------------- checks


def unsupported_reason(ds: Dataset) -> str | None:
    """Why this object is withheld before any de-identification, or ``None``."""
    sop_class = clean_uid(ds.get("SOPClassUID", "") or "")
    for prefix, what in _UNSUPPORTED_SOP_PREFIXES:
        if sop_class.startswith(prefix):
            return (
                f"unsupported object: {what} ({sop_class}) may hold free text; the Clean "
                "Structured Content Option is not implemented"
            )
    if "ContentSequence" in ds:
        return "unsupported object: Content Sequence (structured free text) is not cleaned"
    if str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper() == "YES":
        # PS3.15 E.3.2: only the Clean Recognizable Visual Features Option (113102) may
        # release such an image (and set (0028,0302) to NO); it is not implemented.
        return (
            "recognizable visual features: Recognizable Visual Features (0028,0302) is YES and "
            "the Clean Recognizable Visual Features Option is not implemented"
        )
    for item in ds.get("GraphicAnnotationSequence") or []:
        if "TextObjectSequence" in item:
            return "unsupported object: graphic text annotations (Clean Graphics Option not implemented)"
    for group in sorted({tag.group for tag in ds.keys() if 0x6000 <= tag.group <= 0x601E and not tag.group & 1}):
        # An overlay without Overlay Data (60xx,3000) lives in the unused high bits of Pixel Data
        # (retired, PS3.5 8.1.2); removing its group would leave the drawing in the pixels.
        position = ds.get((group, 0x0102))
        if (group, 0x3000) not in ds and position is not None and position.value:
            return (f"an overlay embedded in the pixel data's high bits (({group:04X},0102) Overlay Bit "
                    "Position): the pixels cannot be released without masking them, which is not implemented")
    return None


_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def required_uids_problem(ds: Dataset) -> str | None:
    """Why the dataset cannot be de-identified for want of the UIDs an output path needs (each
    present, with one value: VM 1, PS3.3), or ``None``."""
    missing = [keyword for keyword in _REQUIRED_UIDS if not clean_uid(str(ds.get(keyword, "") or ""))]
    if missing:
        return f"missing required UID(s): {', '.join(missing)}"
    multiple = [keyword for keyword in _REQUIRED_UIDS if isinstance(ds.get(keyword), MultiValue)]
    if multiple:
        return (f"more than one value in {', '.join(multiple)} (one is allowed): which study, series or "
                "instance it is cannot be told")
    return None


# --------------------------------------------------------------------------- transform


def _is_sequence(element: DataElement) -> bool:
    return element.VR == "SQ"


_DICTIONARY_VRS: dict[int, str] = {}


def _dictionary_vr(tag: int) -> str:
    vr = _DICTIONARY_VRS.get(tag)
    if vr is None:
        try:
            vr = str(dictionary_VR(tag))
        except KeyError:
            vr = "UN"
        _DICTIONARY_VRS[tag] = vr
    return vr


def element_vr(ds: Dataset, tag: BaseTag) -> str:
    """The VR pydicom will give the element ``tag`` of ``ds``, without decoding its value.

    Mirrors pydicom's ``raw_element_vr`` hook for standard (even group) tags: an
    implicit VR element takes the dictionary VR, an explicit ``UN`` one too (shorter
    than 64 KiB, ``config.replace_un_with_known_vr``); otherwise the VR as read. Knowing
    the VR lets the engine leave elements it has nothing to do with undecoded, so they
    are written back byte for byte.
    """
    item = ds.get_item(tag)
    if not isinstance(item, RawDataElement):
        return str(item.VR)
    return raw_element_vr(int(tag), item.VR, len(item.value or b""))


def raw_element_vr(tag: int, vr_read: str | None, length: int) -> str:
    """The VR pydicom gives a standard element read with ``vr_read`` (``None``: implicit VR)
    and a value of ``length`` bytes: the dictionary's for implicit VR and for ``UN`` shorter
    than 64 KiB, else the VR as read (see :func:`element_vr`)."""
    if vr_read is None or (vr_read == "UN" and length < 0xFFFF):
        return _dictionary_vr(tag)
    return str(vr_read)


#: Decisions per profile (tag -> Decision or None): Table E.1-1 lookup, options and
#: overrides resolved once per profile, not once per element of every file.
_DECISIONS: dict[int, tuple[Profile, Table, dict[int, Decision | None]]] = {}


def _decisions(profile: Profile, table: Table) -> dict[int, Decision | None]:
    cached = _DECISIONS.get(id(profile))
    if cached is not None and cached[0] is profile and cached[1] is table:
        return cached[2]
    if len(_DECISIONS) > 16:
        _DECISIONS.clear()
    decisions: dict[int, Decision | None] = {}
    _DECISIONS[id(profile)] = (profile, table, decisions)  # keeps profile alive: id stays unique
    return decisions


def _decide(profile: Profile, table: Table, tag: int) -> Decision | None:
    decision = profile.override(tag)
    if decision is None:
        row = table.lookup(tag)
        decision = profile.decide(row) if row is not None else None
    return decision


def _string_values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, MultiValue)):
        return [str(v) if v is not None else "" for v in value]
    return [str(value)]


def number_bytes(element: DataElement | RawDataElement) -> bytes:
    """An IS / DS element's values as the bytes of its text (PS3.5 6.2): as read when undecoded,
    else as pydicom decoded them (their original strings), an empty value (``None``) kept in its
    place so that the count of values stays: ``1\\\\2`` is three values, the middle one empty."""
    value = element.value
    if isinstance(element, RawDataElement) or isinstance(value, (bytes, bytearray)):
        return bytes(value or b"")
    return "\\".join(_string_values(value)).encode("latin-1", "replace")


def _none_as_empty(element: DataElement | RawDataElement) -> None:
    """An empty value among a decoded IS / DS element's values held as ``None`` (a data set built in
    memory) becomes ``''``: pydicom writes a None there as the text 'None', not a number (PS3.5 6.2),
    which the verification gate refuses. The count of values stays (``1\\\\2``: three values)."""
    if isinstance(element, DataElement) and isinstance(element.value, (list, MultiValue)) and any(
        value is None for value in element.value
    ):
        _set_strings(element, _string_values(element.value))


def _set_strings(element: DataElement, values: list[str]) -> None:
    if not values:
        element.value = ""
    elif len(values) == 1:
        element.value = values[0]
    else:
        element.value = values


def raw_text_unchanged(raw: bytes, vr: str, operation: Callable[[str], str]) -> bool:
    """Does ``operation`` leave the text value ``raw`` (of a text VR, in an ASCII-compatible
    character set) as it is, and would decoding and re-encoding it give the same bytes?

    Only then may the element be written back as read instead of as the reference path
    writes it: plain ASCII, and values already in pydicom's form (PS3.5 6.2: each value's
    trailing spaces and NULs are not part of it; one space pads to even length).
    """
    if not raw.isascii():
        return False
    text = raw.decode("ascii")
    # LO, SH, UC are multi-valued (PS3.5 6.2: backslash delimits); ST, LT, UT are not
    multi_valued = vr in _MULTI_VALUED_TEXT_VRS or vr in _SCRUBBED_CODE_VRS or vr == "TM"
    values = text.split("\\") if multi_valued else [text]
    values = [value.rstrip("\0 ") for value in values]
    encoded = "\\".join(values)
    if len(encoded) % 2:
        encoded += " "
    if encoded != text:
        return False
    return all(operation(value) == value for value in values)


def orphan_creators(tags: list[int]) -> list[int]:
    """The private creators among ``tags`` whose block holds no other element of ``tags``
    (PS3.5 7.8.1: (gggg,00xx) reserves (gggg,xx00-xxFF)); a de-identifier drops them."""
    blocks = {(tag >> 16, (tag & 0xFFFF) >> 8) for tag in tags if tag >> 16 & 1 and tag & 0xFFFF > 0x00FF}
    return [
        tag for tag in tags
        if tag >> 16 & 1 and 0x0010 <= tag & 0xFFFF <= 0x00FF and (tag >> 16, tag & 0xFFFF) not in blocks
    ]


def number_digits(value: bytes) -> bytes:
    """The digits of one IS / DS value as an identifier would show in it: sign, exponent, leading
    zeros and a fraction of zeros left out (``+048213977.0`` and ``4821.3977`` give ``48213977``)."""
    whole, fraction = _number_parts(value)
    return (whole + fraction if fraction.strip(b"0") else whole).lstrip(b"0")


def _number_parts(value: bytes) -> tuple[bytes, bytes]:
    """The digits before and after the decimal point of one IS / DS value (sign and exponent left out)."""
    mantissa = value.strip(b" \0").lstrip(b"+-").split(b"e")[0].split(b"E")[0]
    whole, _, fraction = mantissa.partition(b".")
    return whole, fraction


def _decimal_comma(value: bytes) -> bytes:
    """A DS value written with a decimal comma (``1,5``) read with a point (``1.5``); other values as they are.

    PS3.5 6.2 writes a Decimal String with a period, but a comma is a common writer's error in
    locales that use one; it is a number, not text, so it is judged as the number it means (and
    kept as read). A value with both a comma and a point, or two commas, is no such number."""
    if value.count(b",") == 1 and b"." not in value:
        return value.replace(b",", b".")
    return value


def plain_number(raw: bytes, vr: str, identifiers: frozenset[bytes],
                 identifier_like: Callable[[bytes], bool] | None = None) -> bool:
    """Is every value of the IS / DS element ``raw`` (its bytes as read) a number as PS3.5 6.2
    writes one (IS: an optional sign and digits, at most 12 bytes, within 32 bits; DS: a fixed or
    floating point number, at most 32 bytes: see :data:`_PLAIN_NUMBER`; spaces around it; a decimal
    comma read as a point, :func:`_decimal_comma`) that spells none of ``identifiers`` (the dataset's
    IDs and dates, 6 digits or more)? Empty values are numbers; so is a value padded with NULs, as
    some writers do.

    A value spells an identifier when its digits (:func:`number_digits`) are one, or when the digits
    before its decimal point hold one inside a longer run (``900123456`` for the ID 123456: a
    prefix or suffix does not hide it). The digits after the point are only compared whole: a
    measured value printed in full (``0.70312500000000011``) has a dozen 6-digit runs inside its
    fraction, which would match some ID of a dataset by chance and cost the research its geometry.

    ``identifier_like`` (the verification gate, which knows no original IDs): a test of each value
    (bytes, decimal comma read as a point) that says whether its digits look like an identifier."""
    pattern, limit = _PLAIN_NUMBER[vr]
    for value in raw.split(b"\\"):
        value = value.rstrip(b"\0 ")
        if not value.strip(b" "):
            continue
        if vr == "DS":
            value = _decimal_comma(value)
        if len(value) > limit or not pattern.fullmatch(value):
            return False
        if vr == "IS" and len(value) > 9 and not -(2**31) <= int(value) < 2**31:
            return False
        if len(value) >= _MIN_IDENTIFIER_DIGITS and identifiers and _spells(value, identifiers):
            return False
        if identifier_like is not None and identifier_like(value):
            return False
    return True


def _spells(value: bytes, identifiers: frozenset[bytes]) -> bool:
    """Whether one number spells an identifier (:func:`plain_number`): its digits are one, or the
    digits before its decimal point hold one."""
    if number_digits(value) in identifiers:
        return True
    whole = _number_parts(value)[0].lstrip(b"0")
    return len(whole) >= _MIN_IDENTIFIER_DIGITS and any(identifier in whole for identifier in identifiers)


#: digits of a number in an attribute that numbers things (its keyword ends so) that make it look like
#: a record or accession number: instance, series and acquisition numbers stay far below 10 million
_NUMBERING_KEYWORD = re.compile(r"\w*(?:Number|Identifier)")
NUMBERING_IDENTIFIER_DIGITS = 8


def _is_date(digits: bytes) -> bool:
    """Whether the digits of a number are a calendar date written YYYYMMDD (years 1900-2099, as
    :mod:`radcommons.deid.patterns` reads dates in text)."""
    if len(digits) != 8 or digits[:2] not in (b"19", b"20"):
        return False
    try:
        _date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return False
    return True


def date_like(value: bytes) -> bool:
    """Whether a number's digits (:func:`number_digits`) are a date (:func:`_is_date`)."""
    return _is_date(number_digits(value))


def numbering_like(value: bytes) -> bool:
    """A date, or digits enough for a record or accession number (attributes that number things)."""
    digits = number_digits(value)
    return len(digits) >= NUMBERING_IDENTIFIER_DIGITS or _is_date(digits)


@lru_cache(maxsize=4096)
def identifier_form(tag: int) -> Callable[[bytes], bool]:
    """The test of an IS / DS value's form that says it looks like an identifier whatever the dataset:
    :func:`numbering_like` in an attribute that numbers things, else :func:`date_like`; a measured value
    is never judged by its length (a dose of 370000000 Bq). The engine removes such a value as it removes
    one that spells a known ID, and the verification gate, which knows no ID, quarantines it: what the
    engine keeps passes the gate."""
    return numbering_like if _NUMBERING_KEYWORD.fullmatch(keyword_for_tag(tag) or "") else date_like


def _dummy_numbers(count: int) -> str | list[str]:
    """Action D for an IS / DS of ``count`` values: one zero each (the Value Multiplicity kept)."""
    return "0" if count <= 1 else ["0"] * count


class WithheldContent(Exception):
    """Found while transforming: content the engine does not clean; the object is withheld."""


def _binary_in_dictionary(tag: int) -> bool:
    """Does the data dictionary give ``tag`` a binary VR (one of them, for "OB or OW" and the like)?"""
    return any(vr.strip() in _BINARY_VRS - {"UN"} for vr in _dictionary_vr(tag).split(" or "))


def _as_text(value: Any) -> Any:
    """A value read in a binary VR (UN, OB ...) as text (Latin-1: every byte is a character)."""
    return bytes(value).decode("latin-1").rstrip("\0 ") if isinstance(value, (bytes, bytearray)) else value


class _Transformer:
    """Applies one profile to one dataset (state: the patient's offset, UID cache...)."""

    def __init__(
        self, ds: Dataset, context: DeidContext, uid_mapper: UIDMapper, table: Table
    ) -> None:
        self.context = context
        self.profile = context.profile
        self.table = table
        self.map_uid = uid_mapper
        self.sop_class = clean_uid(ds.get("SOPClassUID", "") or "")
        pid_key = patient_key(_as_text(ds.get("PatientID")), ds.get("StudyInstanceUID"))
        self.patient_key = pid_key
        self.pseudonym = patient_pseudonym(context.key, context.site, pid_key)
        self.offset = context.offset_for(pid_key)
        identifiers = collect_identifiers(ds)
        self.cleaner = TextCleaner.for_identifiers(identifiers)
        #: what a number must not spell (:func:`plain_number`): the digits of the dataset's IDs
        #: (6 or more) and its real dates (YYYYMMDD, before any shift)
        self.number_identifiers = frozenset(
            [core.encode() for core in identifiers.digits if len(core) >= _MIN_IDENTIFIER_DIGITS]
            + [da.encode() for da in identifiers.dates if da.isdigit() and da.isascii()]
        )
        self.allow = load_allow_list() if self.profile.keeps_safe_private else {}
        self.remove_groups: set[int] = set()
        self.decisions = _decisions(self.profile, table)
        self._plans: dict[tuple[int, str, bool], str] = {}
        self.fast = context.fast_paths
        #: enclosing sequences of the items being visited (private elements are kept
        #: only in a context where TCIA reviewed them: :mod:`radcommons.deid.safe_private`)
        self._path: list[str] = []

    # ---- whole dataset

    def run(self, ds: Dataset) -> None:
        self._dataset(ds, top=True)
        for group in self.remove_groups:  # overlays: the whole repeating group goes
            for tag in [t for t in ds.keys() if t.group == group]:
                del ds[tag]

    def _dataset(self, ds: Dataset, top: bool) -> None:
        if not top:
            # at the top, unsupported_reason() withholds before anything is transformed
            if _CONTENT_SEQUENCE in ds:
                raise WithheldContent("unsupported object: a Content Sequence (structured free text) "
                                      "nested in a sequence is not cleaned")
            if _TEXT_OBJECT_SEQUENCE in ds:
                raise WithheldContent("unsupported object: graphic text annotations nested in a sequence "
                                      "(Clean Graphics Option not implemented)")
        private_seen: set[int] = set()
        for tag in list(ds.keys()):
            if tag not in ds:
                continue
            if tag.element == 0x0000 or tag.group == 0x0002:
                del ds[tag]  # group lengths go stale; file meta is rebuilt separately
                continue
            if top and int(tag) in PIXEL_TAGS:
                continue  # pixel data is never touched here
            if top and int(tag) in _RECORD_TAGS:
                del ds[tag]
                continue
            if tag.is_private:
                self._private(ds, tag, private_seen)
                continue
            self._element(ds, tag, top)
        if private_seen or any(t.is_private for t in ds.keys()):
            self._drop_orphan_creators(ds)

    # ---- one standard element

    def _decision(self, tag: int) -> Decision | None:
        try:
            return self.decisions[tag]
        except KeyError:
            decision = self.decisions[tag] = _decide(self.profile, self.table, tag)
            return decision

    def plan(self, tag: int, vr: str, top: bool) -> str:
        """What happens to the standard element ``tag`` of VR ``vr`` whatever its value:
        :data:`KEEP` (written back as read), :data:`DELETE`, :data:`UID` (every value
        remapped, :meth:`_uid`) or :data:`VALUE` (the value decides: :meth:`_element`).

        A pure function of the profile, the SOP class (Type-dependent actions) and the
        element's place; decided once per tag. Most of an image header is KEEP: those
        elements are never decoded (:mod:`radcommons.deid.streamed` copies their bytes).
        """
        key = (tag, vr, top)
        step = self._plans.get(key)
        if step is None:
            step = self._plans[key] = self._make_plan(tag, vr, top)
        return step

    def _make_plan(self, tag: int, vr: str, top: bool) -> str:
        if tag in (_TAG_PATIENT_ID, _TAG_PATIENT_NAME):
            return VALUE  # the pseudonym (:meth:`_patient_identity`)
        if vr in _BINARY_VRS and not _binary_in_dictionary(tag):
            # Text, a sequence or an unknown attribute in a VR that is read as bytes (UN of 64 KiB
            # or more, OB ...): nothing would look at what it holds. A sequence is decoded
            # (PS3.5 6.2.2: its items are implicit VR little endian) and handled as one.
            if vr == "UN" and _dictionary_vr(tag) == "SQ":
                return DELETE if self._make_plan(tag, "SQ", top) == DELETE else VALUE
            return DELETE
        decision = self._decision(tag)
        if decision is None:
            if vr == "UI":
                return KEEP if keyword_for_tag(tag) in CLASS_UID_KEYWORDS else UID
            if vr in _TEXT_VRS:
                return CLEAN if vr in _FREE_TEXT_VRS else SCRUB
            if vr == "UR":
                return VALUE if tag in _CODE_URLS else DELETE
            if vr in _SCRUBBED_CODE_VRS or vr == "TM":
                return SCRUB
            if vr in _NUMBER_VRS:
                return NUMBER
            # the safety nets look at these VRs (:meth:`_unlisted`); no other unlisted element
            return VALUE if vr in _UNLISTED_INSPECTED_VRS else KEEP
        type_ = iod.attribute_type(self.sop_class, tag) if top else None
        action = iod.resolve(decision.action, type_, vr == "SQ")
        if action == "X":
            return DELETE
        if action == "K" and vr in _NUMBER_VRS and decision.source not in ("site", "profile"):
            return NUMBER  # Patient's Size and Weight (Retain Patient Characteristics)
        if action == "K" and not self._keep_inspects(tag, vr, decision):
            return KEEP
        if action == "C" and vr == "TM":
            return SCRUB  # a whole-day shift leaves times of day as they were: only a date goes
        if vr == "UI" and action in ("K", "C", "D", "U"):
            return UID
        if action in ("K", "C") and vr in _TEXT_VRS and tag != _TAG_PATIENT_AGE:
            return SCRUB if action == "K" else CLEAN
        if action in ("Z", "D") and vr in _REPLACED_WITHOUT_READING:
            return FIXED
        return VALUE

    def _element(self, ds: Dataset, base_tag: BaseTag, top: bool) -> None:
        tag = int(base_tag)
        # Decide from tag and VR first: an element that is kept as it is stays undecoded
        # (raw, written back byte for byte), which is most of an image header.
        vr = element_vr(ds, base_tag)
        step = self.plan(tag, vr, top)
        if vr in _NUMBER_VRS:
            _none_as_empty(ds.get_item(base_tag))
        if step == KEEP:
            return
        if step == DELETE:
            group = tag >> 16
            if 0x6000 <= group <= 0x601E and tag & 0xFFFF == 0x3000:
                self.remove_groups.add(group)
            del ds[base_tag]
            return
        if step == UID:
            self._uid(ds[base_tag])
            return
        if step == NUMBER:
            self._number(ds, base_tag, vr, top)
            return
        # FIXED, SCRUB, CLEAN, VALUE: the value path below (the plan only names its outcome)
        decision = self._decision(tag)
        if tag in (_TAG_PATIENT_ID, _TAG_PATIENT_NAME) and self._patient_identity(
            ds[base_tag], decision, top
        ):
            return
        if vr == "UN" and _dictionary_vr(tag) == "SQ":  # read as bytes (see _make_plan): decoded, then visited
            if not self._decode_sequence(ds, base_tag):
                return
            vr = "SQ"
        if decision is None:
            scrubbed = vr in _TEXT_VRS or vr in _SCRUBBED_CODE_VRS or vr == "TM"
            if scrubbed and self._raw_text_unchanged(ds, base_tag, vr, self.text_operation(SCRUB, vr)):
                return
            self._unlisted(ds, ds[base_tag])
            return
        type_ = iod.attribute_type(self.sop_class, tag) if top else None
        action = iod.resolve(decision.action, type_, vr == "SQ")
        if (action in ("K", "C") and vr in _TEXT_VRS and tag != _TAG_PATIENT_AGE) or (action == "C" and vr == "TM"):
            # K scrubs known identifiers, C cleans (:meth:`_apply`, :meth:`_clean`)
            if self._raw_text_unchanged(ds, base_tag, vr, self.text_operation(SCRUB if action == "K" else CLEAN, vr)):
                return
        if action in ("Z", "D") and vr in _REPLACED_WITHOUT_READING:
            # the new value depends on the VR only: replace without decoding the old one
            ds[base_tag] = DataElement(base_tag, vr, _EMPTY_VALUE[vr] if action == "Z" else _dummy_value(vr))
            return
        element = ds[base_tag]
        if element.VR != vr:  # pragma: no cover - element_vr mirrors pydicom
            action = iod.resolve(decision.action, type_, _is_sequence(element))
        self._apply(ds, element, action, decision)

    @staticmethod
    def _decode_sequence(ds: Dataset, tag: BaseTag) -> bool:
        """Replace the UN element ``tag`` by the sequence its bytes hold (implicit VR little
        endian, PS3.5 6.2.2); one that does not decode is removed. True when decoded."""
        from pydicom.filebase import DicomBytesIO
        from pydicom.filereader import read_sequence

        raw = bytes(ds[tag].value or b"")
        try:
            items = read_sequence(DicomBytesIO(raw), True, True, len(raw), ds._character_set)
            for item in items:  # read every element now: a bad one is found here, not when written
                for element_tag in list(item.keys()):
                    item[element_tag]
        except Exception:  # noqa: BLE001 - any bytes can arrive: what does not decode goes
            del ds[tag]
            return False
        ds[tag] = DataElement(tag, "SQ", items)
        return True

    def plain_number(self, raw: bytes, vr: str, tag: int) -> bool:
        """Is the IS / DS ``raw`` of ``tag`` kept as read? (:func:`plain_number` with this dataset's
        identifiers and the form of one, :func:`identifier_form`)"""
        return plain_number(raw, vr, self.number_identifiers, identifier_form(tag))

    def _number(self, ds: Dataset, tag: BaseTag, vr: str, top: bool) -> None:
        """A :data:`NUMBER` element: kept as read (never decoded) when its values are plain numbers
        (:meth:`plain_number`); otherwise it is not a number, or it spells an ID or a date of the
        dataset, and is treated as its attribute treats a value that cannot stay: removed where
        the IOD makes it Type 3, emptied where Type 2, and where Type 1 or not known (inside
        sequences, other IODs: :func:`radcommons.deid.iod.resolve`) a zero for each value."""
        raw = number_bytes(ds.get_item(tag))
        if self.plain_number(raw, vr, int(tag)):
            return
        action = iod.resolve("X/Z/D", iod.attribute_type(self.sop_class, int(tag)) if top else None)
        if action == "X":
            del ds[tag]
        else:
            ds[tag] = DataElement(tag, vr, "" if action == "Z" else _dummy_numbers(raw.count(b"\\") + 1))

    def _unlisted_text_operation(self, vr: str) -> Callable[[str], str]:
        """Text of an attribute Table E.1-1 does not list: free text cleaned, other text scrubbed."""
        return self.text_operation(CLEAN if vr in _FREE_TEXT_VRS else SCRUB, vr)

    def text_operation(self, step: str, vr: str) -> Callable[[str], str]:
        """What a :data:`SCRUB` or :data:`CLEAN` step does to each value of VR ``vr``: a time
        stays a time (:func:`radcommons.deid.dates.time_of_day`), other text is cleaned (CLEAN)
        or scrubbed of the dataset's identifiers (SCRUB)."""
        if vr == "TM":
            return dates.time_of_day
        return self.cleaner.clean if step == CLEAN else self.cleaner.scrub_known

    def _raw_text_unchanged(self, ds: Dataset, tag: BaseTag, vr: str, operation: Callable[[str], str]) -> bool:
        """True when ``operation`` leaves the text element ``tag`` as it is, decided on its
        raw bytes (:func:`raw_text_unchanged`): the element then stays raw and is written
        back as read."""
        if not self.fast:
            return False
        item = ds.get_item(tag)
        if not isinstance(item, RawDataElement) or item.length == 0xFFFFFFFF:
            return False
        if (item.VR is not None and item.VR != vr) or not ascii_compatible(ds._character_set):
            return False
        return raw_text_unchanged(item.value or b"", vr, operation)

    def _patient_identity(self, element: DataElement, decision: Decision | None, top: bool) -> bool:
        """Patient ID and Patient's Name become the keyed pseudonym; True when done."""
        tag = int(element.tag)
        if element.VR in _BINARY_VRS:  # read as bytes (UN of 64 KiB or more): written as text
            text = _as_text(element.value)
            element.VR = _dictionary_vr(tag)
            element.value = text
        if tag == _TAG_PATIENT_ID and (decision is None or decision.source != "site"):
            pseudonym = (
                self.pseudonym
                if top
                else patient_pseudonym(self.context.key, self.context.site, str(element.value or "").strip())
            )
            element.value = pseudonym if (top or element.value) else ""
            return True
        if tag == _TAG_PATIENT_NAME and top and (decision is None or decision.source != "site"):
            element.value = self.pseudonym
            return True
        return False

    @staticmethod
    def _keep_inspects(tag: int, vr: str, decision: Decision) -> bool:
        """Does action K still look at the value (see the K branch of :meth:`_apply`)?"""
        return (
            tag == _TAG_PATIENT_AGE
            or vr in ("SQ", "UI")
            or (vr in _TEXT_VRS and decision.source not in ("site", "profile"))
        )

    def _apply(self, ds: Dataset, element: DataElement, action: str, decision: Decision) -> None:
        tag = int(element.tag)
        if action == "X":  # pragma: no cover - _element removes without decoding
            del ds[element.tag]
        elif action == "Z":
            self._empty(element)
        elif action in ("D", "U"):
            if _is_sequence(element):
                self._items(element)
            elif element.VR == "UI":
                self._uid(element)
            else:
                self._dummy(element)
        elif action == "K":
            if tag == _TAG_PATIENT_AGE:
                self._age(ds, element)
            elif _is_sequence(element):
                self._items(element)
            elif element.VR == "UI":
                self._uid(element)
            elif element.VR in _TEXT_VRS and decision.source not in ("site", "profile"):
                self._strings(element, self.cleaner.scrub_known)
        elif action == "C":
            self._clean(ds, element, decision.clean or "auto")
        else:  # pragma: no cover - profile loading validates actions
            raise ValueError(f"unknown action {action!r}")

    def _clean(self, ds: Dataset, element: DataElement, kind: str) -> None:
        vr = element.VR
        if _is_sequence(element):
            self._items(element)
        elif vr in ("DA", "DT"):
            self._date(ds, element)
        elif vr == "TM":  # a whole-day shift leaves times of day as they were: only a date goes
            self._strings(element, dates.time_of_day)
        elif vr == "UI":
            self._uid(element)
        elif vr == "PN":
            self._empty(element)
        elif vr == "AS":
            self._age(ds, element)
        elif vr in _STRING_VRS:
            self._strings(element, self.cleaner.clean)
        elif vr in _BINARY_VRS:
            self._empty(element)

    # ---- unlisted attributes: safety nets

    def _unlisted(self, ds: Dataset, element: DataElement) -> None:
        vr = element.VR
        if _is_sequence(element):
            self._items(element)
        elif vr == "UI":
            if element.keyword not in CLASS_UID_KEYWORDS:
                self._uid(element)
        elif vr in ("DA", "DT"):
            if self.profile.shifts_dates:
                self._date(ds, element)
            else:
                self._empty(element)
        elif vr == "PN":
            self._empty(element)
        elif vr in _TEXT_VRS:
            self._strings(element, self._unlisted_text_operation(vr))
        elif vr == "UR" or vr in _SCRUBBED_CODE_VRS or vr == "TM":  # a code's URL (:data:`_CODE_URLS`), a code
            self._strings(element, self.text_operation(SCRUB, vr))

    # ---- private attributes (PS3.15 E.3.10)

    def private_plan(self, tag: int, vr: str | None, creator: Callable[[], str | None]) -> str:
        """:meth:`plan` for the private element ``tag`` in the sequences being visited.

        ``creator`` gives the value of the Private Creator that reserves its block (PS3.5
        7.8.1), asked only once the profile keeps safe private elements (decoding it
        changes how it is written back); ``vr`` is the VR pydicom decodes the element with
        (``None``: not known without decoding, so VALUE wherever TCIA lists it).
        """
        override = self.profile.override(tag)
        if override is not None and override.action == "K":
            return KEEP
        group, element = tag >> 16, tag & 0xFFFF
        if not self.profile.keeps_safe_private or element < 0x0010:
            return DELETE
        if element <= 0x00FF:
            return CREATOR
        verdict = disposition_in_context(self.allow, group, creator(), element, "/".join(self._path))
        if verdict is None:
            return DELETE
        if vr is None or vr == "SQ":
            return VALUE
        if verdict == "o" or vr in ("DA", "DT"):
            return VALUE if vr in ("DA", "DT", "LO", "SH", "CS") else DELETE
        if verdict == "h" or vr == "UI":
            return VALUE if vr in ("UI", "LO", "SH") else DELETE
        # binary VRs too: TCIA lists many elements as seen in OB or UN, which may hold anything
        checked = vr == "PN" or vr in _TEXT_VRS or vr in _BINARY_VRS or vr in _CHECKED_PRIVATE_VRS
        return VALUE if checked else KEEP

    def _private(self, ds: Dataset, tag: BaseTag, seen: set[int]) -> None:
        creator_tag = Tag(tag.group, tag.element >> 8)

        def creator() -> str | None:
            value = ds[creator_tag].value if creator_tag in ds else None
            return str(value) if value is not None else None

        step = self.private_plan(int(tag), None, creator)
        if step == VALUE:  # TCIA lists it here: its VR decides
            item = ds.get_item(tag)
            known = isinstance(item, RawDataElement) and item.VR not in (None, "UN")
            # an explicit VR is what pydicom decodes with; otherwise its private dictionary
            # (by creator) decides, so decode
            step = self.private_plan(int(tag), str(item.VR if known else ds[tag].VR), creator)
            if step == KEEP and not known and isinstance(item, RawDataElement):
                # a VR from pydicom's dictionary, not from the file: the bytes may be anything
                # (text where the dictionary says FD); kept only without a known identifier
                text = bytes(item.value or b"").decode("latin-1")
                if self.cleaner.scrub_known(text) != text:
                    del ds[tag]
                return
        if step == KEEP:
            return
        if step == DELETE:
            del ds[tag]
            return
        if step == CREATOR:
            seen.add(int(tag))
            return  # creators are dropped later if nothing of their block remains
        element = ds[tag]
        vr = element.VR
        creator_text = creator()
        verdict = disposition_in_context(self.allow, tag.group, creator_text, tag.element, "/".join(self._path))
        if _is_sequence(element):
            self._items(element, sequence_signature(tag.group, tag.element, creator_text))
        elif verdict == "o" or vr in ("DA", "DT"):  # a date, in a VR the plan accepts for one
            self._date(ds, element, private=True)
        elif verdict == "h" or vr == "UI":  # a UID, likewise
            self._uid(element)
        elif vr == "PN":
            self._empty(element)
        elif vr in _TEXT_VRS:
            self._strings(element, self._unlisted_text_operation(vr))
        elif vr in _BINARY_VRS:
            # bytes nobody decodes: kept only when no identifier of the dataset is in them
            text = bytes(element.value or b"").decode("latin-1")
            if self.cleaner.scrub_known(text) != text:
                del ds[tag]
        elif vr in _CHECKED_PRIVATE_VRS:
            values = _string_values(element.value)
            numbers = vr not in _NUMBER_VRS or all(not v.strip() or _NUMBER.fullmatch(v) for v in values)
            if not numbers or any(self.cleaner.scrub_known(v) != v for v in values):
                del ds[tag]

    def _drop_orphan_creators(self, ds: Dataset) -> None:
        for tag in orphan_creators([int(t) for t in ds.keys()]):
            del ds[tag]

    # ---- value operations

    def _items(self, element: DataElement, signature: str | None = None) -> None:
        self._path.append(signature or sequence_signature(element.tag.group, element.tag.element))
        try:
            for item in element.value or []:
                self._dataset(item, top=False)
        finally:
            self._path.pop()

    def _empty(self, element: DataElement) -> None:
        vr = element.VR
        element.value = Sequence() if vr == "SQ" else _EMPTY_VALUE.get(vr)

    def _dummy(self, element: DataElement) -> None:
        element.value = _dummy_value(element.VR)

    def _uid(self, element: DataElement) -> None:
        values = _string_values(element.value)
        _set_strings(element, [self.map_uid(v) if clean_uid(v) else "" for v in values])

    def _strings(self, element: DataElement, operation: Callable[[str], str]) -> None:
        values = _string_values(element.value)
        # A value that was all identifier (a Structure Set Label equal to the Study ID, a Segment
        # Label equal to the patient's name) gets action D's dummy rather than nothing: the
        # attribute may be Type 1 where the engine cannot tell (inside sequences, other IODs).
        cleaned = [operation(v) or (str(_dummy_value(element.VR) or "") if v.strip() else v) for v in values]
        if cleaned != values:
            _set_strings(element, cleaned)

    def _date(self, ds: Dataset, element: DataElement, private: bool = False) -> None:
        if not self.profile.shifts_dates:
            self._empty(element)
            return
        shift = dates.shift_dt if element.VR == "DT" else dates.shift_da
        results = []
        for value in _string_values(element.value):
            shifted = dates.shift_date_range(value, self.offset, shift)
            if shifted is None:
                if private:
                    del ds[element.tag]
                    return
                shifted = ""  # unreadable: drop the value, keep the element
            results.append(shifted)
        _set_strings(element, results)

    def _age(self, ds: Dataset, element: DataElement) -> None:
        values = _string_values(element.value)
        ages = [dates.normalise_age(v) for v in values]
        if any(a is None for a in ages):
            del ds[element.tag]  # unreadable AS: Patient's Age is Type 3 in Patient Study
            return
        _set_strings(element, [a for a in ages if a is not None])


# --------------------------------------------------------------------------- API

_TABLE_CACHE: dict[str, Any] = {}


def _uid_mapper(context: DeidContext) -> UIDMapper:
    # one cache per key in this process; the key never leaves the context
    mapper = _TABLE_CACHE.get(context.key.hex())
    if mapper is None:
        if len(_TABLE_CACHE) > 8:
            _TABLE_CACHE.clear()
        mapper = _TABLE_CACHE[context.key.hex()] = UIDMapper(context.key)
    if len(mapper._cache) > 200_000:
        mapper._cache.clear()
    return mapper


def method_description(profile: Profile) -> list[str]:
    """Values of (0012,0063) De-identification Method (LO, each at most 64 chars)."""
    values = [f"RadCommons {__version__}", f"profile {profile.name}", TABLE_EDITION]
    if profile.site_overrides:
        values.append("with site overrides")
    return values


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def record_deidentification(ds: Dataset, profile: Profile, pixels_cleaned: bool) -> None:
    """Set the attributes that say what was done (PS3.15 E.1.1, E.3; PS3.3 C.12.1):
    (0012,0062) YES, (0012,0063) the software and profile, (0012,0064) the CID 7050 codes
    applied, (0028,0303) MODIFIED or REMOVED, and (0028,0301) NO once pixels were cleaned."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method_description(profile)
    codes = profile.codes()
    if pixels_cleaned:
        codes.append(CLEAN_PIXEL_DATA_CODE)
        ds.BurnedInAnnotation = "NO"
    codes.sort(key=lambda code: code[0])
    ds.DeidentificationMethodCodeSequence = Sequence([_code_item(v, m) for v, m in codes])
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if profile.shifts_dates else "REMOVED"


def deidentify_dataset(
    ds: Dataset,
    context: DeidContext,
    *,
    pixels_cleaned: bool | None = None,
    pixel_regions: tuple[tuple[int, int, int, int], ...] = (),
) -> DeidOutcome:
    """De-identify ``ds`` in place and return the outcome (PS3.15 Annex E).

    ``pixels_cleaned`` is for callers that already ran the pixel cleaner (the file
    path does, on a fully read dataset); left ``None``, this function decides from the
    header and, if the image needs it and Pixel Data is present, runs the cleaner.
    On "withheld" or "rejected" the dataset must not be used (it may be half done).
    """
    problem = required_uids_problem(ds)
    if problem:
        return DeidOutcome(REJECTED, problem)
    reason = unsupported_reason(ds)
    if reason:
        return DeidOutcome(WITHHELD, reason)
    if pixels_cleaned is None:
        pixels_cleaned = False
        if context.review_pixels:
            needs, why = pixel_review(ds)
            if needs:
                if not any(tag in ds for tag in PIXEL_TAGS):
                    return DeidOutcome(WITHHELD, f"pixels need review ({why}) but Pixel Data is absent")
                cleaned, withheld, regions = clean_pixels(ds)
                if withheld:
                    return DeidOutcome(WITHHELD, f"burned-in text: {withheld}")
                pixels_cleaned, pixel_regions = cleaned, regions
    if not pixels_cleaned and str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return DeidOutcome(WITHHELD, "Burned In Annotation is YES and the pixels were not cleaned")

    original = {
        "study": clean_uid(ds.StudyInstanceUID),
        "series": clean_uid(ds.SeriesInstanceUID),
        "sop": clean_uid(ds.SOPInstanceUID),
        "accession": str(ds.get("AccessionNumber", "") or ""),
    }
    table = load_table()
    mapper = _uid_mapper(context)
    transformer = _Transformer(ds, context, mapper, table)
    try:
        transformer.run(ds)
    except WithheldContent as found:
        return DeidOutcome(WITHHELD, str(found))

    profile = context.profile
    record_deidentification(ds, profile, pixels_cleaned)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:  # File Meta and preamble are rewritten too (PS3.15 E.1.1)
        from radcommons.deid.fileio import new_file_meta

        ts = clean_uid(meta.get("TransferSyntaxUID", "") or "")
        ds.file_meta = new_file_meta(ds, ts or "1.2.840.10008.1.2.1")
        ds.preamble = b"\x00" * 128

    patient = PatientRecord(
        site=context.site,
        patient_id=transformer.patient_key,
        pseudonym=transformer.pseudonym,
        date_offset_days=transformer.offset,
    )
    new_uids = {key: mapper(value) for key, value in original.items() if key != "accession"}
    study = StudyRecord(
        site=context.site,
        study_uid=original["study"],
        new_study_uid=new_uids["study"],
        accession_number=original["accession"],
        patient_id=transformer.patient_key,
        pseudonym=transformer.pseudonym,
    )
    return DeidOutcome(
        DEIDENTIFIED,
        dataset=ds,
        patient=patient,
        study=study,
        pixels_cleaned=pixels_cleaned,
        pixel_regions=pixel_regions,
        new_uids=new_uids,
    )
