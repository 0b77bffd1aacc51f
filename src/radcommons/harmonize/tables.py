"""The tables harmonization reads: mapping tables, code attributes and (Modality, StudyDescription) pairs.

Everything is read into frozen dataclasses. Bad input raises :class:`~radcommons.errors.UserError`
naming the file, row and column, never a traceback. MIDRC's own files are messy (codes with
stray tabs and quotes, ``[blank]`` cells, modality lists such as ``"CR, DX"``); the readers
clean exactly those things and nothing else.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from radcommons.errors import UserError
from radcommons.inputs import (
    SEPARATOR_NAMES,
    UnreadableText,
    check_text_table,
    check_unique_columns,
    decode_text_table,
    other_separator,
    read_named_file,
)
from radcommons.harmonize.normalize import clean_cell, midrc_key, normalize_space_case

MODALITY = "Modality"
DESCRIPTION = "StudyDescription"
FREQUENCY = "frequency"
CODE = "LOINC code"
NAME = "L-Long Common Name"

#: Package-data file names (copies of MIDRC's tables; see ``data/NOTICE.md``).
BUILTIN_MAPPING = "StudyDescription_mapping_table.tsv"
BUILTIN_ATTRIBUTES = "StudyDescription_filtering_attributes.csv"


@dataclass(frozen=True)
class CodeInfo:
    """One LOINC / RSNA Radiology Playbook code and what MIDRC filters it by."""

    code: str
    long_common_name: str
    method: str = ""
    system: str = ""
    timing: str = ""
    midrc_system: str = ""


@dataclass(frozen=True)
class MappingRow:
    """One curated row: a (Modality, StudyDescription) pair and its code."""

    modality: str
    description: str
    code: str
    long_common_name: str
    line: int = 0
    source: str = ""


@dataclass(frozen=True)
class MappingTable:
    """Curated rows plus the catalogue of every code a matcher may answer with."""

    rows: tuple[MappingRow, ...]
    codes: Mapping[str, CodeInfo] = field(compare=False)
    source: str = ""

    def with_rows(self, rows: Iterable[MappingRow], source: str = "") -> MappingTable:
        """The same code attributes with other curated rows (their codes join the catalogue)."""
        return build_table(tuple(rows), self.attributes, source=source)

    @property
    def attributes(self) -> tuple[CodeInfo, ...]:
        """The codes that came with attributes (not only a name from a row)."""
        return tuple(info for info in self.codes.values() if info.method or info.system)


@dataclass(frozen=True)
class StudyPair:
    """A (Modality, StudyDescription) pair as a site sends it, with how many studies carry it."""

    modality: str
    description: str
    frequency: int = 1
    line: int = 0


@dataclass(frozen=True)
class PairsFile:
    """A pairs file: its columns and records (kept for output) and the parsed pairs."""

    path: str
    columns: tuple[str, ...]
    records: tuple[dict[str, str], ...]
    pairs: tuple[StudyPair, ...]


@dataclass(frozen=True)
class Conflict:
    """A mapping-table inconsistency: one pair with two codes, or one code with two names."""

    kind: str  # "pair", "code" or "unnamed" (a code with no name, in no row and not in the catalogue)
    key: str
    values: tuple[str, ...]
    lines: tuple[int, ...]

    def describe(self) -> str:
        """One line for a person."""
        if self.kind == "unnamed":
            return (f"{self.key}: code has no name in column {NAME} and is not in the code attributes "
                    f"(rows {', '.join(str(n) for n in self.lines)}): give its LOINC long common name")
        what = "pair maps to codes" if self.kind == "pair" else "code has names"
        values = " | ".join(self.values)
        lines = ", ".join(str(n) for n in self.lines)
        return f"{self.key}: {what} {values} (rows {lines})"


# --- reading ----------------------------------------------------------------------------


def _read_text(path: Path | str) -> str:
    path = Path(path)
    data = read_named_file(path)
    check_text_table(data, str(path))
    try:  # as clinical files are read: UTF-8, Excel's "Unicode Text" (UTF-16 with its mark) or cp1252
        text = decode_text_table(data)
    except UnreadableText as error:
        raise UserError(f"{path}: {error.message}", error.hint) from None
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    return text


def _read_rows(text: str, path: Path | str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) rows; tab-separated unless the header has no tab."""
    first = text.splitlines()[0]
    delimiter = "\t" if "\t" in first or str(path).lower().endswith(".tsv") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
        rows = []
        end = reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num
            # A quote left open swallows the rows after it: a cell then spans lines that hold
            # delimiters (a quoted cell may hold a line break, as MIDRC's attribute table does).
            if any(("\n" in c or "\r" in c) and delimiter in c for c in cells):
                raise UserError(f"{path}: row {start}: a quote opened here runs on to line {end}, so "
                                f"{end - start + 1} lines were read as one row",
                                'close the quote, or remove it: a " at the start of a cell opens a quoted cell')
            if any("\0" in c for c in cells):
                raise UserError(f"{path}: row {start}: a NUL byte in a cell",
                                "remove it: it is no text (a database cannot store it either)")
            if any(c.strip() for c in cells):
                rows.append((start, cells))
    except csv.Error as error:
        raise UserError(f"{path}: row {reader.line_num}: cannot parse ({error})") from None
    check_unique_columns(header, str(path))  # which one holds the data is anyone's guess
    return header, rows


