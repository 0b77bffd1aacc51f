"""Validation of clinical files: every problem, precisely located, never a traceback."""

from __future__ import annotations

from collections.abc import Callable

from pathlib import Path
from typing import Any

import pytest

from radcommons.clinical.sources import read_tables
from radcommons.dictionary import (
    NOT_REPORTED,
    Problem,
    load_dictionary,
    node_from_filename,
    validate_file,
    validate_files,
    validate_records,
)
from radcommons.dictionary.examples import example_records
from radcommons.errors import UserError

WriteFile = Callable[..., Path]  # the write_file fixture of conftest.py

NODES = load_dictionary().node_names


def only(problems: list[Problem], code: str | None = None) -> Problem:
    """The one problem (of ``code``) in ``problems``."""
    chosen = [p for p in problems if code is None or p.code == code]
    assert len(chosen) == 1, problems
    return chosen[0]


def case_rows(**changes: Any) -> list[dict[str, Any]]:
    rows = example_records("case", 2)
    rows[0].update(changes)
    return rows


@pytest.mark.parametrize("suffix", ["tsv", "csv", "json"])
@pytest.mark.parametrize("node", NODES)
def test_valid_file_of_every_node_type_passes(write_file: WriteFile, node: str, suffix: str) -> None:
    path = write_file(f"{node}.{suffix}", example_records(node, 3))
    result = validate_file(path)
    assert result.problems == ()
    assert result.node == node
    assert len(result.records) == 3
    assert result.records[0]["submitter_id"] == f"{node}-1"


def test_records_are_converted_to_their_types(write_file: WriteFile) -> None:
    path = write_file("imaging_study.tsv", example_records("imaging_study", 1))
    record = validate_file(path).records[0]
    assert isinstance(record["days_to_study"], int)
    assert record["days_from_study_to_pos_covid_test"] == [41]
    assert record["case.submitter_id"] == "case-1"
    assert record["_row"] == 2


def test_node_type_from_type_column_file_name_or_argument(write_file: WriteFile) -> None:
    rows = example_records("visit", 1)
    assert validate_file(write_file("batch7.tsv", rows)).node == "visit"  # type column
    no_type = [{k: v for k, v in r.items() if k != "type"} for r in rows]
    assert validate_file(write_file("visit_2024.csv", no_type)).node == "visit"  # file name
    assert validate_file(write_file("anything.json", no_type), node="visit").problems == ()
    assert node_from_filename("imaging_study.tsv") == "imaging_study"
    assert node_from_filename("cases.tsv") is None


def test_unknown_node_type(write_file: WriteFile) -> None:
    rows = example_records("visit", 1)
    rows[0]["type"] = "vist"
    problem = only(validate_files([write_file("x.tsv", rows)]))
    assert (problem.row, problem.column, problem.value, problem.code) == (2, "type", "vist", "unknown_node")
    assert "did you mean 'visit'" in problem.message

    no_type = [{k: v for k, v in r.items() if k != "type"} for r in example_records("visit", 1)]
    problem = only(validate_files([write_file("data.tsv", no_type)]))
    assert problem.code == "unknown_node" and "--node" in problem.message


def test_unknown_node_argument_is_a_user_error(write_file: WriteFile) -> None:
    with pytest.raises(UserError, match="unknown node type 'patient'"):
        validate_files([write_file("case.tsv", example_records("case", 1))], node="patient")


def test_unknown_column(write_file: WriteFile) -> None:
    rows = case_rows(favourite_colour="blue", sexx="Male")
    problems = validate_files([write_file("case.tsv", rows)])
    colour = [p for p in problems if p.column == "favourite_colour"]
    assert len(colour) == 1 and colour[0].row == 1 and colour[0].code == "unknown_column"
    assert "did you mean 'sex'" in only([p for p in problems if p.column == "sexx"]).message


def test_gen3_plural_link_column_gets_advice(write_file: WriteFile) -> None:
    rows = example_records("measurement", 1)
    rows[0]["cases.submitter_id"] = rows[0].pop("case.submitter_id")
    problems = validate_files([write_file("measurement.tsv", rows)])
    unknown = only(problems, "unknown_column")
    assert unknown.column == "cases.submitter_id" and "'case.submitter_id' (singular)" in unknown.message
    missing = only(problems, "missing_column")
    assert (missing.row, missing.column) == (1, "case.submitter_id")


