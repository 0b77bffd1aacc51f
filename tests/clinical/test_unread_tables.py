"""A table whose rows are not read, whatever the reason (a sheet not recognised, one without its MRN column,
dates written day first, a refused sheet), or a row with an error of its own, may hold what a patient lacks:
the patient's errors name it and its fix; a case whose day 0 may be among its COVID-19 tests is not sent, even
with --allow-partial, rather than counted from another day (every offset changed once the table is read); and
no 'No' is sent that it may contradict. Through ``radcommons
contribute --dry-run``; sheets refused for their layout: tests/clinical/test_sheets.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from clinical_support import KEY, Radiograph, dry_run, write_csv

from radcommons.clinical import ImagingStudy, SourceTable, convert_clinical, load_mapping
from radcommons.deid import date_offset_days

TESTS_HEADER = ["MRN", "TestDate", "TestMethod", "Result"]


def _contribute(study: Radiograph, state: Path, *clinical: Path, mapping: Path | None = None,
                partial: bool = False) -> dict[str, Any]:
    """The report of a dry run (with --allow-partial: what it would send); the table not read is an error."""
    return dry_run(study, state, *clinical, mapping=mapping, partial=partial).report


def _issues(report: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [i for i in report["clinical"]["issues"] if i["code"] == code]


def _workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


_csv = write_csv


@pytest.mark.parametrize("how", ["unrecognised sheet", "no MRN column"])
def test_a_patient_whose_demographics_are_not_read_is_told_to_fix_that_table(
        radiograph: Radiograph, tmp_path: Path, how: str) -> None:
    """Demographics on a sheet not recognised (Sheet1), or under an MRN column named otherwise: the patient's
    studies said 'add the patient to the clinical demographics file', its test rows 'add the patient's
    demographics row, or remove this row', though the row is there, in a table that is not read."""
    mrn = radiograph.mrn
    tests = [TESTS_HEADER, [mrn, "2020-01-02", "RT-PCR", "Positive"]]
    if how == "unrecognised sheet":
        path = _workbook(tmp_path / "clinical.xlsx", {
            "Sheet1": [["MRN", "DOB", "Sex"], [mrn, "1950-01-01", "F"]],
            "Extra": [["MRN", "Sex"], ["999999", "M"]],  # another patient's: not named for this one
            "README": [["Exported from the EHR"], ["by the data team"]],  # no MRN: holds no patient
            "Covid Tests": tests})
        unread, files = f"{path} [Sheet1]", [path]
        tests_file = f"{path} [Covid Tests]"
    else:
        demographics = _csv(tmp_path / "demographics.csv", [["Patient Number", "DOB", "Sex"], [mrn, "1950-01-01", "F"]])
        files = [demographics, _csv(tmp_path / "covid_tests.csv", tests)]
        unread, tests_file = str(demographics), str(files[1])
    report = _contribute(radiograph, tmp_path / "state", *files)
    [missing] = _issues(report, "missing_case")
    [orphan] = _issues(report, "orphan_row")
    assert orphan["file"] == tests_file
    for issue in (missing, orphan):
        assert f"{unread} is not read (see its error)" in issue["message"], issue
        assert "README" not in issue["message"] and "Extra" not in issue["message"], issue
        assert issue["fix"] == f"fix the error of {unread} and run again", issue
    assert report["leaving"]["studies"] == 0


def test_a_case_whose_tests_are_not_read_is_not_counted_from_its_first_study(
        radiograph: Radiograph, tmp_path: Path) -> None:
    """With --allow-partial and the tests sheet refused (a title above its header), the case was sent with
    index event 'First Imaging Study' and every offset counted from that day: sent again once the sheet is
    fixed, the same patient's offsets all changed. Now it is an error of the case, and nothing of the
    patient leaves, its study included."""
    mrn = radiograph.mrn
    path = _workbook(tmp_path / "clinical.xlsx", {
        "Demographics": [["MRN", "DOB", "Sex"], [mrn, "1950-01-01", "F"]],
        "Covid Tests": [["Covid tests, 2020"], [], TESTS_HEADER, [mrn, "2020-01-02", "RT-PCR", "Positive"]]})
    report = _contribute(radiograph, tmp_path / "state", path, partial=True)
    sheet = f"{path} [Covid Tests]"
    assert [i["file"] for i in _issues(report, "sheet_not_read")] == [sheet]
    [error] = _issues(report, "index_event_not_read")
    assert (error["file"], error["row"]) == (f"{path} [Demographics]", 2)
    assert error["message"] == (f"MRN {mrn!r}: day 0 is not known: {sheet} is not read (see its error) and may hold "
                                "the patient's COVID-19 tests, which index_event puts before the first imaging "
                                "study; nothing of the patient is sent, its studies included")
    assert error["fix"] == f"fix the error of {sheet} and run again"
    assert report["leaving"] == {"studies": 0, "files": 0, "bytes": 0, "clinical": {}}
    # Counted from the first study by the site's choice, the case does not depend on its tests: it is sent.
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("index_event: [first_imaging_study, positive_covid_test]\n", encoding="utf-8")
    report = _contribute(radiograph, tmp_path / "first-study", path, mapping=mapping, partial=True)
    assert not _issues(report, "index_event_not_read")
    assert report["leaving"]["studies"] == 1 and report["leaving"]["clinical"] == {"case": 1, "imaging_study": 1}


