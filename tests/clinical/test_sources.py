"""Reading a site's clinical files (radcommons.clinical.sources): encodings spreadsheet programs
write, and headers that would lose values."""

from __future__ import annotations

import codecs
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
