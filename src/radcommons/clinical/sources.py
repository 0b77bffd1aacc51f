"""Reading a site's clinical files into plain tables: CSV, TSV and Excel workbooks.

A workbook gives one table per sheet. Cells keep their types (Excel dates arrive as
:class:`datetime.datetime`, text files as strings); rows are numbered as a person sees
them (the header is row 1 of a text file; Excel rows are the sheet's row numbers).
Blank rows are skipped. An unreadable file raises :class:`UserError` naming it.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radcommons.errors import UserError
from radcommons.dictionary.values import looks_like_date
from radcommons.inputs import (
    SEPARATOR_NAMES,
    UnreadableText,
    check_text_table,
    check_unique_columns,
    decode_text_table,
    not_text_kind,
    other_separator,
    read_input_bytes,
)

#: File types a site may send, and their cell separators (None: a workbook).
FORMATS: dict[str, str | None] = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".xlsx": None, ".xlsm": None}


@dataclass(frozen=True)
class SourceTable:
    """One table of a site file: a CSV/TSV file or one sheet of a workbook."""

    file: str
    sheet: str | None
    columns: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, Any]], ...]  #: (row number, {column: cell})
    unread: str = ""  #: for a file in a folder that is not read: why, a new line, the fix (no rows)
    hidden: bool = False  #: a hidden sheet of a workbook: read, though the data manager does not see it
    #: a sheet that would be misread (a title above its header, a column named twice or with no name,
    #: a formula without its result, merged cells): why, a new line, the fix. An error only when the
    #: sheet is converted: an ignored sheet (notes, a summary) may hold anything. A CSV or TSV file
    #: with such a problem is not read (:class:`UserError`): it is one table, no other is stopped.
    refused: str = ""

    @functools.cached_property
    def known(self) -> frozenset[str]:
        """The columns, to tell a row's extra fields from them (a file may have hundreds)."""
        return frozenset(self.columns)

    @property
    def name(self) -> str:
        """What announces the table's content: the sheet name, else the file name without extension."""
        return self.sheet if self.sheet is not None else Path(self.file).stem

    @property
    def label(self) -> str:
        """``file`` or ``file [sheet]``: how problems name the table."""
        return f"{self.file} [{self.sheet}]" if self.sheet is not None else self.file


def read_tables(paths: Iterable[str | Path]) -> list[SourceTable]:
    """Every table in ``paths``, in order (a folder stands for the files in it and its subfolders).

    A file in a folder that is not read (no extension, .xls, .ods, ...) gives an empty table
    whose ``unread`` says why and what to do: it may hold rows that would otherwise vanish.
    """
    tables: list[SourceTable] = []
    for path, unread in _expand(paths):
        tables.extend([SourceTable(str(path), None, (), (), unread)] if unread else read_file(path))
    return tables


#: Files of a folder that are never data: a spreadsheet program's lock files (~$book.xlsx),
#: macOS's ._ resource files, hidden files and the folder files of Windows.
_NOT_DATA = frozenset({"thumbs.db", "desktop.ini"})
_SAVE_AS_XLSX = frozenset({".xls", ".xlsb", ".ods", ".numbers", ".xltx", ".xltm", ".fods"})