def test_missing_required_column(write_file: WriteFile) -> None:
    rows = [{k: v for k, v in r.items() if k != "sex"} for r in example_records("case", 2)]
    problem = only(validate_files([write_file("case.csv", rows)]))
    assert (problem.file, problem.row, problem.column, problem.code) == (
        str(Path(problem.file)), 1, "sex", "missing_column"
    )


def test_bad_enum_lists_allowed_values_and_suggests(write_file: WriteFile) -> None:
    path = write_file("case.tsv", case_rows(sex="M", race="Unknown", ethnicity="hispanic or latino"))
    problems = validate_files([path])
    sex = only([p for p in problems if p.column == "sex"])
    assert (sex.file, sex.row, sex.value, sex.code) == (str(path), 2, "M", "enum")
    assert sex.allowed == ("Female", "Male", "Not Reported")
    assert "'Female', 'Male', 'Not Reported'" in sex.message
    race = only([p for p in problems if p.column == "race"])
    assert race.suggestion == NOT_REPORTED and "use 'Not Reported'" in race.message
    ethnicity = only([p for p in problems if p.column == "ethnicity"])
    assert ethnicity.suggestion == "Hispanic or Latino"


def test_midrc_true_false_suggests_yes_no(write_file: WriteFile) -> None:
    problem = only(validate_files([write_file("case.tsv", case_rows(icu_indicator="True"))]))
    assert problem.suggestion == "Yes"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("study_description", "CT CHEST 2021-03-04"),
        ("study_description", "03/04/2021"),
        ("study_description", "March 4, 2021"),
        ("study_description", "20210304"),
        ("days_to_study", "2021-03-04"),
    ],
)
def test_calendar_dates_are_refused(write_file: WriteFile, column: str, value: str) -> None:
    rows = example_records("imaging_study", 1)
    rows[0][column] = value
    problem = only(validate_files([write_file("imaging_study.tsv", rows)]))
    assert (problem.row, problem.column, problem.value, problem.code) == (2, column, value, "calendar_date")
    assert "days" in problem.message and "calendar date" in problem.message


def test_dates_are_refused_in_unknown_columns_too(write_file: WriteFile) -> None:
    rows = example_records("visit", 1)
    rows[0]["admit"] = "3/4/21"
    problems = validate_files([write_file("visit.csv", rows)])
    assert only(problems, "calendar_date").column == "admit"
    rows[0]["admission_date"] = "soon"
    problems = validate_files([write_file("visit.csv", rows)])
    date_column = [p for p in problems if p.column == "admission_date"]
    assert "calendar dates are not allowed" in date_column[0].message


def test_batch_names_and_uids_are_not_dates(write_file: WriteFile) -> None:
    rows = example_records("case", 1)
    rows[0]["dataset.submitter_id"] = "RSNA_20220308"
    assert validate_files([write_file("case.tsv", rows)]) == []


def test_age_over_89(write_file: WriteFile) -> None:
    path = write_file("case.tsv", case_rows(age_at_index=95))
    problem = only(validate_files([path]))
    assert (problem.file, problem.row, problem.column, problem.value, problem.code) == (
        str(path), 2, "age_at_index", "95", "range"
    )
    assert "age_at_index_gt89" in problem.message


def test_age_with_gt89_yes_is_inconsistent(write_file: WriteFile) -> None:
    problem = only(validate_files([write_file("case.tsv", case_rows(age_at_index_gt89="Yes"))]))
    assert (problem.column, problem.code) == ("age_at_index", "consistency")


def test_five_digit_zip(write_file: WriteFile) -> None:
    problem = only(validate_files([write_file("case.tsv", case_rows(zip="60614"))]))
    assert (problem.row, problem.column, problem.value, problem.code) == (2, "zip", "60614", "pattern")
    assert "first three digits" in problem.message
    assert validate_files([write_file("case.tsv", case_rows(zip="000"))]) == []


