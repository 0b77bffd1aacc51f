"""The catalogue of codes: MIDRC's 159 codes, extended with the LOINC / RSNA Radiology Playbook.

MIDRC's tables name only the codes its curators have used, so much of the long tail (MR
shoulder, XR tibia and fibula ...) has no code to map to. The full Playbook
(``LoincRsnaRadiologyPlaybook.csv``, in every LOINC release under
``AccessoryFiles/LoincRsnaRadiologyPlaybook/``) names several thousand radiology codes; a
commons operator may download it under LOINC's licence and import it
(``radcommons harmonize catalogue import PATH``). This module reads it: one row per
(code, part), columns ``LoincNumber, LongCommonName, PartNumber, PartTypeName, PartName,
PartSequenceOrder, RID, PreferredName, RPID, LongName``, from which a code's method
(``Rad.Modality.Modality Type``), body region (``Rad.Anatomic Location.Region Imaged``) and
contrast timing (``Rad.Timing``) are read, written as MIDRC writes them (``Abdomen+Pelvis``,
``WO & W``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from radcommons.errors import UserError
from radcommons.harmonize.tables import LOINC_CODE, CodeInfo, MappingTable, _cell, _read_rows, _read_text, _require

PLAYBOOK_COLUMNS = ("LoincNumber", "LongCommonName", "PartTypeName", "PartName")

# Part types (compared case-insensitively: releases write "Modality Type" and "Modality type").
_METHOD = "rad.modality.modality type"
_REGION = "rad.anatomic location.region imaged"
_FOCUS = "rad.anatomic location.imaging focus"
_TIMING = "rad.timing"
_JOIN = {_METHOD: "+", _REGION: "+", _FOCUS: "+", _TIMING: " & "}


def read_playbook(path: Path | str) -> tuple[CodeInfo, ...]:
    """The codes of a ``LoincRsnaRadiologyPlaybook.csv`` with their method, region and timing."""
    header, rows = _read_rows(_read_text(path), path)
    index = _require(header, PLAYBOOK_COLUMNS, path)
    order = index.get("PartSequenceOrder")
    names: dict[str, str] = {}
    parts: dict[str, dict[str, list[tuple[str, int, str]]]] = {}
    for line, cells in rows:
        if len(cells) != len(header):  # a short row read as empty parts wiped a code's method
            raise UserError(f"{path}: row {line}: {len(cells)} cells for {len(header)} columns",
                            "give the LoincRsnaRadiologyPlaybook.csv of a LOINC release, unmodified")
        code = _cell(cells, index["LoincNumber"]).strip()
        if not LOINC_CODE.match(code):
            raise UserError(
                f"{path}: row {line}, column LoincNumber: {code!r} is not a LOINC code (like 24627-2)",
                "give the LoincRsnaRadiologyPlaybook.csv of a LOINC release, unmodified",
            )
        name = " ".join(_cell(cells, index["LongCommonName"]).split())
        if not name:
            raise UserError(f"{path}: row {line}, column LongCommonName: empty")
        if names.setdefault(code, name) != name:
            raise UserError(f"{path}: row {line}: code {code} has two names ({names[code]!r} and {name!r})")
        kind = " ".join(_cell(cells, index["PartTypeName"]).split()).lower()
        value = " ".join(_cell(cells, index["PartName"]).split())
        if kind in _JOIN and value:
            sequence = _cell(cells, order).strip() if order is not None else ""
            parts.setdefault(code, {}).setdefault(kind, []).append((sequence, line, value))
    if not names:
        raise UserError(f"{path}: the file has a header but no rows")

    def joined(code: str, kind: str) -> str:
        values = [value for _, _, value in sorted(parts.get(code, {}).get(kind, []))]
        return _JOIN[kind].join(dict.fromkeys(values))

    return tuple(
        CodeInfo(
            code=code,
            long_common_name=name,
            method=joined(code, _METHOD),
            system=joined(code, _REGION) or joined(code, _FOCUS),
            timing=joined(code, _TIMING),
        )
        for code, name in names.items()
    )


def with_codes(table: MappingTable, codes: Iterable[CodeInfo]) -> MappingTable:
    """``table`` with more codes in its catalogue.

    A code the table already has keeps its entry, unless that entry is only a name from a
    curated row (77 of MIDRC's 159 codes have no method, region or timing): the imported
    entry, which has them, replaces it.
    """
    catalogue = dict(table.codes)
    for info in codes:
        known = catalogue.get(info.code)
        if known is None or not (known.method or known.system or known.timing):
            catalogue[info.code] = info
    return MappingTable(rows=table.rows, codes=catalogue, source=table.source)


def resolve_code(code: str, catalogue: Mapping[str, CodeInfo], name: str | None = None) -> CodeInfo:
    """The catalogue entry of ``code``; a code not in it needs its long common name (``name``).

    Bad input is a :class:`UserError` that says what to do.
    """
    code = code.strip()
    if not LOINC_CODE.match(code):
        raise UserError(f"{code!r} is not a LOINC code", "a LOINC code is digits, a dash and a check digit: 36643-5")
    info = catalogue.get(code)
    if info is not None:
        if name and " ".join(name.split()).upper() != info.long_common_name.upper():
            raise UserError(f"code {code} is {info.long_common_name!r} in the catalogue, not {name!r}",
                            "leave out --name to use the catalogue's name")
        return info
    if not name or not name.strip():
        raise UserError(
            f"code {code} is not in the catalogue ({len(catalogue)} codes)",
            "give its LOINC long common name with --name, or import the LOINC/RSNA Radiology Playbook: "
            "radcommons harmonize catalogue import LoincRsnaRadiologyPlaybook.csv",
        )
    return CodeInfo(code=code, long_common_name=" ".join(name.split()))