@pytest.mark.parametrize("how", ["dates day first", "a row's error"])
def test_tests_not_read_do_not_leave_a_case_counted_from_its_first_study(
        radiograph: Radiograph, tmp_path: Path, how: str) -> None:
    """A tests table of dates written day first is not read (day_first_dates), nor is a positive test with
    an impossible date: their patients were sent, with --allow-partial, counted from their first study."""
    mrn = radiograph.mrn
    demographics = _csv(tmp_path / "demographics.csv", [["MRN", "DOB", "Sex"], [mrn, "1950-01-01", "F"]])
    day = "25/01/2020" if how == "dates day first" else "2020-02-30"
    tests = _csv(tmp_path / "covid_tests.csv", [TESTS_HEADER, [mrn, day, "RT-PCR", "Positive"]])
    report = _contribute(radiograph, tmp_path / "state", demographics, tests, partial=True)
    unread = str(tests) if how == "dates day first" else f"{tests} row 2"
    assert [i["file"] for i in _issues(report, "day_first_dates" if how == "dates day first" else "bad_date")] == [
        str(tests)]
    [error] = _issues(report, "index_event_not_read")
    assert error["file"] == str(demographics) and f"{unread} is not read (see its error)" in error["message"]
    assert error["fix"] == f"fix the error of {unread} and run again"
    assert report["leaving"]["studies"] == 0 and report["leaving"]["clinical"] == {}


def _table(name: str, columns: list[str], *rows: list[object], sheet: str | None = None) -> SourceTable:
    return SourceTable(f"{name}.xlsx" if sheet else f"{name}.csv", sheet, tuple(columns),
                       tuple((i, dict(zip(columns, row))) for i, row in enumerate(rows, start=2)))


def test_only_the_patients_a_table_not_read_may_hold_are_affected() -> None:
    """Whose MRNs are known (the header was read), a table not read names, and stops, only its own patients:
    another patient is counted from its own tests, or told to add what it lacks."""
    demographics = _table("demographics", ["MRN", "Sex"], ["1111111", "F"], ["2222222", "M"], ["3333333", "F"])
    tests = _table("covid_tests", TESTS_HEADER, ["1111111", "2021-03-01", "RT-PCR", "Positive"],
                   ["2222222", "2021-03-02", "RT-PCR", "Positive"])
    day_first = _table("more_covid_tests", TESTS_HEADER, ["1111111", "25/02/2021", "RT-PCR", "Positive"])
    studies = [ImagingStudy(mrn, f"2.25.{n}", dt.date(2021, 3, 5), date_offset_days=date_offset_days(KEY, "S", mrn))
               for n, mrn in enumerate(("1111111", "2222222", "3333333"), start=1)]
    result = convert_clinical([demographics, tests, day_first], key=KEY, site="S", project="Open-T1",
                              studies=studies, mapping=load_mapping())
    # 1111111's positive test read may not be its first: more_covid_tests.csv may hold an earlier one.
    [error] = [i for i in result.errors if i.code == "index_event_not_read"]
    assert error.message == ("MRN '1111111': day 0 is not known: more_covid_tests.csv is not read (see its error) "
                             "and may hold an earlier COVID-19 test of the patient; nothing of the patient is sent, "
                             "its studies included")
    cases = {r.patient_id: r.values for r in result.records if r.node == "case"}
    assert sorted(cases) == ["2222222", "3333333"]
    assert {mrn: case["index_event"] for mrn, case in cases.items()} == {"2222222": "COVID-19 Test",
                                                                         "3333333": "First Imaging Study"}
    # A sheet not recognised is named for the MRNs it holds, and only when it has an MRN column.
    unknown = _table("clinical", ["MRN", "Sex"], ["4444444", "F"], sheet="Sheet1")
    notes = _table("clinical", ["Notes"], ["exported by the data team"], sheet="README")
    orphans = _table("covid_tests", TESTS_HEADER, ["4444444", "2021-03-01", "RT-PCR", "Positive"],
                     ["5555555", "2021-03-01", "RT-PCR", "Positive"])
    result = convert_clinical([unknown, notes, orphans], key=KEY, site="S", project="Open-T1", mapping=load_mapping())
    assert sorted(i.file for i in result.errors if i.code == "unknown_table") == ["clinical.xlsx [README]",
                                                                                  "clinical.xlsx [Sheet1]"]
    said = {i.value: (i.message, i.fix) for i in result.errors if i.code == "orphan_row"}
    assert said["4444444"] == ("MRN '4444444' has no row in the demographics that were read: clinical.xlsx [Sheet1] "
                               "is not read (see its error), and may hold the patient's rows",
                               "fix the error of clinical.xlsx [Sheet1] and run again")
    assert said["5555555"] == ("MRN '5555555' has no row in the demographics",
                               "add the patient's demographics row, or remove this row")