def _require(header: Sequence[str], needed: Sequence[str], path: Path | str) -> dict[str, int]:
    index = {name: i for i, name in enumerate(header)}
    missing = [name for name in needed if name not in index]
    if missing:
        hint = f"the first row must name the columns {', '.join(needed)}"
        delimiter = "\t" if str(path).lower().endswith(".tsv") else ","
        other = other_separator(header, delimiter)
        if other is not None:  # a CSV named .tsv is read with tabs, a ';'-separated one with commas: one column
            hint = (f"the columns are separated by {SEPARATOR_NAMES[other]}, but the file is read as "
                    + ("tab-separated (it is named .tsv): separate them with tabs, or save the file as .csv "
                       "(comma-separated)" if delimiter == "\t" else
                       "comma-separated (or tab-separated, when its first row has a tab): separate them with "
                       "commas or tabs"))
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'})", hint)
    return index


def _require_cells(cells: Sequence[str], index: Mapping[str, int], needed: Sequence[str], path: Path | str,
                   line: int) -> None:
    """A row too short to have a cell for a needed column was read as if that cell were empty
    (a truncated row answered as a blank description): say so instead."""
    absent = [name for name in needed if index[name] >= len(cells)]
    if absent:
        raise UserError(f"{path}: row {line}: no cell for column(s) {', '.join(absent)} "
                        f"({len(cells)} cell(s) where the header names {len(index)})",
                        "give every row a cell for each column, empty where there is no value "
                        "(for a blank description, end the row with a tab)")


def _cell(cells: Sequence[str], i: int) -> str:
    return cells[i] if i < len(cells) else ""


def clean_code(value: str) -> str:
    """A LOINC code without MIDRC's stray quotes, tabs and spaces (``'\\t36234-3'`` -> ``'36234-3'``)."""
    return clean_cell(value).replace('"', "").strip()


#: A LOINC code: its number, a dash and the check digit (36643-5).
LOINC_CODE = re.compile(r"^[0-9]{1,8}-[0-9]$")


def _code_cell(cells: Sequence[str], i: int, path: Path | str, line: int) -> str:
    """The LOINC code in cell ``i`` of a table row, or a UserError naming the row (a code that is
    no LOINC code was answered at confidence 1.0)."""
    code = clean_code(_cell(cells, i))
    if not code:
        raise UserError(f"{path}: row {line}, column {CODE}: empty code")
    if not LOINC_CODE.match(code):
        raise UserError(f"{path}: row {line}, column {CODE}: {code!r} is not a LOINC code",
                        "a LOINC code is digits, a dash and a check digit: 36643-5")
    return code


def _clean_name(value: str) -> str:
    return " ".join(clean_cell(value).split())


def read_code_attributes(path: Path | str) -> tuple[CodeInfo, ...]:
    """Read MIDRC's per-code attributes (``StudyDescription_filtering_attributes.csv``)."""
    header, rows = _read_rows(_read_text(path), path)
    index = _require(header, [CODE, NAME], path)
    optional = {"L-Method": "method", "L-System": "system", "Rad.Timing": "timing", "MIDRC-System": "midrc_system"}
    out = []
    for line, cells in rows:
        code = _code_cell(cells, index[CODE], path, line)
        extra = {
            attr: " ".join(_cell(cells, index[col]).split()) for col, attr in optional.items() if col in index
        }
        out.append(CodeInfo(code=code, long_common_name=_clean_name(_cell(cells, index[NAME])), **extra))
    return tuple(out)


def read_mapping_rows(path: Path | str) -> tuple[MappingRow, ...]:
    """Read a mapping table: columns Modality, StudyDescription, LOINC code, L-Long Common Name."""
    header, rows = _read_rows(_read_text(path), path)
    index = _require(header, [MODALITY, DESCRIPTION, CODE, NAME], path)
    out = []
    for line, cells in rows:
        _require_cells(cells, index, [MODALITY, DESCRIPTION], path, line)
        code = _code_cell(cells, index[CODE], path, line)
        out.append(
            MappingRow(
                modality=clean_cell(_cell(cells, index[MODALITY])),
                description=clean_cell(_cell(cells, index[DESCRIPTION])),
                code=code,
                long_common_name=_clean_name(_cell(cells, index[NAME])),
                line=line,
                source=str(path),
            )
        )
    if not out:
        raise UserError(f"{path}: the table has a header but no rows")
    return tuple(out)


def build_table(
    rows: Sequence[MappingRow], attributes: Iterable[CodeInfo], source: str = ""
) -> MappingTable:
    """A table whose catalogue is the attributes plus every code named by a row."""
    codes: dict[str, CodeInfo] = {info.code: info for info in attributes}
    for row in rows:
        if row.code not in codes and row.long_common_name:
            codes[row.code] = CodeInfo(code=row.code, long_common_name=row.long_common_name)
    return MappingTable(rows=tuple(rows), codes=codes, source=source)


