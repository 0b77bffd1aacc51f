"""Checking that a dataset is de-identified (run by the commons on what arrives).

:func:`check_deidentified` looks at a dataset alone (no key, no original) and lists
what contradicts PS3.15 Annex E as RadCommons applies it:

* (0012,0062) Patient Identity Removed is YES and (0012,0064) lists CID 7050 codes
  including 113100 (Basic Profile); (0028,0303) is MODIFIED when 113107 is claimed;
* no identifier patterns (e-mail, phone, SSN-like, names after titles, dates written
  in text, runs of 5+ digits) in any text element, nested or private;
* no person names except the pseudonym in Patient's Name; Patient's Birth Date empty;
* private attributes only from the safe-private allow list, and only when 113111 is
  claimed;
* every instance UID (incl. File Meta) in ``2.25.<integer>`` form;
* Burned In Annotation not YES.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from radcommons.deid.safe_private import disposition, load_allow_list
from radcommons.deid.text import find_patterns
from radcommons.deid.uids import CLASS_UID_KEYWORDS, is_deidentified_uid, is_well_known

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
#: attributes whose values are pseudonyms or codes, not free text
_NOT_FREE_TEXT = frozenset(
    {"PatientID", "PatientName", "DeidentificationMethod", "CodeValue", "CodingSchemeDesignator"}
)


@dataclass(frozen=True)
class Finding:
    """One problem: a short code, where it is, and what is wrong."""

    code: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.code} at {self.path}: {self.message}"


#: VRs whose values the checks read; elements of other VRs are checked by tag and VR alone.
_READ_VRS = _TEXT_VRS | {"UI", "SQ"}


def _walk(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, Dataset, DataElement | RawDataElement]]:
    """Every element, nested ones too, with the path prefix of its dataset (see :func:`_path`).

    Only elements whose value a check reads are converted (pydicom decodes a value on first
    access; the numbers of a header are most of that cost and no check reads them). An element
    whose VR is not known from the file (implicit VR, UN) is converted too, to learn its VR.
    """
    for element in ds.elements():
        if element.VR is None or element.VR == "UN" or element.VR in _READ_VRS:
            element = ds[element.tag]
        yield prefix, ds, element
        if element.VR == "SQ":
            path = _path(prefix, element.tag)
            for index, item in enumerate(element.value or []):
                yield from _walk(item, f"{path}[{index}].")


def _path(prefix: str, tag: int) -> str:
    """``(gggg,eeee)`` after its sequence prefix; only built for findings and sequences."""
    return f"{prefix}({tag >> 16:04X},{tag & 0xFFFF:04X})"


@lru_cache(maxsize=8192)
def _pattern_hits(text: str, strong_only: bool) -> tuple[str, ...]:
    """:func:`find_patterns`, remembered: the instances of a series repeat most of their text values."""
    return tuple(find_patterns(text, strong_only=strong_only))


def _values(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, MultiValue)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def check_deidentified(ds: Dataset) -> list[Finding]:
    """Everything in ``ds`` that says it is not (properly) de-identified; ``[]`` if clean."""
    findings: list[Finding] = []
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        findings.append(Finding("identity-not-removed", "(0012,0062)", "Patient Identity Removed is not YES"))
    codes = {
        str(item.get("CodeValue", ""))
        for item in (ds.get("DeidentificationMethodCodeSequence") or [])
        if str(item.get("CodingSchemeDesignator", "")) == "DCM"
    }
    if "113100" not in codes:
        findings.append(
            Finding("no-method-codes", "(0012,0064)", "CID 7050 code 113100 (Basic Profile) not listed")
        )
    if "113107" in codes and str(ds.get("LongitudinalTemporalInformationModified", "")) != "MODIFIED":
        findings.append(
            Finding("dates-flag", "(0028,0303)", "113107 claimed but Longitudinal Temporal Information Modified is not MODIFIED")
        )
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        findings.append(Finding("burned-in", "(0028,0301)", "Burned In Annotation is YES"))
    if str(ds.get("PatientBirthDate", "") or ""):
        findings.append(Finding("birth-date", "(0010,0030)", "Patient's Birth Date is not empty"))
    pseudonym = str(ds.get("PatientID", "") or "")
    allow = load_allow_list() if "113111" in codes else {}

    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
        if uid and not is_deidentified_uid(uid):
            findings.append(Finding("uid-form", "(0002,0003)", f"{uid} is not a 2.25 UID"))

    for prefix, parent, element in _walk(ds):
        tag = element.tag
        private = tag.group & 1 == 1
        if private:
            if tag.element < 0x0010:
                findings.append(Finding("private", _path(prefix, tag), "illegal private element"))
            elif tag.element > 0x00FF:
                creator_tag = Tag(tag.group, tag.element >> 8)
                creator = parent[creator_tag].value if creator_tag in parent else None
                if disposition(allow, tag.group, str(creator) if creator else None, tag.element) is None:
                    findings.append(Finding("private", _path(prefix, tag),
                                            f"private element of {creator!r} is not on the safe list"))
        vr = element.VR
        if vr == "UI":
            if element.keyword in CLASS_UID_KEYWORDS:
                continue
            for uid in _values(element.value):
                if uid and not is_well_known(uid) and not is_deidentified_uid(uid):
                    findings.append(Finding("uid-form", _path(prefix, tag), f"{uid} is not a 2.25 UID"))
        elif vr == "PN":
            for name in _values(element.value):
                if name and not (element.keyword == "PatientName" and name == pseudonym):
                    findings.append(Finding("person-name", _path(prefix, tag), "a person name is present"))
        elif vr in _TEXT_VRS and element.keyword not in _NOT_FREE_TEXT:
            for text in _values(element.value):
                hits = [h for h in _pattern_hits(text, private) if h != pseudonym]
                if hits:
                    findings.append(Finding("residual-pattern", _path(prefix, tag),
                                            f"identifier-like text ({len(hits)} match(es))"))
    return findings