def _expand(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """The files to read, each with "" or, for one that is not read, why and the fix."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(_folder(path))
        else:
            found.append((path, ""))
    return found


def _folder(folder: Path) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("~$", "._", ".")) or path.name.lower() in _NOT_DATA:
            continue
        suffix = path.suffix.lower()
        if suffix in FORMATS:
            # Anything with a clinical file's name is read, so that a folder or a pipe named
            # demographics.csv is an error rather than a table silently missing.
            found.append((path, ""))
        elif path.is_symlink() and path.is_dir():
            found.append((path, "it is a link to a folder, which is not followed\ncopy the files into the clinical folder"))
        elif path.is_dir():
            found.extend(_folder(path))
        elif suffix in _SAVE_AS_XLSX:
            found.append((path, f"{suffix} is not a format that is read\nopen it in a spreadsheet program and save it as .xlsx"))
        elif not suffix:
            found.append((path, "it has no extension\nname it .csv, .tsv or .xlsx after what it holds (or move it "
                                "out of the folder)"))
        else:
            found.append((path, f"{suffix} is not a format that is read\nexport it as .csv, .tsv or .xlsx, or move it "
                                "out of the folder"))
    return found


def read_file(path: str | Path) -> list[SourceTable]:
    """The tables of one file (one per non-empty sheet of a workbook)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise UserError(f"clinical file {path} not found", "check the path given to --clinical")
    if suffix not in FORMATS:
        raise UserError(
            f"clinical file {path}: unsupported file type {path.suffix or '(none)'!r}",
            "export the clinical data as .csv, .tsv or .xlsx",
        )
    try:
        data = read_input_bytes(path)
    except OSError as error:
        raise UserError(f"cannot read the clinical file {path}: {error.strerror or error}",
                        "check that the file exists and is readable") from error
    if FORMATS[suffix] is None:
        return _read_workbook(path, data)
    return [_read_delimited(str(path), _decoded(path, data), FORMATS[suffix] or ",")]


def _decoded(path: Path, data: bytes) -> str:
    """The text of a CSV or TSV file (:func:`radcommons.inputs.decode_text_table`)."""
    check_text_table(data, f"clinical file {path}", workbooks=True)
    try:
        return decode_text_table(data)
    except UnreadableText as error:
        raise UserError(f"clinical file {path}: {error.message}", error.hint) from None


#: How many rows below the first are searched for the header when the first is not it.
_HEADER_SEARCH = 10


def _read_delimited(file: str, text: str, delimiter: str) -> SourceTable:
    # Quotes are read for TSV as for CSV: Excel quotes a TSV value holding a tab, a quote or a
    # line break ("say ""x""") and the quotes would otherwise stay in the value. Strict: a stray
    # quote ("Big" Jim) is an error rather than a value silently changed.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    line = 0  # the last line of the last row read: the row being read starts after it
    try:
        header = [c.strip() for c in next(reader, [])]
        unnamed = [i for i, name in enumerate(header) if not name]
        filled: list[tuple[int, int]] = []  # (column, row) of a value under a blank header cell
        first_rows: list[tuple[int, list[Any]]] = []  # where a header below a title would be
        rows: list[tuple[int, dict[str, Any]]] = []
        line = reader.line_num
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            filled.extend((i, start) for i in unnamed if i < len(cells) and cells[i].strip())
            if len(first_rows) < _HEADER_SEARCH:
                first_rows.append((start, cells))
            cells = (cells + [""] * len(header))[: max(len(header), len(cells))]
            rows.append((start, {header[i] if i < len(header) else f"column {i + 1}": _excel_text(cell)
                                 for i, cell in enumerate(cells)}))
    except csv.Error as error:
        raise _parse_error(file, line + 1, error) from None
    if not header:
        raise UserError(f"clinical file {file} is empty", "export it again with a header line")
    if (other := other_separator(header, delimiter)) is not None:  # every row would land in one column
        raise UserError(
            f"clinical file {file}: the header is one column, {header[0][:80]!r}: the values are separated by "
            f"{SEPARATOR_NAMES[other]}, not by {SEPARATOR_NAMES[delimiter]} as in a {Path(file).suffix} file (a CSV "
            "saved by Excel in a European language uses ';')",
            "save the file as .xlsx (or export it again with commas as .csv, tabs as .tsv)")
    check_unique_columns(header, f"clinical file {file}")
    problem = _header_problem(f"clinical file {file}", header, filled, first_rows)
    if problem is not None:
        raise problem
    return SourceTable(file, None, tuple(h for h in header if h),
                       tuple((number, {k: v for k, v in cells.items() if k}) for number, cells in rows))


#: ="00123": how a CSV keeps a value as text for Excel, which shows it as 00123 (a formula of one string).
_EXCEL_TEXT = re.compile(r'="((?:[^"]|"")*)"')


def _excel_text(cell: str) -> str:
    """The text a spreadsheet program shows for ``cell``: ``="00123"`` is 00123. Read as written,
    an MRN kept so, to keep its leading zeros, was another patient's: '="00123"'."""
    match = _EXCEL_TEXT.fullmatch(cell.strip())
    return match.group(1).replace('""', '"') if match else cell


def _parse_error(file: str, line: int, error: csv.Error) -> UserError:
    """What a :class:`csv.Error` means for the row starting at ``line``, and the fix."""
    if "field larger than field limit" in str(error):
        return UserError(
            f"clinical file {file}: the row starting at line {line} has a cell longer than "
            f"{csv.field_size_limit() // 1024} KiB, most likely a quote (\") that opens a cell and is never "
            "closed, so that the rest of the file reads as one cell",
            f"close or remove that quote in the row at line {line} (no clinical value is that long)")
    return UserError(f"clinical file {file}: cannot read the row starting at line {line}: {error}",
                     "a quote (\") that starts a cell must also end it: close it, or write it twice inside a "
                     "quoted cell (\"a \"\"b\"\" c\"), as spreadsheet programs save it")


def _header_problem(where: str, header: list[str], filled: list[tuple[int, int]],
                    first_rows: list[tuple[int, list[Any]]]) -> UserError | None:
    """A :class:`UserError` (``where`` first) when values sit under a blank header cell (``filled``: (0-based column,
    row number) of each), or the header is one cell over wider rows: the values would be sent
    under no name, or dropped. When one of the ``first_rows`` looks like a header (text in every
    cell, more of them than the header has), the header row is likely a title above it."""
    named = [name for name in header if name]
    if not filled and (len(named) != 1 or all(len([c for c in cells if not _blank(c)]) <= 1
                                              for _, cells in first_rows)):
        return None
    below = next(((number, cells) for number, cells in first_rows if _header_like(cells, len(named))), None)
    if below is not None:
        number, cells = below
        names = ", ".join(str(c).strip() for c in cells if not _blank(c))
        return UserError(f"{where}: the header (the first row) is not the columns' names: row {number} looks like "
                        f"the header ({names[:120]})",
                        f"delete the rows above row {number} (a title, blank rows) so that the header is the first "
                        "row; otherwise type a name in every blank header cell")
    if filled:
        from openpyxl.utils import get_column_letter

        column, row = min(filled)
        return UserError(f"{where}: column {get_column_letter(column + 1)} has no name in the header but holds "
                        f"values (first in row {row})",
                        "type the column's name in its header cell, or delete the column")
    return None


def _header_like(cells: list[Any], named: int) -> bool:
    """Whether a row reads as column names: two or more, more than the header has, all words
    (a data row holds numbers, dates or blanks between its values)."""
    values = [c for c in cells if not _blank(c)]
    last = max((i for i, c in enumerate(cells) if not _blank(c)), default=-1)
    return (len(values) >= 2 and len(values) > named and len(values) == last + 1
            and all(isinstance(c, str) and re.search(r"[^\W\d_]", c) and not looks_like_date(c) for c in values))


def _merged_problem(where: str, span: str) -> UserError:
    """The error for the merged cells ``span`` ("A2:A4") of a sheet: only the first holds the value."""
    return UserError(f"{where}: the cells {span} are merged: their value is read in {span.split(':')[0]} only, and "
                     "the other cells as empty", f"unmerge {span} (Home > Merge & Center > Unmerge Cells) and fill "
                     "the value into every cell it stands for, then save again")


def _uncomputed_cell(where: str, number: int, cells: tuple[Any, ...], written: tuple[Any, ...]) -> UserError | None:
    """The error for row ``number``'s first formula cell whose result the workbook does not hold
    (``written``: the row's formulas), naming the cell."""
    from openpyxl.utils import get_column_letter

    for column, (value, formula) in enumerate(zip(cells, written), start=1):
        if _uncomputed_formula(value, formula):
            return UserError(f"{where}: cell {get_column_letter(column)}{number}: the formula "
                             f"{str(getattr(formula, 'text', formula))[:60]} has no stored result, so its value is "
                             "unknown", "open the workbook in a spreadsheet program (which computes formulas) and "
                             "save it again, or replace the formula by its value")
    return None


def _uncomputed_formula(value: Any, formula: Any) -> bool:
    """A formula cell whose result the file does not hold: a spreadsheet program stores the
    result next to the formula; a file written by a script may not, and openpyxl then reads
    the cell as empty."""
    if value is not None or formula is None:
        return False
    return (isinstance(formula, str) and formula.startswith("=")) or hasattr(formula, "text")  # ArrayFormula


#: Formula cells (``<f>``, ECMA-376 18.3.1.40) and ranges of merged cells (``<mergeCell ref="A2:A4"/>``,
#: 18.3.1.55).
_FORMULA = re.compile(rb"<(\w+:)?f[\s>/]")
_MERGED = re.compile(rb"<(?:\w+:)?mergeCell\b[^>]*?\bref\s*=\s*([\"'])([^\"']*)\1")


def _scan_sheets(data: bytes, paths: Iterable[str]) -> tuple[bool, dict[str, str]]:
    """One read of each sheet's XML (``paths`` in the archive): whether any holds a formula (only then
    is the workbook parsed a second time, for them) and, per sheet path, its first range of merged
    cells that reaches below the first row ("A2:A4"): only the first cell of a range holds the
    value, the others read as empty (a read-only workbook does not know its merged cells)."""
    from openpyxl.worksheet.cell_range import CellRange

    formulas = False
    merged: dict[str, str] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for path in paths:
            xml = archive.read(path)
            formulas = formulas or _FORMULA.search(xml) is not None
            ranges = [CellRange(match.group(2).decode("ascii")) for match in _MERGED.finditer(xml)]
            below = [r for r in ranges if r.max_row > 1]
            if below:
                merged[path] = str(min(below, key=lambda r: (r.min_row, r.min_col)))
    return formulas, merged


#: A number format that pads a whole number with zeros ("0000000", Excel's ZIP Code "00000" and
#: ZIP+4 "00000-0000"): once the literal's escapes and quotes are removed, zeros, dashes and spaces.
_PADDED = re.compile(r"0+(?:[- ]0+)*")


def _shown_value(cell: Any) -> Any:
    """A cell's value, or for a whole number under a zero-padding number format the text the
    spreadsheet shows: an MRN typed 00123 into a number column formatted "00000" is stored as
    123 and shown as 00123; read as 123 it would name another patient (ECMA-376 18.8.31)."""
    value = cell.value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        return value
    form = str(getattr(cell, "number_format", "") or "").split(";")[0].replace("\\", "").replace('"', "")
    if not _PADDED.fullmatch(form):
        return value
    digits = str(int(value)).zfill(form.count("0"))
    extra = len(digits) - form.count("0")  # more digits than zeros: the first group takes them
    shown, used = [], 0
    for char in form:
        if char == "0":
            take = 1 + extra if used == 0 else 1
            shown.append(digits[used : used + take])
            used += take
        else:
            shown.append(char)
    return "".join(shown)


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


#: The name of the stream an encrypted (password-protected) Office file keeps its workbook in,
#: as its compound file directory spells it (UTF-16LE): [MS-OFFCRYPTO] 2.3.4.
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")


def _not_a_workbook(path: Path, data: bytes) -> UserError | None:
    """What a file named .xlsx really is, when it is not a zip archive (every .xlsx is one):
    openpyxl says only 'File is not a zip file'."""
    if data.startswith(b"PK"):
        return None
    if data.startswith(b"\xd0\xcf\x11\xe0") and _ENCRYPTED_PACKAGE in data:
        return UserError(f"clinical file {path} is a password-protected (encrypted) workbook, which cannot be read",
                         "open it in the spreadsheet program, remove the password (File > Info > Protect Workbook "
                         "> Encrypt with Password, cleared) and save it as .xlsx")
    found = not_text_kind(data, workbooks=True)  # markup is not "a text file (CSV or TSV?)": renamed .csv it is no table
    if found is not None:
        return UserError(f"clinical file {path} is {found[0]}, named as an .xlsx workbook", found[1])
    if b"\0" not in data[:4096]:
        return UserError(f"clinical file {path} is a text file (CSV or TSV?) named as an .xlsx workbook",
                         "rename it .csv or .tsv after what it holds, or open it in a spreadsheet program and "
                         "save it as .xlsx")
    return UserError(f"clinical file {path} is not an .xlsx workbook (an .xlsx file is a zip archive)",
                     "open it in a spreadsheet program and save it as .xlsx")


def _read_workbook(path: Path, data: bytes) -> list[SourceTable]:
    from openpyxl import load_workbook

    wrong = _not_a_workbook(path, data)
    if wrong is not None:
        raise wrong
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        paths = {sheet.title: sheet._worksheet_path.lstrip("/") for sheet in workbook.worksheets}
        with_formulas, merged = _scan_sheets(data, paths.values())
        formulas = load_workbook(io.BytesIO(data), read_only=True, data_only=False) if with_formulas else None
    except Exception as error:  # openpyxl raises many types for a damaged or foreign file
        raise UserError(f"cannot read the workbook {path}: {type(error).__name__}: {error}",
                        "open it in the spreadsheet program and save it again as .xlsx") from error
    tables: list[SourceTable] = []
    try:
        for index, sheet in enumerate(workbook.worksheets):
            written_rows = (formulas.worksheets[index].iter_rows(values_only=True) if formulas is not None
                            else itertools.repeat(()))
            shown_rows = (tuple(_shown_value(cell) for cell in cells) for cells in sheet.iter_rows())
            iterator = zip(shown_rows, written_rows)
            header_cells, _ = next(iterator, (None, None))
            if header_cells is None:
                continue  # an empty sheet holds nothing to convert
            header = [str(c).strip() if c is not None else "" for c in header_cells]
            where = f"clinical file {path} (sheet {sheet.title})"
            # The sheet's problems, as a CSV file's would be raised: kept on its table, an error only if it is converted.
            problems: list[UserError] = []
            try:
                check_unique_columns(header, where)
            except UserError as error:
                problems.append(error)
            filled: list[tuple[int, int]] = []  # (column, row) of a value under a blank or missing header cell
            first_rows: list[tuple[int, list[Any]]] = []  # where a header below a title would be
            rows: list[tuple[int, dict[str, Any]]] = []
            uncomputed: UserError | None = None  # the first formula cell without its result
            for number, (cells, written) in enumerate(iterator, start=2):
                if uncomputed is None and written:  # written: the row's formulas, when the workbook has any
                    uncomputed = _uncomputed_cell(where, number, cells, written)
                if all(_blank(c) for c in cells):
                    continue
                filled.extend((i, number) for i, c in enumerate(cells)
                              if not _blank(c) and (i >= len(header) or not header[i]))
                if len(first_rows) < _HEADER_SEARCH:
                    first_rows.append((number, list(cells)))
                rows.append((number, {header[i]: cells[i] for i in range(min(len(header), len(cells))) if header[i]}))
            if not rows and not any(header):
                continue  # an empty sheet (a blank first row over data is a header not found, below)
            span = merged.get(paths[sheet.title])
            problems.extend(p for p in (uncomputed, _header_problem(where, header, filled, first_rows),
                                        _merged_problem(where, span) if span else None) if p is not None)
            refused = f"{problems[0].message.removeprefix(where + ': ')}\n{problems[0].hint}" if problems else ""
            tables.append(SourceTable(str(path), sheet.title, tuple(dict.fromkeys(h for h in header if h)),
                                      tuple(rows), hidden=getattr(sheet, "sheet_state", "visible") != "visible",
                                      refused=refused))
    finally:
        workbook.close()
        if formulas is not None:
            formulas.close()
    return tables
