"""Reading a site's clinical files (radcommons.clinical.sources): encodings spreadsheet programs
write, and headers that would lose values."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import pytest

from radcommons.clinical.sources import read_file
from radcommons.errors import UserError

TEXT = "MRN\tSex\tZip\n1959\tFemale\t60614\n2001\tMâle\t10001\n"


def test_utf16_with_its_mark_reads_as_utf8(tmp_path: Path) -> None:
    """Excel's "Unicode Text" is UTF-16 with a byte order mark: it was read as cp1252, and every
    error then showed the values with a NUL between letters."""
    (tmp_path / "a.tsv").write_text(TEXT, encoding="utf-8")
    (tmp_path / "b.tsv").write_bytes(codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"))
    [utf8], [utf16] = read_file(tmp_path / "a.tsv"), read_file(tmp_path / "b.tsv")
    assert (utf16.columns, utf16.rows) == (utf8.columns, utf8.rows)
    assert utf16.rows[1][1]["Sex"] == "Mâle"


def test_utf16_without_its_mark_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.tsv").write_bytes(TEXT.encode("utf-16-le"))
    with pytest.raises(UserError, match="looks like UTF-16 text without a byte order mark"):
        read_file(tmp_path / "c.tsv")


def test_a_column_named_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("MRN,Sex,Sex\n1,F,M\n")
    with pytest.raises(UserError, match=r"d.csv: the column\(s\) Sex appear more than once"):
        read_file(tmp_path / "d.csv")


def test_a_folder_with_a_clinical_name_is_an_error_and_lock_files_are_left_out(tmp_path: Path) -> None:
    """A folder named demographics.csv was skipped without a word: then every imaging patient
    was reported as having no demographics row."""
    from radcommons.clinical.sources import read_tables

    clinical = tmp_path / "clinical"
    clinical.mkdir()
    (clinical / "covid_tests.csv").write_text("MRN,TestDate,Result\n1,2021-03-04,Positive\n")
    (clinical / "~$covid_tests.csv").write_bytes(b"\x00lock")  # a spreadsheet program's lock file
    (clinical / "._covid_tests.csv").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    assert [table.file for table in read_tables([clinical])] == [str(clinical / "covid_tests.csv")]
    (clinical / "demographics.csv").mkdir()
    with pytest.raises(UserError, match="demographics.csv"):
        read_tables([clinical])


def test_files_of_a_folder_that_are_not_read_are_errors_and_subfolders_are_read(tmp_path: Path) -> None:
    """.xls, .ods and files without an extension were skipped without a word (all COVID tests
    could vanish), and so were files in subfolders."""
    from radcommons.clinical import convert_clinical, read_tables

    clinical = tmp_path / "clinical"
    (clinical / "2021" / ".git").mkdir(parents=True)
    (clinical / "demographics.csv").write_text("MRN,DOB,Sex\nM1001,1950-01-01,F\n")
    (clinical / "2021" / "covid_tests.csv").write_text("MRN,TestDate,Result\nM1001,2021-03-04,Positive\n")
    (clinical / "2021" / ".git" / "config").write_text("[core]\n")  # hidden: never data
    (clinical / "2021" / "~$covid_tests.csv").write_bytes(b"\x00lock")
    (clinical / "medications.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    (clinical / "conditions.ods").write_bytes(b"PK\x03\x04")
    (clinical / "encounters").write_text("MRN,AdmitDate\nM1001,2021-03-04\n")
    (clinical / "notes.docx").write_bytes(b"PK\x03\x04")
    (clinical / ".DS_Store").write_bytes(b"\x00")
    result = convert_clinical(read_tables([clinical]), key=bytes(32), site="S", project="P")
    errors = {Path(i.file or "").relative_to(clinical).as_posix(): i for i in result.errors}
    assert set(errors) == {"medications.xls", "conditions.ods", "encounters", "notes.docx"}, result.errors
    assert all(i.code == "file_not_read" and i.row is None and "the file is not read, so its rows are not sent" in i.message
               for i in errors.values())
    assert "save it as .xlsx" in errors["medications.xls"].fix and "save it as .xlsx" in errors["conditions.ods"].fix
    assert "name it .csv, .tsv or .xlsx" in errors["encounters"].fix
    assert "export it as .csv, .tsv or .xlsx" in errors["notes.docx"].fix
    assert result.counts()["measurement"] == 1  # the test in the subfolder is read


def test_ascii_utf16_without_its_mark_is_refused(tmp_path: Path) -> None:
    """ASCII text in UTF-16 is valid UTF-8 (a NUL after every letter): it was read, and every
    column and value held NULs ("S\\x00e\\x00x")."""
    for encoding in ("utf-16-le", "utf-16-be"):
        (tmp_path / "plain.csv").write_bytes("MRN,Sex\n1,F\n".encode(encoding))
        with pytest.raises(UserError, match="plain.csv: looks like UTF-16 text without a byte order mark"):
            read_file(tmp_path / "plain.csv")


def test_utf8_mixed_with_cp1252_is_refused_naming_the_line(tmp_path: Path) -> None:
    """A UTF-8 file with one row pasted from a cp1252 program was read whole as cp1252: every
    UTF-8 letter became mojibake ("CÃ´te") and was sent."""
    data = "MRN,Sex,Condition\n1,F,Côte\n".encode() + "2,M,naïve’s\n".encode("cp1252")
    (tmp_path / "conditions.csv").write_bytes(data)
    with pytest.raises(UserError, match=r"conditions.csv: line 3 is not UTF-8 .* mixes two encodings") as refused:
        read_file(tmp_path / "conditions.csv")
    assert "save the file as CSV UTF-8" in refused.value.hint
    # cp1252 alone is still read as cp1252.
    (tmp_path / "windows.csv").write_bytes("MRN,Sex,Condition\n2,M,naïve’s\n".encode("cp1252"))
    [table] = read_file(tmp_path / "windows.csv")
    assert table.rows[0][1]["Condition"] == "naïve’s"


def test_excel_quoted_tsv_is_read_without_its_quotes(tmp_path: Path) -> None:
    """Excel quotes a TSV value holding a tab, a quote or a line break; the quotes stayed in the
    values ('"F"' is not a known sex)."""
    (tmp_path / "demographics.tsv").write_text('MRN\tSex\tNote\n1\t"F"\t"tab\there"\n2\tM\t"say ""x"""\n'
                                               '3\tF\t"two\nlines"\n4\tM\t5" tall\n')
    [table] = read_file(tmp_path / "demographics.tsv")
    assert [(n, c["Sex"], c["Note"]) for n, c in table.rows] == [
        (2, "F", "tab\there"), (3, "M", 'say "x"'), (4, "F", "two\nlines"), (6, "M", '5" tall')]


