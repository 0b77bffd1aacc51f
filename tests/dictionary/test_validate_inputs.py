"""``radcommons dictionary validate`` on files as spreadsheet programs save them: the problem says
what is wrong with the file and what to do, never a message that leads to another value."""

from __future__ import annotations

import codecs
from pathlib import Path

from radcommons.dictionary import validate_files
from radcommons.dictionary.examples import example_records, format_cell


def _tsv(records: list[dict[str, object]]) -> str:
    columns = list(records[0])
    return "\n".join(["\t".join(columns)] + ["\t".join(format_cell(r.get(c)) for c in columns) for r in records]) + "\n"


def test_a_csv_separated_by_semicolons_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "case.csv"
    path.write_text(_tsv(example_records("case", 2)).replace("\t", ";"), encoding="utf-8")
    [problem] = validate_files([path])
    assert (problem.code, problem.row) == ("separator", 1)
    assert "semicolons" in problem.message and "save it again with commas" in problem.message


def test_excel_unicode_text_utf16_with_its_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "case.tsv"
    path.write_bytes(codecs.BOM_UTF16_LE + _tsv(example_records("case", 2)).encode("utf-16-le"))
    assert validate_files([path]) == []


def test_a_column_in_another_case_is_named_in_the_dictionary_case(tmp_path: Path) -> None:
    records = example_records("case", 1)
    records[0]["AGE_AT_INDEX"] = records[0].pop("age_at_index", 40)
    path = tmp_path / "case.tsv"
    path.write_text(_tsv(records), encoding="utf-8")
    problem = next(p for p in validate_files([path]) if p.code == "unknown_column")
    assert "did you mean 'age_at_index'?" in problem.message


def test_a_no_value_marker_says_to_leave_the_cell_empty_or_write_not_reported(tmp_path: Path) -> None:
    records = example_records("case", 1)
    records[0].update({"age_at_index": "N/A", "sex": "NaN", "race": "#N/A"})
    path = tmp_path / "case.tsv"
    path.write_text(_tsv(records), encoding="utf-8")
    found = {p.column: (p.code, p.message) for p in validate_files([path])}
    assert found["age_at_index"] == ("no_value_marker", "'N/A' stands for a missing value: when the value is not "
                                                        "known, leave the cell empty")
    assert found["sex"][0] == "no_value_marker" and "write 'Not Reported'" in found["sex"][1]
    assert "spreadsheet error" in found["race"][1]


def test_a_four_digit_zip_gives_the_three_digits_of_its_lost_zero(tmp_path: Path) -> None:
    records = example_records("case", 1)
    records[0]["zip"] = "2139"
    path = tmp_path / "case.tsv"
    path.write_text(_tsv(records), encoding="utf-8")
    [problem] = validate_files([path])
    assert "leading zero" in problem.message and "'021'" in problem.message and "'213'" not in problem.message


def test_a_report_saved_as_a_web_page_says_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "case.csv"
    path.write_text("<!DOCTYPE html>\n<html><table><tr><td>submitter_id</td></tr></table></html>\n", encoding="utf-8")
    [problem] = validate_files([path])
    assert problem.code == "file_type" and "an HTML page" in problem.message and "CSV UTF-8" in problem.message


def test_a_workbook_named_csv_is_told_to_save_as_csv_not_xlsx(tmp_path: Path) -> None:
    """validate reads no workbook: "save it as .xlsx (it is read as one)", the clinical reader's
    advice, sent a user round to a second refusal."""
    import zipfile

    path = tmp_path / "case.csv"
    with zipfile.ZipFile(path, "w") as workbook:
        workbook.writestr("xl/workbook.xml", "<workbook/>")
    [problem] = validate_files([path])
    assert problem.code == "file_type" and "an Excel workbook (.xlsx)" in problem.message
    assert "save it as CSV UTF-8" in problem.message and ".xlsx or" not in problem.message
