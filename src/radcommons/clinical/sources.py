"""Reading a site's clinical files into plain tables: CSV, TSV and Excel workbooks.

A workbook gives one table per sheet. Cells keep their types (Excel dates arrive as
:class:`datetime.datetime`, text files as strings); rows are numbered as a person sees
them (the header is row 1 of a text file; Excel rows are the sheet's row numbers).
Blank rows are skipped. An unreadable file raises :class:`UserError` naming it.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radcommons.errors import UserError
from radcommons.inputs import check_text_table, check_unique_columns, read_input_bytes

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
    """The text of a CSV or TSV file: UTF-8, UTF-16 with its byte order mark (Excel's "Unicode
    Text"), else cp1252 (which spreadsheet programs on Windows still write; it decodes any bytes)."""
    check_text_table(data, f"clinical file {path}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise UserError(f"clinical file {path}: damaged UTF-16 text (byte {error.start})",
                            "save it again as CSV UTF-8") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if data[:4096].count(0) > len(data[:4096]) // 4:  # every other byte zero: UTF-16 without its mark
        raise UserError(f"clinical file {path}: looks like UTF-16 text without a byte order mark",
                        "save it again as CSV UTF-8 (or as Unicode Text, which has the mark)")
    return data.decode("cp1252", errors="replace")


def _read_delimited(file: str, text: str, delimiter: str) -> SourceTable:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = [c.strip() for c in next(reader, [])]
        rows: list[tuple[int, dict[str, Any]]] = []
        line = reader.line_num
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            cells = (cells + [""] * len(header))[: max(len(header), len(cells))]
            rows.append((start, {header[i] if i < len(header) else f"column {i + 1}": cell
                                 for i, cell in enumerate(cells)}))
    except csv.Error as error:
        raise UserError(f"clinical file {file}: cannot parse line {reader.line_num}: {error}",
                        "check for unbalanced quotes, or save the file again as CSV/TSV") from error
    if not header:
        raise UserError(f"clinical file {file} is empty", "export it again with a header line")
    check_unique_columns(header, f"clinical file {file}")
    return SourceTable(file, None, tuple(header), tuple(rows))


def _uncomputed_formula(value: Any, formula: Any) -> bool:
    """A formula cell whose result the file does not hold: a spreadsheet program stores the
    result next to the formula; a file written by a script may not, and openpyxl then reads
    the cell as empty."""
    if value is not None or formula is None:
        return False
    return (isinstance(formula, str) and formula.startswith("=")) or hasattr(formula, "text")  # ArrayFormula


_FORMULA = re.compile(rb"<(\w+:)?f[\s>/]")


def _has_formulas(data: bytes) -> bool:
    """Whether a workbook's sheets hold formula cells (``<f>`` elements, ECMA-376 18.3.1.40):
    only then is it parsed a second time for them."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(_FORMULA.search(archive.read(name)) for name in archive.namelist()
                       if name.startswith("xl/worksheets/") and name.endswith(".xml"))
    except (zipfile.BadZipFile, OSError, KeyError):
        return False  # openpyxl says what is wrong with it


def _read_workbook(path: Path, data: bytes) -> list[SourceTable]:
    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        formulas = load_workbook(io.BytesIO(data), read_only=True, data_only=False) if _has_formulas(data) else None
    except Exception as error:  # openpyxl raises many types for a damaged or foreign file
        raise UserError(f"cannot read the workbook {path}: {type(error).__name__}: {error}",
                        "open it in the spreadsheet program and save it again as .xlsx") from error
    tables: list[SourceTable] = []
    try:
        for index, sheet in enumerate(workbook.worksheets):
            written_rows = (formulas.worksheets[index].iter_rows(values_only=True) if formulas is not None
                            else itertools.repeat(()))
            iterator = zip(sheet.iter_rows(values_only=True), written_rows)
            header_cells, _ = next(iterator, (None, None))
            if header_cells is None or all(c is None for c in header_cells):
                continue  # an empty sheet holds nothing to convert
            header = [str(c).strip() if c is not None else "" for c in header_cells]
            while header and not header[-1]:
                header.pop()
            check_unique_columns(header, f"clinical file {path} (sheet {sheet.title})")
            rows: list[tuple[int, dict[str, Any]]] = []
            for number, (cells, written) in enumerate(iterator, start=2):
                for column, (value, formula) in enumerate(zip(cells, written), start=1):
                    if _uncomputed_formula(value, formula):
                        raise UserError(
                            f"clinical file {path} (sheet {sheet.title}), cell {get_column_letter(column)}{number}: "
                            f"the formula {str(getattr(formula, 'text', formula))[:60]} has no stored result, so "
                            "its value is unknown",
                            "open the workbook in a spreadsheet program (which computes formulas) and save it "
                            "again, or replace the formula by its value")
                if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                    continue
                rows.append((number, {header[i]: cells[i] for i in range(min(len(header), len(cells))) if header[i]}))
            tables.append(SourceTable(str(path), sheet.title, tuple(h for h in header if h), tuple(rows)))
    finally:
        workbook.close()
        if formulas is not None:
            formulas.close()
    return tables
