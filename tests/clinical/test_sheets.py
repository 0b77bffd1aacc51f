"""A workbook sheet that would be misread (a title above its header, a column named twice or with
no name, a formula without its result, merged cells) is an error for that sheet, and only when it
is converted: a notes sheet mapped ``ignore`` may hold anything, and no sheet stops the others.
A CSV or TSV file with such a problem is still not read (tests/clinical/test_sources.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from radcommons.clinical import ImagingStudy, convert_clinical, load_mapping, read_file
from radcommons.deid import date_offset_days

KEY = bytes(range(32))
HEADER = ["MRN", "TestDate", "TestMethod", "Result"]
TESTS = [["1234567", "2021-03-01", "RT-PCR", "Positive"], ["1234567", "2021-03-08", "RT-PCR", "Negative"]]

#: How a notes sheet is laid out by people (each stopped the whole workbook, though never converted).
NOTES = {
    "title": [["Notes"], ["Exported by", "Data team"]],
    "twice": [["Note", "Note"], ["exported 2024-01-05", "by the data team"]],
    "formula": [["Rows"], ["=COUNTA('Covid Tests'!A:A)"]],
    "unnamed": [["Notes"], [None, "tests before March 2020 are not included"]],
    "merged": [["Export notes"], ["Exported from the EHR on 2024-01-05."]],
}

#: The same problem on the converted Covid Tests sheet: its rows, and what the error and its fix say.
TESTS_SHEET = {
    "title": ([["Covid tests, March 2021"], [], HEADER, *TESTS],
              "the header (the first row) is not the columns' names: row 3 looks like the header (MRN, TestDate, "
              "TestMethod, Result)", "delete the rows above row 3"),
    "twice": ([[*HEADER, "Result"], *[[*row, row[3]] for row in TESTS]],
              "the column(s) Result appear more than once in the header", "name each column once"),
    "formula": ([HEADER, [*TESTS[0][:2], '="RT-PCR"', TESTS[0][3]], TESTS[1]],
                'cell C2: the formula ="RT-PCR" has no stored result, so its value is unknown', "save it again"),
    "unnamed": ([HEADER, [*TESTS[0], "retested"], TESTS[1]],
                "column E has no name in the header but holds values (first in row 2)",
                "type the column's name in its header cell"),
    "merged": ([HEADER, *TESTS], "the cells C2:C3 are merged: their value is read in C2 only", "Unmerge Cells"),
}


def _workbook(path: Path, notes: list[list[object]], tests: list[list[object]], problem: str,
              broken: str) -> Path:
    """Demographics, Covid Tests and Notes sheets; ``broken`` (a sheet) has the ``problem`` if it is merged cells."""
    from openpyxl import Workbook

    book = Workbook()
    demographics = book.active
    demographics.title = "Demographics"
    demographics.append(["MRN", "Sex"])
    demographics.append(["1234567", "F"])
    for title, rows in (("Covid Tests", tests), ("Notes", notes)):
        sheet = book.create_sheet(title)
        for number, row in enumerate(rows, start=1):
            for column, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(number, column, value)
        if problem == "merged" and title == broken:
            sheet.merge_cells("C2:C3" if title == "Covid Tests" else "A2:F6")
    book.save(path)
    return path


def _convert(path: Path, mapping: Path | None = None):  # type: ignore[no-untyped-def]
    """The workbook's records, with a study of the patient: day 0 when the tests sheet is not read."""
    study = ImagingStudy("1234567", "2.25.1", dt.date(2021, 3, 2), date_offset_days=date_offset_days(KEY, "S", "1234567"))
    return convert_clinical(read_file(path), key=KEY, site="S", project="Open-T1", studies=[study],
                            mapping=load_mapping(mapping) if mapping else None)


@pytest.mark.parametrize("problem", sorted(NOTES))
def test_an_ignored_sheet_may_hold_what_a_converted_one_may_not(tmp_path: Path, problem: str) -> None:
    """A "Notes" sheet holding "Notes" then "Exported by | Data team" stopped the whole workbook
    ("row 2 looks like the header"), and so did a note's column named twice or a formula."""
    path = _workbook(tmp_path / "clinical.xlsx", NOTES[problem], [HEADER, *TESTS], problem, "Notes")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("tables: {Notes: ignore}\n", encoding="utf-8")
    result = _convert(path, mapping)
    assert result.errors == ()
    assert [i.file for i in result.issues if i.code == "ignored_table"] == [f"{path} [Notes]"]
    assert len(result.by_node()["measurement"]) == 2 and len(result.by_node()["case"]) == 1
    # Not ignored, the notes sheet is an unknown table (the error naming it), its problem unmentioned.
    assert [(i.code, i.file) for i in _convert(path).errors] == [("unknown_table", f"{path} [Notes]")]


@pytest.mark.parametrize("problem", sorted(TESTS_SHEET))
def test_a_converted_sheet_that_would_be_misread_is_one_error_and_the_others_convert(
        tmp_path: Path, problem: str) -> None:
    rows, message, fix = TESTS_SHEET[problem]
    path = _workbook(tmp_path / "clinical.xlsx", [["Notes"]], rows, problem, "Covid Tests")
    mapping = tmp_path / "mapping.yaml"
    # Counted from the first study, the case does not depend on the tests sheet (with a test first, its day 0
    # would: tests/clinical/test_unread_tables.py).
    mapping.write_text("tables: {Notes: ignore}\nindex_event: [first_imaging_study]\n", encoding="utf-8")
    result = _convert(path, mapping)
    # One error, naming the sheet, the row or cells and the fix: not the columns of a title, nor the values.
    [error] = result.errors
    assert (error.code, error.file) == ("sheet_not_read", f"{path} [Covid Tests]")
    assert error.message.startswith(message) and error.message.endswith("; none of the sheet's rows is read")
    assert fix in error.fix
    assert "measurement" not in result.by_node()  # none of the sheet's rows is sent
    assert len(result.by_node()["case"]) == 1  # the demographics sheet is converted
    # A sheet's problem reads the same through the command line: tests/contribute/test_contribute_cli.py.