def test_a_nul_byte_in_text_is_refused(write_file: WriteFile) -> None:
    """'ok: 1 file(s) match', and PostgreSQL then refused the value at ingest."""
    rows = case_rows()
    rows[0]["submitter_id"] = "case\x00-1"
    for name in ("case.tsv", "case.json"):
        problem = only(validate_files([write_file(name, rows)]))
        assert (problem.column, problem.code) == ("submitter_id", "type") and "NUL byte" in problem.message


def test_blank_required_value(write_file: WriteFile) -> None:
    rows = example_records("case", 3)
    rows[2]["ethnicity"] = ""
    problem = only(validate_files([write_file("case.tsv", rows)]))
    assert (problem.row, problem.column, problem.value, problem.code) == (4, "ethnicity", "", "required")
    assert "Not Reported" in problem.message


def test_blank_required_link(write_file: WriteFile) -> None:
    rows = example_records("series", 1)
    rows[0]["imaging_study.submitter_id"] = ""
    problem = only(validate_files([write_file("series.tsv", rows)]))
    assert (problem.column, problem.code) == ("imaging_study.submitter_id", "required")


def test_duplicate_submitter_id_and_uid(write_file: WriteFile) -> None:
    rows = example_records("imaging_study", 2)
    rows[1]["submitter_id"] = rows[0]["submitter_id"]
    rows[1]["study_uid"] = rows[0]["study_uid"]
    problems = validate_files([write_file("imaging_study.tsv", rows)])
    dup = only([p for p in problems if p.column == "submitter_id"])
    assert (dup.row, dup.value, dup.code) == (3, "imaging_study-1", "duplicate")
    assert "first at line 2" in dup.message
    assert only([p for p in problems if p.column == "study_uid"]).code == "duplicate"


def test_duplicates_across_files(write_file: WriteFile) -> None:
    first = write_file("case.tsv", example_records("case", 1))
    second = write_file("case_resend.tsv", example_records("case", 1))
    problem = only(validate_files([first, second]))
    assert problem.file == str(second) and str(first) in problem.message


def test_same_submitter_id_in_two_projects_is_fine(write_file: WriteFile) -> None:
    rows = example_records("case", 2)
    rows[1]["submitter_id"] = rows[0]["submitter_id"]
    rows[0]["project_id"], rows[1]["project_id"] = "Open-R1", "Seq-A1"
    assert validate_files([write_file("case.tsv", rows)]) == []


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("days_to_study", "forty", "type"),
        ("days_to_study", "4.5", "type"),
        ("study_year_shifted", "maybe", "type"),
        ("days_from_study_to_pos_covid_test", "3,x", "type"),
        ("study_modality", "CT,XX", "enum"),
    ],
)
def test_bad_types(write_file: WriteFile, column: str, value: str, code: str) -> None:
    rows = example_records("imaging_study", 1)
    rows[0][column] = value
    problem = only(validate_files([write_file("imaging_study.csv", rows)]))
    assert (problem.row, problem.column, problem.value, problem.code) == (2, column, value, code)


def test_every_problem_is_reported(write_file: WriteFile) -> None:
    rows = example_records("case", 3)
    rows[0]["sex"] = "X"
    rows[1]["age_at_index"] = 120
    rows[2]["zip"] = "1234"
    rows[2]["race"] = "Unknown"
    problems = validate_files([write_file("case.tsv", rows)])
    assert [(p.row, p.column) for p in problems] == [(2, "sex"), (3, "age_at_index"), (4, "race"), (4, "zip")]


def test_cp1252_file_is_read_as_contribute_reads_it(tmp_path: Path) -> None:
    """A Windows spreadsheet's CSV (cp1252) was refused as 'not UTF-8', though `radcommons
    contribute` reads the same file (radcommons.inputs.decode_text_table, one reader for both)."""
    path = tmp_path / "case.tsv"
    # '\u2013' (an en dash) is 0x96 in cp1252 only: read as latin-1 it would be a control character
    path.write_bytes("type\tsubmitter_id\tsex\ncase\tJos\u00e9\tFem\u2013ale\n".encode("cp1252"))
    problems = validate_files([path])
    assert not [p for p in problems if p.code == "encoding"]
    assert [p.value for p in problems if p.column == "sex"] == ["Fem\u2013ale"]  # the text validate read
    assert read_tables([path])[0].rows[0][1]["sex"] == "Fem\u2013ale"  # the same text contribute reads


