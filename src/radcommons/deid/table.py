"""PS3.15 Table E.1-1, the Application Level Confidentiality Profile Attributes, as data.

The table ships as package data (``data/confidentiality_profile_attributes.json``, DICOM
2024b, see ``data/NOTICE.md``) and drives the engine: every attribute it lists gets the
action of the Basic Profile (column "Basic Prof.") unless a selected option's column says
otherwise (PS3.15 E.1.1: "an option's cell overrides the Basic Profile").

Rows are looked up by tag. Three rows are patterns, not tags:

* ``(50XX,XXXX)`` Curve Data: every element of the even repeating groups 5000-501E;
* ``(60XX,3000)`` / ``(60XX,4000)`` Overlay Data / Comments: groups 6000-601E;
* ``(GGGG,EEEE) where GGGG is odd``: every private attribute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Mapping

#: Option columns of Table E.1-1 in the JSON (innolitics key), with our name and the
#: CID 7050 code claimed in (0012,0064) when the option is applied (PS3.16 CID 7050).
OPTIONS: dict[str, tuple[str, str, str]] = {
    "retain_safe_private": ("rtnSafePrivOpt", "113111", "Retain Safe Private Option"),
    "retain_uids": ("rtnUIDsOpt", "113110", "Retain UIDs Option"),
    "retain_device_identity": ("rtnDevIdOpt", "113109", "Retain Device Identity Option"),
    "retain_institution_identity": ("rtnInstIdOpt", "113112", "Retain Institution Identity Option"),
    "retain_patient_characteristics": (
        "rtnPatCharsOpt", "113108", "Retain Patient Characteristics Option"),
    "retain_long_full_dates": (
        "rtnLongFullDatesOpt", "113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_long_modified_dates": (
        "rtnLongModifDatesOpt", "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option"),
    "clean_descriptors": ("cleanDescOpt", "113105", "Clean Descriptors Option"),
    "clean_structured_content": ("cleanStructContOpt", "113104", "Clean Structured Content Option"),
    "clean_graphics": ("cleanGraphOpt", "113103", "Clean Graphics Option"),
}

BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")
#: Action D's dummy value for text and person names (PS3.15 E.1.1: "a non-zero length value
#: that may be a dummy value"); the verification gate knows it is no name.
DUMMY_TEXT = "ANONYMIZED"

CURVE_ID = "50xxxxxx"
OVERLAY_DATA_ID = "60xx3000"
OVERLAY_COMMENTS_ID = "60xx4000"
PRIVATE_ID = "ggggeeee-where-gggg-is-odd"


@dataclass(frozen=True)
class Row:
    """One row of Table E.1-1."""

    id: str  #: lower-case hex tag ("00100010") or a pattern id
    tag: str  #: as printed in the standard, "(0010,0010)"
    name: str
    in_std_comp_iod: bool
    basic: str  #: Basic Profile action: D, Z, X, U, X/Z, X/D, X/Z/D, Z/D, X/Z/U*
    options: Mapping[str, str] = field(default_factory=dict)  #: our option name -> action

    @property
    def tag_int(self) -> int | None:
        """The tag as an int, or ``None`` for a pattern row."""
        try:
            return int(self.id, 16)
        except ValueError:
            return None

    @property
    def clean_name(self) -> str:
        """The attribute name without embedded note references."""
        return self.name.split("\n")[0].strip()


@dataclass(frozen=True)
class Table:
    """All rows, indexed for lookup."""

    rows: tuple[Row, ...]
    by_tag: Mapping[int, Row]
    patterns: Mapping[str, Row]

    def lookup(self, tag: int) -> Row | None:
        """The row that applies to ``tag`` (a plain tag row, a repeating group row or the
        private row), or ``None`` if the attribute is not listed."""
        row = self.by_tag.get(tag)
        if row is not None:
            return row
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2 == 1:
            return self.patterns[PRIVATE_ID]
        if 0x5000 <= group <= 0x501E:
            return self.patterns[CURVE_ID]
        if 0x6000 <= group <= 0x601E:
            if element == 0x3000:
                return self.patterns[OVERLAY_DATA_ID]
            if element == 0x4000:
                return self.patterns[OVERLAY_COMMENTS_ID]
        return None


def _row(raw: Mapping[str, str]) -> Row:
    options = {name: raw[column] for name, (column, _, _) in OPTIONS.items() if column in raw}
    return Row(
        id=raw["id"],
        tag=raw["tag"],
        name=raw["name"],
        in_std_comp_iod=raw.get("stdCompIOD") == "Y",
        basic=raw["basicProfile"],
        options=options,
    )


@lru_cache(maxsize=1)
def load_table() -> Table:
    """Table E.1-1 from the package data (cached)."""
    text = (
        resources.files("radcommons.deid")
        .joinpath("data/confidentiality_profile_attributes.json")
        .read_text("utf-8")
    )
    rows = tuple(_row(raw) for raw in json.loads(text))
    by_tag = {row.tag_int: row for row in rows if row.tag_int is not None}
    patterns = {row.id: row for row in rows if row.tag_int is None}
    return Table(rows=rows, by_tag=by_tag, patterns=patterns)
