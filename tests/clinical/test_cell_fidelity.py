"""What a hospital's spreadsheet does to its cells reaches the conversion as the data manager sees it,
or as an error that says what to do: never as another patient, another ZIP code or a made-up age."""

from __future__ import annotations

from pathlib import Path

import pytest

from radcommons.clinical import ERROR, convert_clinical, load_mapping, read_file, read_tables
from radcommons.deid import patient_pseudonym

KEY = bytes(range(32))
TESTS = "MRN,TestDate,TestMethod,Result\n{mrn},2021-03-01,RT-PCR,Positive\n"


def _convert(folder: Path):  # type: ignore[no-untyped-def]
    return convert_clinical(read_tables([folder]), key=KEY, site="S", project="Open-T1")


def _site(tmp_path: Path, demographics: str, tests_mrn: str = "1234567") -> Path:
    folder = tmp_path / "clinical"
    folder.mkdir()
    (folder / "demographics.csv").write_text(demographics, encoding="utf-8")
    (folder / "covid_tests.csv").write_text(TESTS.format(mrn=tests_mrn), encoding="utf-8")
    return folder


def test_a_number_under_a_zero_padding_format_is_read_as_the_spreadsheet_shows_it(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Demographics"
    sheet.append(["MRN", "Sex", "Zip"])
    sheet.append([123, "F", 21391234])  # typed 0000123 and 02139-1234 into number cells
    sheet["A2"].number_format = "0000000"
    sheet["C2"].number_format = "00000\\-0000"  # Excel's Special > Zip Code + 4
    tests = book.create_sheet("Covid Tests")
    tests.append(["MRN", "TestDate", "Result"])
    tests.append(["0000123", "2021-03-01", "Positive"])
    path = tmp_path / "clinical.xlsx"
    book.save(path)

    demographics = read_file(path)[0]
    assert demographics.rows[0][1]["MRN"] == "0000123"
    assert demographics.rows[0][1]["Zip"] == "02139-1234"
    result = convert_clinical(read_file(path), key=KEY, site="S", project="Open-T1")
    assert result.errors == ()
    case = result.by_node()["case"][0]
    assert case["submitter_id"] == patient_pseudonym(KEY, "S", "0000123")  # not the pseudonym of MRN 123
    assert case["zip"] == "021"


@pytest.mark.parametrize(("mrn", "code"), [
    ("#N/A", "spreadsheet_error"),  # a lookup that found nothing: every such row would be patient "#N/A"
    ("N/A", "no_value_marker"),
    ("1.23457E+19", "mrn_digits_lost"),  # how a spreadsheet saves a long number to CSV
    ("1234567.0", "mrn_digits_lost"),
])
def test_an_mrn_cell_that_is_not_an_mrn_is_an_error_naming_the_row(tmp_path: Path, mrn: str, code: str) -> None:
    result = _convert(_site(tmp_path, f"MRN,Sex\n{mrn},F\n", tests_mrn=mrn))
    found = {(Path(i.file or "").name, i.row, i.column) for i in result.errors if i.code == code}
    assert found == {("demographics.csv", 2, "MRN"), ("covid_tests.csv", 2, "MRN")}
    assert "case" not in result.by_node()


def test_an_mrn_stored_as_a_number_longer_than_a_spreadsheet_keeps_is_an_error(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Demographics"
    sheet.append(["MRN", "Sex"])
    sheet.append([12345678901234567890, "F"])  # Excel keeps 15 digits: 12345678901234500000
    path = tmp_path / "demographics.xlsx"
    book.save(path)
    result = convert_clinical(read_file(path), key=KEY, site="S", project="Open-T1")
    assert [(i.code, i.row, i.column) for i in result.errors] == [("mrn_digits_lost", 2, "MRN")]
    assert "more than 15" in result.errors[0].message and "as text" in result.errors[0].fix


@pytest.mark.parametrize(("column", "value", "code"), [
    ("DOB", "NULL", "no_value_marker"),  # a SQL export's empty cell
    ("Zip", "#N/A", "spreadsheet_error"),
    ("Sex", "NaN", "no_value_marker"),  # pandas' empty cell
    ("DOB", "#VALUE!", "spreadsheet_error"),
])
def test_a_no_value_marker_or_a_spreadsheet_error_says_to_leave_the_cell_empty_or_fix_the_formula(
        tmp_path: Path, column: str, value: str, code: str) -> None:
    row = {"MRN": "1234567", "DOB": "1950-01-01", "Sex": "F", "Zip": "02139", column: value}
    result = _convert(_site(tmp_path, ",".join(row) + "\n" + ",".join(row.values()) + "\n"))
    issue = next(i for i in result.errors if i.row == 2 and i.column == column)
    assert issue.code == code
    assert ("leave the cell empty" in issue.fix) if code == "no_value_marker" else ("formula" in issue.fix)
    assert "case" not in result.by_node()


def test_a_four_digit_zip_says_its_leading_zero_was_dropped(tmp_path: Path) -> None:
    result = _convert(_site(tmp_path, "MRN,Sex,Zip\n1234567,F,2139\n"))
    issue = next(i for i in result.errors if i.code == "bad_zip")
    assert "leading zero" in issue.message and "02139" in issue.fix


@pytest.mark.parametrize("birth", ["1900-01-01", "1850-06-30"])
def test_a_placeholder_or_impossible_birth_date_is_an_error_not_an_age_over_89(tmp_path: Path, birth: str) -> None:
    result = _convert(_site(tmp_path, f"MRN,DOB,Sex\n1234567,{birth},F\n"))
    assert [(i.code, i.row, i.column) for i in result.errors] == [("implausible_birth_date", 2, "DOB")]
    assert result.errors[0].severity == ERROR and "leave the cell empty" in result.errors[0].fix
    assert "case" not in result.by_node()



def test_the_country_na_is_namibia_not_a_missing_value(tmp_path: Path) -> None:
    case = _convert(_site(tmp_path, "MRN,Sex,Country\n1234567,F,NA\n")).by_node()["case"][0]
    assert case["country_of_residence"] == "NA"


def test_a_date_column_written_day_first_is_an_error_not_dates_swapped_silently(tmp_path: Path) -> None:
    folder = _site(tmp_path, "MRN,Sex\n1234567,F\n")
    (folder / "covid_tests.csv").write_text("MRN,TestDate,Result\n1234567,08/01/2023,Negative\n"
                                            "1234567,15/01/2023,Positive\n", encoding="utf-8")
    result = _convert(folder)
    [error] = [i for i in result.errors if i.code == "day_first_dates"]
    assert (Path(error.file or "").name, error.row, error.column) == ("covid_tests.csv", 3, "TestDate")
    assert 'date_formats: ["%d/%m/%Y"]' in error.fix
    assert "measurement" not in result.by_node()  # 08/01/2023 was sent as 1 August, 15/01 refused alone

    mapping = tmp_path / "mapping.yaml"
    mapping.write_text('date_formats: ["%d/%m/%Y"]\n', encoding="utf-8")
    from radcommons.clinical import load_mapping

    fixed = convert_clinical(read_tables([folder]), key=KEY, site="S", project="Open-T1",
                             mapping=load_mapping(mapping))
    assert fixed.errors == ()
    assert sorted(m["days_to_test"] for m in fixed.by_node()["measurement"]) == [-7, 0]  # 8 and 15 January


@pytest.mark.parametrize("mistyped", ["2023-13-05", "20231305"])
def test_a_mistyped_year_first_date_is_its_row_s_error_not_a_day_first_table(tmp_path: Path, mistyped: str) -> None:
    """A year-first date with a month of 13 was taken for day first (%Y-%d-%m): the whole table was
    left unread, with a date_formats fix that would misread every other date of the site."""
    folder = _site(tmp_path, "MRN,Sex\n1234567,F\n")
    (folder / "covid_tests.csv").write_text(f"MRN,TestDate,Result\n1234567,2023-01-08,Negative\n"
                                            f"1234567,{mistyped},Positive\n", encoding="utf-8")
    result = _convert(folder)
    assert not [i for i in result.errors if i.code == "day_first_dates"]
    # The row's error, and the case's: its positive test, day 0, is that row (tests/clinical/test_unread_tables.py).
    assert [(i.row, i.column, i.code) for i in result.errors] == [(3, "TestDate", "bad_date"),
                                                                   (2, None, "index_event_not_read")]


def test_a_table_with_a_header_and_no_rows_is_a_warning(tmp_path: Path) -> None:
    folder = _site(tmp_path, "MRN,Sex\n1234567,F\n")
    (folder / "encounters.csv").write_text("MRN,EncounterType,AdmitDate\n", encoding="utf-8")
    [warning] = [i for i in _convert(folder).issues if i.code == "empty_table"]
    assert warning.severity == "warning" and Path(warning.file or "").name == "encounters.csv"


def test_a_csv_cell_kept_as_text_for_excel_is_read_as_excel_shows_it(tmp_path: Path) -> None:
    folder = _site(tmp_path, 'MRN,Sex\n="0001234",F\n', tests_mrn="0001234")
    assert read_tables([folder / "demographics.csv"])[0].rows[0][1]["MRN"] == "0001234"
    result = _convert(folder)
    assert result.errors == ()
    assert result.by_node()["case"][0]["submitter_id"] == patient_pseudonym(KEY, "S", "0001234")


@pytest.mark.parametrize("when", ["2021-03-01 14:30:00", "2021-03-01T14:30", "03/01/2021 2:30 PM",
                                  "2021-03-01 14:30:00.000"])
def test_a_date_with_a_time_of_day_is_read_as_its_date(tmp_path: Path, when: str) -> None:
    folder = _site(tmp_path, "MRN,Sex\n1234567,F\n")
    (folder / "covid_tests.csv").write_text(f"MRN,TestDate,Result\n1234567,{when},Positive\n"
                                            "1234567,2021-03-08,Negative\n", encoding="utf-8")
    result = _convert(folder)
    assert result.errors == ()
    assert sorted(m["days_to_test"] for m in result.by_node()["measurement"]) == [0, 7]


def test_an_unknown_hidden_sheet_says_it_is_hidden(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "Demographics"
    book.active.append(["MRN", "Sex"])
    book.active.append(["1234567", "F"])
    lookup = book.create_sheet("Lookup")  # a VLOOKUP's table, which the data manager never sees
    lookup.append(["code", "label"])
    lookup.append(["F", "Female"])
    lookup.sheet_state = "hidden"
    path = tmp_path / "clinical.xlsx"
    book.save(path)
    [error] = [i for i in convert_clinical(read_file(path), key=KEY, site="S", project="Open-T1").errors
               if i.code == "unknown_table"]
    assert error.file == f"{path} [Lookup]" and "hidden sheet" in error.message and "Unhide" in error.message


def _merged_workbook(path: Path, merged_sheet: str) -> Path:
    """Demographics and Covid Tests sheets, and a Notes sheet (a title over a paragraph, merged as people
    lay notes out); the cells ``merged_sheet`` names are merged."""
    from openpyxl import Workbook

    book = Workbook()
    demographics = book.active
    demographics.title = "Demographics"
    demographics.append(["MRN", "Sex"])
    demographics.append(["1234567", "F"])
    tests = book.create_sheet("Covid Tests")
    tests.append(["MRN", "TestDate", "TestMethod", "Result"])
    tests.append(["1234567", "2021-03-01", "RT-PCR", "Positive"])
    tests.append(["1234567", "2021-03-08", None, "Negative"])  # the method merged over both rows
    notes = book.create_sheet("Notes")
    notes.append(["Export notes"])
    notes.append(["Exported from the EHR on 2024-01-05; tests before March 2020 are not included."])
    if merged_sheet == "Covid Tests":
        tests.merge_cells("C2:C3")
    notes.merge_cells("A1:F1")
    notes.merge_cells("A2:F6")
    book.save(path)
    return path


def test_cells_merged_over_data_rows_are_an_error_naming_them(tmp_path: Path) -> None:
    path = _merged_workbook(tmp_path / "clinical.xlsx", "Covid Tests")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("tables: {Notes: ignore}\n", encoding="utf-8")
    # C3 read as empty was sent as test_method Not Reported
    result = convert_clinical(read_file(path), key=KEY, site="S", project="Open-T1", mapping=load_mapping(mapping))
    [error] = [i for i in result.errors if i.code == "sheet_not_read"]
    assert error.file == f"{path} [Covid Tests]"
    assert error.message.startswith("the cells C2:C3 are merged") and "none of the sheet's rows is read" in error.message
    assert "Unmerge" in error.fix
    assert "measurement" not in result.by_node()


def test_merged_cells_of_an_ignored_sheet_do_not_stop_the_workbook(tmp_path: Path) -> None:
    """A notes sheet laid out with merged cells stopped the whole workbook, though it is never read."""
    path = _merged_workbook(tmp_path / "clinical.xlsx", "Notes")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("tables: {Notes: ignore}\n", encoding="utf-8")
    result = convert_clinical(read_file(path), key=KEY, site="S", project="Open-T1", mapping=load_mapping(mapping))
    assert [i.code for i in result.errors] == []
    assert [i.file for i in result.issues if i.code == "ignored_table"] == [f"{path} [Notes]"]
    assert len(result.by_node()["measurement"]) == 2
    # Not ignored, the notes sheet is an unknown table (an error naming it), its merged cells unmentioned.
    unmapped = convert_clinical(read_file(path), key=KEY, site="S", project="Open-T1")
    assert [(i.code, i.file) for i in unmapped.errors] == [("unknown_table", f"{path} [Notes]")]


def test_an_age_column_says_the_age_comes_from_the_birth_date(tmp_path: Path) -> None:
    result = _convert(_site(tmp_path, "MRN,Age,Sex\n1234567,90+,F\n"))
    [error] = [i for i in result.errors if i.code == "unknown_column"]
    assert error.column == "Age" and "birth_date" in error.fix and "{case: {'Age': ignore}}" in error.fix
    assert "<field>" not in error.fix  # no field would have taken it


@pytest.mark.parametrize("column", ["Patient Age", "AgeAtIndex", "age_at_study", "Age (years)"])
def test_a_site_with_ages_and_no_birth_dates_is_told_what_is_sent(tmp_path: Path, column: str) -> None:
    """'Patient Age' was told to map itself to a field (none holds an age), a site without birth dates
    was told only to map its birth dates: the fix now says what an ignored age column sends."""
    folder = _site(tmp_path, f"MRN,{column},Sex\n1234567,93,F\n")
    [error] = [i for i in _convert(folder).errors if i.code == "unknown_column"]
    assert error.column == column and "<field>" not in error.fix
    assert f"{{case: {{{column!r}: ignore}}}}" in error.fix and "Without birth dates" in error.fix
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(f"columns: {{case: {{'{column}': ignore}}}}\n", encoding="utf-8")
    result = convert_clinical(read_tables([folder]), key=KEY, site="S", project="Open-T1",
                              mapping=load_mapping(mapping))
    assert result.errors == ()
    [case] = result.by_node()["case"]
    assert "age_at_index" not in case and case["age_at_index_gt89"] == "Not Reported"  # 93 is never sent


@pytest.mark.parametrize("name", ["Stage", "Language", "Image Count", "Agent", "Agency"])
def test_a_column_with_age_inside_a_word_is_not_an_age(tmp_path: Path, name: str) -> None:
    [error] = [i for i in _convert(_site(tmp_path, f"MRN,{name},Sex\n1234567,x,F\n")).errors
               if i.code == "unknown_column"]
    assert "<field>" in error.fix and "birth date" not in error.fix


def test_a_medication_agent_column_is_not_told_about_ages(tmp_path: Path) -> None:
    """Any table's column whose name began with the letters a-g-e was an age: a medication table's
    'Agent' was told to map the birth date of the demographics, and that the cases are sent with no age."""
    folder = _site(tmp_path, "MRN,Sex\n1234567,F\n")
    (folder / "medications.csv").write_text("MRN,Medication,StartDate,Agent\n1234567,Remdesivir,2021-03-02,antiviral\n",
                                            encoding="utf-8")
    [error] = [i for i in _convert(folder).errors if i.code == "unknown_column"]
    assert (error.file, error.column) == (str(folder / "medications.csv"), "Agent")
    assert "columns: {medication: {'Agent': <field>}}" in error.fix and "medication_name" in error.fix
    assert "birth" not in error.fix and "age" not in error.fix.replace("usage", "")
    # A name run together that starts with an age still is one.
    (folder / "medications.csv").unlink()
    (folder / "demographics.csv").write_text("MRN,Sex,AGEATINDEX\n1234567,F,70\n", encoding="utf-8")
    [error] = [i for i in _convert(folder).errors if i.code == "unknown_column"]
    assert error.column == "AGEATINDEX" and "Without birth dates" in error.fix


def test_hundreds_of_unknown_columns_are_one_error_listing_them(tmp_path: Path) -> None:
    """An EHR dump of 300 unknown columns gave 300 errors saying the same thing."""
    extra = [f"Flowsheet {n:03d}" for n in range(300)]
    folder = _site(tmp_path, ",".join(["MRN", "Sex", *extra]) + "\n" + ",".join(["1234567", "F", *"x" * 300]) + "\n")
    errors = _convert(folder).errors
    [error] = [i for i in errors if i.code == "unknown_column"]
    assert (error.file, error.row, error.column) == (str(folder / "demographics.csv"), 1, None)
    assert error.message.startswith("300 unknown columns in a case table: they are not sent")
    assert all(repr(name) in error.message for name in extra)
    assert "export only the columns" in error.fix and "'Flowsheet 000': <field, ignore or drop>" in error.fix
    assert "drop: an identifier" in error.fix
    assert len(errors) < 5
    # A few are still one error each, naming its column.
    (tmp_path / "few").mkdir()
    few = _convert(_site(tmp_path / "few", "MRN,Sex,Colour,Shoe Size\n1234567,F,blue,7\n")).errors
    assert [i.column for i in few if i.code == "unknown_column"] == ["Colour", "Shoe Size"]


@pytest.mark.parametrize("name", ["demographics.csv", "demographics.xlsx"])
@pytest.mark.parametrize(("start", "found"), [
    ("<html><body><table><tr><td>MRN</td></tr></table></body></html>", "an HTML page"),
    ('<?xml version="1.0"?>\n<?mso-application progid="Excel.Sheet"?>\n<Workbook/>', "an Excel 2003 XML workbook"),
])
def test_a_report_saved_as_a_web_page_says_what_it_is(tmp_path: Path, name: str, start: str, found: str) -> None:
    from radcommons.errors import UserError

    path = tmp_path / name
    path.write_text(start + "\n", encoding="utf-8")
    with pytest.raises(UserError) as error:  # it was one unknown column named '<html>...' or "rename it .csv"
        read_file(path)
    assert found in error.value.message and "save it as .xlsx" in error.value.hint