def _data_path(name: str) -> Path:
    return Path(str(resources.files("radcommons.harmonize").joinpath("data", name)))


def builtin_attributes() -> tuple[CodeInfo, ...]:
    """MIDRC's code attributes shipped with the package."""
    return read_code_attributes(_data_path(BUILTIN_ATTRIBUTES))


def builtin_table() -> MappingTable:
    """MIDRC's curated mapping table shipped with the package."""
    path = _data_path(BUILTIN_MAPPING)
    return build_table(read_mapping_rows(path), builtin_attributes(), source=str(path))


def load_table(path: Path | str | None = None) -> MappingTable:
    """The built-in table, or the rows of ``path`` with the built-in code attributes.

    A given table replaces the curated pairs so a matcher can be measured on pairs it has
    not seen; the code attributes stay so answers still carry method, region and timing.
    """
    if path is None:
        return builtin_table()
    return build_table(read_mapping_rows(path), builtin_attributes(), source=str(path))


def _frequency(value: str, path: Path | str, line: int) -> int:
    text = value.strip()
    if not text:
        return 1
    try:
        number = float(text)
    except ValueError:
        raise UserError(f"{path}: row {line}, column {FREQUENCY}: not a number ({value!r})") from None
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise UserError(f"{path}: row {line}, column {FREQUENCY}: not a whole count ({value!r})")
    return int(number)


def read_pairs(path: Path | str) -> PairsFile:
    """Read (Modality, StudyDescription[, frequency, ...]) pairs; extra columns are kept."""
    header, rows = _read_rows(_read_text(path), path)
    index = _require(header, [MODALITY, DESCRIPTION], path)
    if not rows:
        raise UserError(f"{path}: the file has a header but no rows")
    records = []
    pairs = []
    for line, cells in rows:
        _require_cells(cells, index, [MODALITY, DESCRIPTION], path, line)
        if len(cells) > len(header):
            raise UserError(
                f"{path}: row {line}: {len(cells)} cells for {len(header)} columns",
                "a description with the separator in it must be quoted",
            )
        record = {name: _cell(cells, i) for i, name in enumerate(header)}
        records.append(record)
        frequency = _frequency(record[FREQUENCY], path, line) if FREQUENCY in index else 1
        pairs.append(
            StudyPair(
                modality=clean_cell(record[MODALITY]),
                description=clean_cell(record[DESCRIPTION]),
                frequency=frequency,
                line=line,
            )
        )
    return PairsFile(path=str(path), columns=tuple(header), records=tuple(records), pairs=tuple(pairs))


# --- checking ---------------------------------------------------------------------------


def find_conflicts(rows: Sequence[MappingRow], catalogue: Mapping[str, CodeInfo] | None = None) -> list[Conflict]:
    """Pairs mapped to two codes and codes given two names, after MIDRC's normalisation.

    A row listing several modalities ("CR, DX") counts once per alias group; a row with a
    blank modality applies to any modality but is checked only against other blank ones,
    because a row naming its modality is more specific and wins when matching.

    With ``catalogue`` (the code attributes, by code), a code's name in the rows is also
    compared with the catalogue's (which is the one a match answers with, so the rows' name
    was dropped unseen), and a code the catalogue lacks needs a name in some row (a match
    answered it with no name at all).
    """
    by_pair: dict[tuple[str, str], list[MappingRow]] = defaultdict(list)
    for row in rows:
        groups, description = midrc_key(row.modality, row.description)
        for group in sorted(groups) or ["(any)"]:
            by_pair[(group, description)].append(row)
    conflicts = []
    for (group, description), members in by_pair.items():
        codes = Counter(m.code for m in members)
        if len(codes) > 1:
            conflicts.append(
                Conflict(
                    kind="pair",
                    key=f"{group} {description or BLANK_TEXT!s}",
                    values=tuple(sorted(codes)),
                    lines=tuple(sorted({m.line for m in members})),
                )
            )
    by_code: dict[str, list[MappingRow]] = defaultdict(list)
    for row in rows:
        by_code[row.code].append(row)
    for code, members in by_code.items():
        names = {normalize_space_case(m.long_common_name): m.long_common_name for m in members
                 if m.long_common_name}
        known = (catalogue or {}).get(code)
        if known is not None and known.long_common_name and names:
            names.setdefault(normalize_space_case(known.long_common_name),
                             f"{known.long_common_name} (code attributes)")
        elif catalogue is not None and known is None and not names:
            conflicts.append(Conflict(kind="unnamed", key=code, values=(),
                                      lines=tuple(sorted({m.line for m in members}))))
        if len(names) > 1:
            conflicts.append(
                Conflict(
                    kind="code",
                    key=code,
                    values=tuple(sorted(names.values())),
                    lines=tuple(sorted({m.line for m in members})),
                )
            )
    return conflicts


BLANK_TEXT = "(blank)"
