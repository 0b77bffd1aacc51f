"""The DICOM JSON Model (PS3.18 Annex F) for DICOMweb answers, as plain functions.

QIDO-RS results and WADO-RS metadata are JSON objects keyed by the eight hex digits of a tag
(``"0020000D"``), each value ``{"vr": "UI", "Value": [...]}``; an attribute that is present but
empty has no ``Value`` (F.2.5). Person names are ``{"Alphabetic": "..."}`` (F.2.2); IS, DS and
the binary integer VRs are JSON numbers (F.2.3). Pure: no storage, no HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import BaseTag, Tag

#: VRs whose JSON values are numbers (PS3.18 F.2.3).
NUMBER_VRS = frozenset({"IS", "DS", "SL", "SS", "UL", "US", "FL", "FD", "SV", "UV"})
#: Binary VRs: never inlined in QIDO answers.
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: Pixel data and its siblings are never part of /metadata (they are bulk data, PS3.18 8.7.3.3).
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


def attribute_tag(name: str) -> BaseTag | None:
    """The tag of a keyword (``StudyDate``) or of eight hex digits (``00080020``), else None.

    QIDO-RS accepts both forms for ``{attributeID}`` and ``includefield`` (PS3.18 8.3.4.1).
    """
    text = name.strip()
    if len(text) == 8:
        try:
            return Tag(int(text, 16))
        except ValueError:
            pass
    tag = tag_for_keyword(text)
    return Tag(tag) if tag is not None else None


def tag_key(tag: int) -> str:
    """The JSON key of a tag: eight upper-case hex digits."""
    return f"{int(tag):08X}"


def keyword(tag: int) -> str:
    """The keyword of a tag, or its hex key for private and unknown tags."""
    return keyword_for_tag(tag) or tag_key(tag)


def vr_of(tag: int) -> str:
    """The VR the data dictionary gives a tag (``UN`` for unknown and private tags)."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    # Ambiguous VRs ("US or SS") are reported as their first choice; none of them is queried here.
    return vr.split(" or ")[0]


def _json_value(vr: str, value: Any) -> Any:
    if vr == "PN":
        return {"Alphabetic": str(value)}
    if vr in NUMBER_VRS:
        number = float(value)
        # Integer VRs are integers; decimals that happen to be whole are written as integers too.
        return int(number) if vr not in ("DS", "FL", "FD") or number.is_integer() else number
    return str(value)


def element_json(tag: int, value: Any) -> dict[str, Any]:
    """One attribute: ``{"vr": VR}`` when ``value`` is None, empty or an empty list, else with ``Value``."""
    vr = vr_of(tag)
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    values = [v for v in values if v is not None and v != ""]
    if not values:
        return {"vr": vr}
    return {"vr": vr, "Value": [_json_value(vr, v) for v in values]}


def dataset_json(values: Mapping[int, Any]) -> dict[str, dict[str, Any]]:
    """A DICOM JSON object from tag -> value(s) (already JSON elements are kept), sorted by tag."""
    out: dict[str, dict[str, Any]] = {}
    for tag in sorted(values):
        value = values[tag]
        out[tag_key(tag)] = value if isinstance(value, dict) and "vr" in value else element_json(tag, value)
    return out


def header_json(ds: Dataset, tags: Iterable[int] | None = None) -> dict[str, dict[str, Any]]:
    """Attributes of a header as DICOM JSON: ``tags`` only, or all of them except pixel data.

    Binary values are inlined (``InlineBinary``, F.2.7) since pixel data, the only large one
    in practice, is left out; a requested attribute missing from the header is left out too.
    """
    wanted = None if tags is None else {int(t) for t in tags}
    out: dict[str, dict[str, Any]] = {}
    for element in ds:
        tag = int(element.tag)
        if tag in PIXEL_TAGS or (wanted is not None and tag not in wanted):
            continue
        if (tag >> 16) == 0x0002:  # File Meta Information is not part of the data set (PS3.18 F.2)
            continue
        out[tag_key(tag)] = element.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=1 << 30)
    return dict(sorted(out.items()))


def json_values(element: Mapping[str, Any] | None) -> list[str]:
    """The values of a DICOM JSON attribute as strings (person names: their alphabetic group)."""
    if not element:
        return []
    out = []
    for value in element.get("Value", []):
        if isinstance(value, dict):
            value = value.get("Alphabetic", "")
        out.append(str(value))
    return out