def test_the_rows_of_a_patient_whose_sheet_is_not_read_are_not_told_to_be_removed(tmp_path: Path) -> None:
    """A demographics sheet under a title is not read: each of its patients' test rows said 'MRN has no
    row in the demographics: add the patient's demographics row, or remove this row', and the studies
    'add the patient to the clinical demographics file', though the row is there, on the refused sheet."""
    from openpyxl import Workbook

    book = Workbook()
    demographics = book.active
    demographics.title = "Demographics"
    for row in (["Patient list"], [], ["MRN", "Sex"], ["1234567", "F"]):
        demographics.append(row)
    tests = book.create_sheet("Covid Tests")
    for row in (HEADER, *TESTS):
        tests.append(row)
    path = tmp_path / "clinical.xlsx"
    book.save(path)
    result = _convert(path)
    sheet = f"{path} [Demographics]"
    assert [i.file for i in result.errors if i.code == "sheet_not_read"] == [sheet]
    orphans = [i for i in result.errors if i.code == "orphan_row"]
    assert [(i.file, i.row) for i in orphans] == [(f"{path} [Covid Tests]", 2), (f"{path} [Covid Tests]", 3)]
    [missing] = [i for i in result.errors if i.code == "missing_case"]
    for issue in (*orphans, missing):
        assert f"{sheet} is not read (see its error)" in issue.message, issue
        assert issue.fix.startswith(f"fix the error of {sheet}") and "remove" not in issue.fix, issue
        assert "add the patient" not in issue.fix, issue


def test_a_patient_whose_tests_sheet_is_not_read_is_not_told_to_add_tests(tmp_path: Path) -> None:
    """A tests sheet under a title is not read: its patients' cases said 'none of the index events:
    add the patient's COVID-19 tests or imaging', though the tests are there, on the refused sheet."""
    path = _workbook(tmp_path / "clinical.xlsx", [["Notes"]], TESTS_SHEET["title"][0], "title", "Covid Tests")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("tables: {Notes: ignore}\n", encoding="utf-8")
    result = convert_clinical(read_file(path), key=KEY, site="S", project="Open-T1", mapping=load_mapping(mapping))
    sheet = f"{path} [Covid Tests]"
    assert [i.file for i in result.errors if i.code == "sheet_not_read"] == [sheet]
    [no_day_0] = [i for i in result.errors if i.code == "no_index_event"]
    assert no_day_0.file == f"{path} [Demographics]" and f"{sheet} is not read (see its error)" in no_day_0.message
    assert no_day_0.fix.startswith(f"fix the error of {sheet}") and "add the patient" not in no_day_0.fix


def test_a_sheet_not_read_is_named_only_for_the_patients_it_may_hold(tmp_path: Path) -> None:
    """When the MRN column of a sheet that is not read is known, so are its patients: another patient's
    missing row or tests get the usual fix."""
    from openpyxl import Workbook

    book = Workbook()
    demographics = book.active
    demographics.title = "Demographics"
    for row in (["MRN", "Sex", "Race"], ["1234567", "F", "White"], ["1234567", "F", None]):
        demographics.append(row)
    demographics.merge_cells("C2:C3")
    tests = book.create_sheet("Covid Tests")
    for row in (["MRN", "TestDate", "TestMethod", "Result", "Note"], ["1234567", "2021-03-01", "RT-PCR", "Positive", "a"],
                ["7654321", "2021-03-02", "RT-PCR", "Negative", "b"], ["7654321", "2021-03-03", "RT-PCR", "Negative", None]):
        tests.append(row)
    tests.merge_cells("E3:E4")
    path = tmp_path / "clinical.xlsx"
    book.save(path)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("columns: {measurement: {Note: ignore}}\n", encoding="utf-8")
    result = convert_clinical(read_file(path), key=KEY, site="S", project="Open-T1", mapping=load_mapping(mapping))
    assert sorted(i.file for i in result.errors if i.code == "sheet_not_read") == [
        f"{path} [Covid Tests]", f"{path} [Demographics]"]
    assert not [i for i in result.errors if i.code in ("orphan_row", "missing_case", "no_index_event")]
    # Another patient's rows are not on the sheets not read: the usual fix.
    (tmp_path / "more").mkdir()
    other = tmp_path / "more" / "covid_tests.csv"
    other.write_text("MRN,TestDate,TestMethod,Result\n5555555,2021-03-01,RT-PCR,Positive\n", encoding="utf-8")
    result = convert_clinical([*read_file(path), *read_file(other)], key=KEY, site="S", project="Open-T1",
                              mapping=load_mapping(mapping))
    [orphan] = [i for i in result.errors if i.code == "orphan_row"]
    assert orphan.file == str(other) and orphan.message == "MRN '5555555' has no row in the demographics"
    assert orphan.fix == "add the patient's demographics row, or remove this row"