def test_utf8_mixed_with_another_encoding_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "case.tsv"
    path.write_bytes("type\tsubmitter_id\ncase\tC\u00f4te\n".encode() + "case\tJos\u00e9\n".encode("cp1252"))
    problem = only(validate_files([path]))
    assert (problem.file, problem.row, problem.code) == (str(path), 3, "encoding")
    assert "line 3 is not UTF-8 (byte 0xE9)" in problem.message and "save the file as CSV UTF-8" in problem.message


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "case.csv"
    path.write_text(content)
    problem = only(validate_files([path]))
    assert (problem.file, problem.row, problem.code) == (str(path), None, "empty_file")


def test_header_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "case.tsv"
    path.write_text("type\tsubmitter_id\n")
    assert only(validate_files([path])).code == "empty_file"


def test_missing_file_and_folder_and_bad_suffix(tmp_path: Path) -> None:
    (tmp_path / "case.xlsx").write_bytes(b"PK")
    (tmp_path / "workbook.tsv").write_bytes(b"PK\x03\x04\x14\x00\x06\x00")  # an .xlsx renamed: "not UTF-8"
    (tmp_path / "loop.tsv").symlink_to(tmp_path / "loop.tsv")  # "file not found"
    problems = validate_files([tmp_path / "nope.tsv", tmp_path, tmp_path / "case.xlsx", tmp_path / "workbook.tsv",
                               tmp_path / "loop.tsv"])
    assert [p.code for p in problems] == ["file_missing", "file_unreadable", "file_type", "file_type", "file_missing"]
    assert "Excel workbook" in problems[3].message and "leads nowhere" in problems[4].message
    assert all(p.row is None for p in problems)


@pytest.mark.parametrize(
    ("content", "code", "row"),
    [
        ('{"type": "case"}', "json_shape", None),
        ("[1, 2]", "json_shape", 1),
        ("[]", "empty_file", None),
        ('[\n  {"type": "case",\n', "parse", 3),
        ("[" * 100000 + "]" * 100000, "parse", None),  # a RecursionError: "internal error ... a bug"
    ],
)
def test_bad_json(tmp_path: Path, content: str, code: str, row: int | None) -> None:
    path = tmp_path / "case.json"
    path.write_text(content)
    problems = validate_files([path])
    assert problems and problems[0].code == code and problems[0].row == row, problems
    assert "list of objects" in problems[0].message or code != "json_shape" or row == 1


def test_json_rows_are_line_numbers(write_file: WriteFile) -> None:
    rows = example_records("measurement", 2)
    rows[1]["test_result_text"] = "positive"
    path = write_file("measurement.json", rows)
    problem = only(validate_files([path]))
    start_lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("  {")]
    assert problem.row == start_lines[1] and problem.suggestion == "Positive"


def test_csv_quoted_newline_keeps_line_numbers(tmp_path: Path) -> None:
    rows = example_records("observation", 2)
    columns = list(rows[0])
    path = tmp_path / "observation.csv"
    lines = [",".join(columns)]
    first = dict(rows[0], observation_value_text='"two\nlines"')
    second = dict(rows[1], observation_value="high")
    for row in (first, second):
        lines.append(",".join(str(row[c]) for c in columns))
    path.write_text("\n".join(lines) + "\n")
    problem = only(validate_files([path]))
    assert (problem.row, problem.column) == (4, "observation_value")


def test_row_with_wrong_number_of_cells(tmp_path: Path) -> None:
    rows = example_records("program", 1)
    path = tmp_path / "program.tsv"
    path.write_text("\t".join(rows[0]) + "\n" + "\t".join(str(v) for v in rows[0].values()) + "\textra\n")
    problem = only(validate_files([path]))
    assert (problem.row, problem.code) == (2, "row_length")


def test_validate_records_in_memory() -> None:
    rows = example_records("procedure", 2)
    rows[1]["breathing_support_type"] = "CPAP"
    result = validate_records(rows, "procedure")
    problem = only(list(result.problems))
    assert (problem.file, problem.row, problem.column) == ("<records>", 2, "breathing_support_type")
    assert "Mechanical Ventilation" in problem.allowed
