"""Identifier values, their markers, and the ``phi_manifest.json`` that lists them.

In ``--phi`` mode every identifying value the generator writes (names, MRNs,
accession numbers, addresses, phones, physicians, operators, institution,
station, device serial, free-text mentions, private tags, file and folder
names, burned-in banners) contains a unique marker ``PHIMARK-nnnnnn`` (six
digits, so that no marker is a prefix of another). The marker is part of the
identifying token itself (``DOE-PHIMARK-000001^JOHN``), so a de-identifier
that removes the identifier removes the marker with it; one that leaves it
leaves a string a test can find. A value has one marker wherever it occurs:
the same MRN string at two sites (a real collision) has the same marker.
Values limited by their VR (SH is 16 characters) are cut so that the marker
always survives whole. Dates cannot carry markers; they are listed instead.

``phi_manifest.json`` format (``format`` = ``radcommons.synth.phi_manifest/1``)::

    {
      "format": "radcommons.synth.phi_manifest/1",
      "seed": 7,
      "marker_regex": "PHIMARK-[0-9]{6}",
      "markers": {                       # every marker issued, by marker
        "PHIMARK-000001": {"kind": "patient_name", "value": "DOE-PHIMARK-000001^JOHN",
                            "site": "site_a"}
      },
      "files": {                         # every DICOM file, by path relative to OUT (POSIX)
        "site_a/DOE-PHIMARK-000001_JOHN_.../IM0001.dcm": {
          "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1",
          "planted": [                   # where each marker is in this file
            {"marker": "PHIMARK-000001", "kind": "patient_name", "where": "tag",
             "path": "(0010,0010)", "keywords": "PatientName", "vr": "PN"},
            {"marker": "PHIMARK-000003", "kind": "accession_number", "where": "tag",
             "path": "(0040,0275)[0].(0008,0050)",
             "keywords": "RequestAttributesSequence[0].AccessionNumber", "vr": "SH"},
            {"marker": "PHIMARK-000001", "kind": "patient_name", "where": "tag",
             "path": "(0009,1030)", "keywords": "GEMS_IDEN_01[30]", "vr": "LO",
             "private_creator": "GEMS_IDEN_01"},
            {"marker": "PHIMARK-000001", "kind": "patient_name", "where": "filename"},
            {"marker": "PHIMARK-000002", "kind": "mrn", "where": "pixels",
             "text": "DOE-PHIMARK-000001, JOHN  MRN ..."}
          ],
          "uids": {"(0008,0018)": "2.25....", "(0008,1110)[0].(0008,1155)": "2.25...."},
          "dates": {"(0008,0020)": "20210304", "(0010,0030)": "19540211"},
          "times": {"(0008,0030)": "101502"},
          "retain": {"PatientSex": "M", "PatientAge": "054Y", "PatientSize": "1.78",
                     "PatientWeight": "81", "Manufacturer": "SIEMENS",
                     "ManufacturerModelName": "SOMATOM Force", "Modality": "CT",
                     "description_words": ["CT", "CHEST", "WO", "CONTRAST"]}
        }
      }
    }

Tag paths: ``(gggg,eeee)`` per level joined by ``.``, sequence items as
``[i]`` after the sequence tag. ``where`` is ``tag`` (an element value; binary
private values such as Siemens CSA headers are searched as ASCII too),
``filename`` (the file's relative path, folders included) or ``pixels`` (text
burned into the image; ``text`` is what was drawn). ``uids`` are every UID the
generator created (``2.25.`` root) and ``dates``/``times`` every DA/DT/TM value:
a de-identifier must replace or shift all of them. ``retain`` lists what
research needs kept (PS3.15 Annex E Retain options, TCIA practice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

MARKER_PREFIX = "PHIMARK-"
MARKER_REGEX = "PHIMARK-[0-9]{6}"
MARKER_PATTERN = re.compile(MARKER_REGEX)
_MARKER_BYTES = re.compile(MARKER_REGEX.encode("ascii"))
PHI_MANIFEST_FORMAT = "radcommons.synth.phi_manifest/1"
GENERATED_UID_ROOT = "2.25."


@dataclass(frozen=True)
class Marker:
    """One issued marker and the identifier value that carries it."""

    marker: str
    kind: str
    value: str
    site: str


@dataclass
class MarkerRegistry:
    """Issues markers (when enabled) and remembers them, in issue order (deterministic)."""

    enabled: bool
    markers: dict[str, Marker] = field(default_factory=dict)
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)

    def _issue(self, kind: str, site: str) -> str:
        marker = f"{MARKER_PREFIX}{len(self.markers) + 1:06d}"
        self.markers[marker] = Marker(marker, kind, "", site)
        return marker

    def mark(self, kind: str, value: str, *, site: str, max_len: int = 64, sep: str = "-") -> str:
        """Return ``value`` with a fresh marker appended (``value`` itself when disabled).

        The result is at most ``max_len`` characters: the plain part is cut, never the marker.
        """
        if not self.enabled:
            return value[:max_len]
        marker = self._issue(kind, site)
        room = max_len - len(marker) - len(sep)
        marked = f"{value[:room]}{sep}{marker}" if room > 0 and value else marker
        self.markers[marker] = Marker(marker, kind, marked, site)
        return marked

    def kind_of(self, marker: str) -> str:
        """The kind of identifier a marker was issued for."""
        found = self.markers.get(marker)
        return found.kind if found else "unknown"


def find_markers(text: str) -> list[str]:
    """Markers in a string, in order of occurrence, without repeats."""
    return list(dict.fromkeys(MARKER_PATTERN.findall(text)))


def _tag_str(tag: BaseTag) -> str:
    return f"({tag.group:04X},{tag.element:04X})"


def _private_creator(ds: Dataset, tag: BaseTag) -> str | None:
    if not tag.is_private or tag.element < 0x1000:
        return None
    creator_tag = (tag.group << 16) | (tag.element >> 8)
    creator = ds.get(creator_tag)
    return str(creator.value) if creator is not None else None


@dataclass
class DatasetScan:
    """What :func:`scan_dataset` found in one dataset."""

    planted: list[dict[str, Any]] = field(default_factory=list)
    uids: dict[str, str] = field(default_factory=dict)
    dates: dict[str, str] = field(default_factory=dict)
    times: dict[str, str] = field(default_factory=dict)


def scan_dataset(ds: Dataset, registry: MarkerRegistry) -> DatasetScan:
    """Walk ``ds`` recursively and list markers, generated UIDs, dates and times with their tag paths.

    Walking the written dataset (rather than recording while writing) makes the
    manifest true by construction: whatever is in the file is listed.
    """
    scan = DatasetScan()

    def walk(current: Dataset, prefix: str, kw_prefix: str) -> None:
        for element in current:
            tag = element.tag
            path = prefix + _tag_str(tag)
            creator = _private_creator(current, tag)
            keyword = element.keyword or (
                f"{creator}[{tag.element & 0xFF:02X}]" if creator else _tag_str(tag)
            )
            kw_path = kw_prefix + keyword
            if element.VR == "SQ":
                for index, item in enumerate(element.value or Sequence()):
                    walk(item, f"{path}[{index}].", f"{kw_path}[{index}].")
                continue
            if tag == 0x7FE00010:
                continue
            value = element.value
            if value is None:
                continue
            if isinstance(value, bytes):
                found = [m.decode("ascii") for m in dict.fromkeys(_MARKER_BYTES.findall(value))]
                text = ""
            else:
                values = value if isinstance(value, (list, tuple)) or element.VM > 1 else [value]
                text = "\\".join(str(v) for v in values)
                found = find_markers(text)
            for marker in found:
                entry: dict[str, Any] = {
                    "marker": marker,
                    "kind": registry.kind_of(marker),
                    "where": "tag",
                    "path": path,
                    "keywords": kw_path,
                    "vr": element.VR,
                }
                if creator:
                    entry["private_creator"] = creator
                scan.planted.append(entry)
            if element.VR == "UI" and text.startswith(GENERATED_UID_ROOT):
                scan.uids[path] = text
            elif element.VR in ("DA", "DT") and text:
                scan.dates[path] = text
            elif element.VR == "TM" and text:
                scan.times[path] = text

    walk(ds, "", "")
    return scan


RETAINED_KEYWORDS = (
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "Manufacturer",
    "ManufacturerModelName",
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
)


def retained_values(ds: Dataset, clean_descriptions: tuple[str, ...]) -> dict[str, Any]:
    """The values a de-identifier must keep: demographics research needs, device, and clinical description words."""
    retain: dict[str, Any] = {}
    for keyword in RETAINED_KEYWORDS:
        value = ds.get(keyword)
        if value not in (None, ""):
            retain[keyword] = str(value)
    words: list[str] = []
    for description in clean_descriptions:
        words.extend(w for w in description.split() if w not in words)
    retain["description_words"] = words
    return retain