@pytest.mark.parametrize(("text", "found"), [
    ('MRN,Sex\n1,F\n2,"Big" Jim\n', r"row starting at line 3: '\,' expected after"),
    ('MRN\tSex\n1\tF\n2\t"open\n3\tM\n', r"row starting at line 3: unexpected end of data"),
    ('MRN,Sex\n1,F\n2,"' + "x" * 140_000 + "\n", r"row starting at line 3 has a cell longer than 128 KiB"),
])
def test_a_stray_quote_or_a_huge_cell_names_the_row(tmp_path: Path, text: str, found: str) -> None:
    """A stray quote was dropped silently ("Big" Jim read as Big Jim) or kept; a cell over the csv
    module's limit said only 'field larger than field limit (131072)'."""
    path = tmp_path / ("demographics.tsv" if "\t" in text else "demographics.csv")
    path.write_text(text)
    with pytest.raises(UserError, match=found) as refused:
        read_file(path)
    assert "quote" in refused.value.hint


@pytest.mark.parametrize(("name", "text", "separator"), [
    ("demographics.csv", "MRN;Sex;DOB\n1;F;1950-01-01\n", r"semicolons \(;\), not by commas \(,\)"),
    ("demographics.csv", "MRN\tSex\n1\tF\n", r"tabs, not by commas \(,\)"),
    ("demographics.tsv", "MRN,Sex\n1,F\n", r"commas \(,\), not by tabs"),
])
def test_a_table_with_another_separator_says_which(tmp_path: Path, name: str, text: str, separator: str) -> None:
    """A semicolon CSV (Excel in a European language) landed in one column: 'unknown column
    MRN;Sex;DOB' and 'no column for mrn'."""
    (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match=f"the header is one column, .*: the values are separated by {separator}"):
        read_file(tmp_path / name)