def test_a_no_is_not_sent_for_what_a_table_or_row_not_read_may_say_yes_to(tmp_path: Path) -> None:
    """Counted from the first study (so sent), a case said covid19_positive 'No' from the negative test read
    while a positive one was on a sheet not read, ventilator_indicator 'No' while its breathing support table
    was not read, icu_indicator 'No' while a visit row with an error was not: each is now 'Not Reported'.
    A 'Yes' read stays, and so does a 'No' that nothing unread may contradict."""
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text("index_event: [first_imaging_study, positive_covid_test]\n", encoding="utf-8")
    mrns = ("1111111", "2222222")
    demographics = _table("demographics", ["MRN", "Sex"], *[[m, "F"] for m in mrns])
    tests = _table("covid_tests", TESTS_HEADER, ["1111111", "2021-03-01", "RT-PCR", "Negative"],
                   ["2222222", "2021-03-01", "RT-PCR", "Negative"])
    refused = SourceTable("more.xlsx", "Covid Tests", ("Covid tests, 2021",), (), refused="a title\ndelete it")
    visits = _table("encounters", ["MRN", "EncounterType", "AdmitDate", "ICUAdmitDate"],
                    ["1111111", "Inpatient", "2021-03-02", ""], ["1111111", "Inpatient", "2021-03-40", "2021-03-05"],
                    ["2222222", "Inpatient", "2021-03-02", ""])
    support = _table("breathing_support", ["Note"], ["1111111"])  # no MRN column: its rows are not read
    studies = [ImagingStudy(mrn, f"2.25.{n}", dt.date(2021, 3, 5), date_offset_days=date_offset_days(KEY, "S", mrn))
               for n, mrn in enumerate(mrns, start=1)]
    mapping = load_mapping(mapping_path)
    result = convert_clinical([demographics, tests, refused, visits, support], key=KEY, site="S", project="Open-T1",
                              studies=studies, mapping=mapping)
    assert not [i for i in result.errors if i.code == "index_event_not_read"]
    cases = {r.patient_id: r.values for r in result.records if r.node == "case"}
    shown = {mrn: (c["covid19_positive"], c["icu_indicator"], c["ventilator_indicator"]) for mrn, c in cases.items()}
    # 2222222's visit is read and has no ICU day: a No that nothing unread can contradict (no row of it has an error).
    assert shown == {"1111111": ("Not Reported", "Not Reported", "Not Reported"),
                     "2222222": ("Not Reported", "No", "Not Reported")}
    # Read without the refused sheet and the breathing support file, 2222222's tests say No.
    result = convert_clinical([demographics, tests, visits], key=KEY, site="S", project="Open-T1", studies=studies,
                              mapping=mapping)
    assert {r.patient_id: r.values["covid19_positive"] for r in result.records if r.node == "case"} == {
        "1111111": "No", "2222222": "No"}


def test_a_demographics_row_in_a_table_not_read_is_not_said_to_have_errors() -> None:
    """Demographics with birth dates day first: each patient's test rows and studies said 'the patient's
    demographics row (demographics.csv row 2) has errors: fix the errors of demographics.csv row 2', a row
    without an error of its own (the table's is on row 3)."""
    demographics = _table("demographics", ["MRN", "DOB"], ["1111111", "01/02/1950"], ["2222222", "25/12/1950"])
    tests = _table("covid_tests", TESTS_HEADER, ["1111111", "2021-03-01", "RT-PCR", "Positive"])
    studies = [ImagingStudy("1111111", "2.25.1", dt.date(2021, 3, 5),
                            date_offset_days=date_offset_days(KEY, "S", "1111111"))]
    result = convert_clinical([demographics, tests], key=KEY, site="S", project="Open-T1", studies=studies,
                              mapping=load_mapping())
    [day_first] = [i for i in result.errors if i.code == "day_first_dates"]
    assert (day_first.file, day_first.row) == ("demographics.csv", 3)
    rejected = [i for i in result.errors if i.code == "case_rejected"]
    assert [i.file for i in rejected] == ["covid_tests.csv", "images"]
    for issue in rejected:
        assert "(demographics.csv row 2) is not read (see the error of demographics.csv)" in issue.message, issue
        assert issue.fix == "fix the error of demographics.csv and run again", issue