def _workbook(path: Path, *rows: list[object]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "demographics"
    for number, row in enumerate(rows, start=1):
        for column, value in enumerate(row, start=1):
            if value is not None:
                sheet.cell(number, column, value)
    book.save(path)
    return path


def test_values_under_a_blank_header_cell_are_refused_naming_the_column(tmp_path: Path) -> None:
    """A workbook's values under a blank header cell (or right of the header) were dropped
    without a word; a CSV's gave "unknown column ''"."""
    (tmp_path / "a.csv").write_text("MRN,,Sex\n1,,F\n2,secret,M\n")
    with pytest.raises(UserError, match=r"a.csv: column B has no name in the header but holds values \(first in row 3\)"):
        read_file(tmp_path / "a.csv")
    # A sheet's problem is kept on its table: an error only if the sheet is converted (tests/clinical/test_sheets.py).
    [sheet] = read_file(_workbook(tmp_path / "b.xlsx", ["MRN", "Sex"], ["1", "F", "secret"]))
    assert re.match(r"column C has no name .* \(first in row 2\)\ntype the column's name", sheet.refused)
    # An empty column with no name holds nothing: it is left out.
    (tmp_path / "c.csv").write_text("MRN,Sex,\n1,F,\n")
    [table] = read_file(tmp_path / "c.csv")
    assert table.columns == ("MRN", "Sex") and table.rows == ((2, {"MRN": "1", "Sex": "F"}),)


def test_a_title_above_the_header_names_the_header_row(tmp_path: Path) -> None:
    """A title row above the header gave 'unknown column ...' and 'no column for mrn'; a sheet
    whose first row was blank was skipped as empty, its rows never read."""
    (tmp_path / "a.csv").write_text("Demographics export 2024\nMRN,Sex,DOB\n1,F,1950-01-01\n")
    (tmp_path / "b.csv").write_text("Demographics export 2024,,\n,,\nMRN,Sex,DOB\n1,F,1950-01-01\n")
    titled = _workbook(tmp_path / "c.xlsx", ["Patient list"], [], ["MRN", "Sex"], ["1", "F"])
    blank_first = _workbook(tmp_path / "d.xlsx", [], [], ["MRN", "Sex"], ["1", "F"])
    for path, row in ((tmp_path / "a.csv", 2), (tmp_path / "b.csv", 3)):
        with pytest.raises(UserError, match=f"row {row} looks like the header \\(MRN, Sex") as refused:
            read_file(path)
        assert f"delete the rows above row {row}" in refused.value.hint, path
    for path in (titled, blank_first):  # a sheet's problem is kept on its table: an error if it is converted
        [sheet] = read_file(path)
        assert "row 3 looks like the header (MRN, Sex" in sheet.refused, path
        assert "\ndelete the rows above row 3" in sheet.refused, path


@pytest.mark.parametrize(("data", "found"), [
    (b"MRN,Sex\n1,F\n", "is a text file \\(CSV or TSV\\?\\) named as an .xlsx workbook"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "is an old Excel workbook \\(.xls\\), named as an .xlsx"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512) + "EncryptedPackage".encode("utf-16-le") + bytes(64),
     "is a password-protected \\(encrypted\\) workbook"),
])
def test_a_file_named_xlsx_that_is_not_one_says_what_it_is(tmp_path: Path, data: bytes, found: str) -> None:
    """Each said only 'cannot read the workbook ...: BadZipFile: File is not a zip file'."""
    (tmp_path / "demographics.xlsx").write_bytes(data)
    with pytest.raises(UserError, match=f"demographics.xlsx {found}"):
        read_file(tmp_path / "demographics.xlsx")
