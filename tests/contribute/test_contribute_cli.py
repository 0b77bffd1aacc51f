"""``radcommons contribute`` as a site runs it: dry run, and clear messages for bad input (no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from contribute_support import radiograph_study


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "radcommons", "contribute", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


@pytest.mark.slow
def test_dry_run_shows_what_would_leave(corpus: Path, key_file: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = run(str(corpus / "site_a"), "--clinical", str(corpus / "site_a" / "clinical" / "demographics.csv"),
                 "--clinical", str(corpus / "site_a" / "clinical" / "covid_tests.csv"),
                 "--clinical", str(corpus / "site_a" / "clinical" / "encounters.csv"),
                 "--site", "SITE_A", "--project", "Open-T1", "--key-file", str(key_file), "--state-dir", str(state),
                 "--dry-run", "--workers", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "what would leave the site" in out and "dry run" in out and "nothing was sent" in out
    assert "case records" in out and "imaging_study records" in out and "study 2.25." in out
    assert "withheld" in out and "rejected" in out  # the deid table with reasons
    assert "Traceback" not in result.stderr
    reports = sorted((state / "reports").glob("contribute-*.json"))
    assert reports and json.loads(reports[-1].read_text())["leaving"]["studies"] > 0
    assert any((state / "staging").rglob("*.dcm"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/src"], "the source /nonexistent/src does not exist"),
        (["SRC", "--dry-run", "--clinical", "/nonexistent/c.csv"], "clinical file /nonexistent/c.csv not found"),
        (["SRC", "--token-file", "/nonexistent/token", "--server", "http://127.0.0.1:9"], "token file"),
        (["SRC", "--server", "http://127.0.0.1:9"], "--token-file is required"),
        (["SRC", "--token-file", "TOKEN", "--server", "http://127.0.0.1:9"], "did not answer"),
        (["SRC", "--token-file", "FOLDER", "--server", "http://127.0.0.1:9"],
         "a folder, not a regular file: nothing was read from it hint: give the path of the file that holds the "
         "token, not of a folder"),
        (["SRC", "--token-file", "BEARER", "--server", "http://127.0.0.1:9"],
         "starts with 'Bearer ' hint: write the token alone into it, without 'Bearer '"),
        (["SRC", "--dry-run", "--mapping", "/nonexistent/m.yaml"], "mapping file /nonexistent/m.yaml not found"),
    ],
)
def test_bad_input_is_explained(corpus: Path, key_file: Path, tmp_path: Path, args: list[str], message: str) -> None:
    token = tmp_path / "token"
    token.write_text("rc_test\n")
    bearer = tmp_path / "bearer.token"
    bearer.write_text("Bearer rc_test\n")  # copied with the header's scheme
    named = {"SRC": corpus / "site_a", "TOKEN": token, "FOLDER": tmp_path, "BEARER": bearer}
    args = [str(named.get(a, a)) for a in args]
    result = run(*args, "--site", "SITE_A", "--project", "P", "--key-file", str(key_file),
                 "--state-dir", str(tmp_path / "state"), "--workers", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_unmapped_sheet_is_an_error_with_the_fix(corpus: Path, key_file: Path, tmp_path: Path) -> None:
    odd = tmp_path / "lab_notes.csv"
    odd.write_text("MRN,Note\n1,hello\n")
    source = radiograph_study(corpus)  # the images are not what is checked: a study without OCR
    result = run(str(source), "--clinical", str(odd), "--site", "SITE_A", "--project", "P",
                 "--key-file", str(key_file), "--state-dir", str(tmp_path / "state"), "--dry-run", "--workers", "1")
    assert result.returncode == 1, result.stderr  # as a real run would: it sends nothing with an error
    text = " ".join(result.stdout.split())
    assert "a real run would send nothing" in text and "(with --allow-partial)" in text
    assert "cannot tell what the file 'lab_notes' holds" in text
    assert "tables:" in text


@pytest.mark.slow
def test_a_blank_required_cell_or_a_short_row_is_a_row_error(corpus: Path, key_file: Path, tmp_path: Path) -> None:
    """A blank test result, test date, admission date... raised KeyError: 'internal error', rc 3."""
    clinical = tmp_path / "clinical"
    clinical.mkdir()
    (clinical / "demographics.csv").write_text("MRN,DOB,Sex\nM1001,1950-01-01,F\nM1002,1960-01-01,M\n")
    (clinical / "covid_tests.csv").write_text("MRN,TestDate,Result\nM1001,2021-03-01,\nM1001,,Positive\n"
                                              "M1002,2021-03-02,Positive\nM1002,2021-03-03\n")
    (clinical / "encounters.csv").write_text("MRN,AdmitDate,VisitType\nM1001,,Inpatient\n")
    (clinical / "conditions.csv").write_text("MRN,Condition\nM1002,\n")
    (clinical / "medications.csv").write_text("MRN,Medication\nM1002,  \n")
    (clinical / "breathing_support.csv").write_text("MRN,StartDate,Type\nM1002,,Mechanical Ventilation\n")
    state = tmp_path / "state"
    source = radiograph_study(corpus)  # the images are not what is checked: a study without OCR
    result = run(str(source), "--clinical", str(clinical), "--site", "SITE_A",
                 "--project", "Open-A1", "--key-file", str(key_file), "--state-dir", str(state), "--dry-run",
                 "--workers", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stdout + result.stderr
    report = json.loads(next((state / "reports").glob("contribute-*.json")).read_text())
    blank = {(Path(i["file"]).name, i["row"], i["column"]): i for i in report["clinical"]["issues"]
             if i["code"] == "required"}
    assert set(blank) == {("covid_tests.csv", 2, "Result"), ("covid_tests.csv", 3, "TestDate"),
                          ("covid_tests.csv", 5, "Result"), ("encounters.csv", 2, "AdmitDate"),
                          ("conditions.csv", 2, "Condition"), ("medications.csv", 2, "Medication"),
                          ("breathing_support.csv", 2, "StartDate")}, sorted(blank)
    issue = blank[("covid_tests.csv", 3, "TestDate")]
    assert issue["message"] == "TestDate is blank" and issue["fix"] == "fill it in or remove the row"


@pytest.mark.slow
def test_a_sheet_that_would_be_misread_is_shown_as_its_error_and_an_ignored_one_is_not(
        corpus: Path, key_file: Path, tmp_path: Path) -> None:
    """A notes sheet ("Notes", then "Exported by | Data team") stopped the whole workbook with
    'row 2 looks like the header'; a tests sheet under a title does, as an error of that sheet."""
    from openpyxl import Workbook

    book = Workbook()
    demographics = book.active
    demographics.title = "Demographics"
    demographics.append(["MRN", "DOB", "Sex"])
    demographics.append(["M1001", "1950-01-01", "F"])
    tests = book.create_sheet("Covid Tests")
    for row in (["Covid tests, March 2021"], [], ["MRN", "TestDate", "Result"], ["M1001", "2021-03-01", "Positive"]):
        tests.append(row)
    notes = book.create_sheet("Notes")
    notes.append(["Notes"])
    notes.append(["Exported by", "Data team"])
    book.save(tmp_path / "clinical.xlsx")
    (tmp_path / "mapping.yaml").write_text("tables: {Notes: ignore}\n", encoding="utf-8")
    state = tmp_path / "state"
    result = run(str(radiograph_study(corpus)), "--clinical", str(tmp_path / "clinical.xlsx"), "--mapping",
                 str(tmp_path / "mapping.yaml"), "--site", "SITE_A", "--project", "Open-A1", "--key-file",
                 str(key_file), "--state-dir", str(state), "--dry-run", "--workers", "1")
    assert result.returncode == 1, result.stdout + result.stderr  # an error: a real run would send nothing
    assert "Traceback" not in result.stderr and "looks like the header" not in result.stderr
    shown = {(row[0], row[1]): row[5:] for row in _table_rows(result.stdout, "clinical data issues")}
    problem, fix = shown[("error", str(tmp_path / "clinical.xlsx [Covid Tests]"))]
    assert problem == ("the header (the first row) is not the columns' names: row 3 looks like the header (MRN, "
                       "TestDate, Result); none of the sheet's rows is read")
    assert fix.startswith("delete the rows above row 3 (a title, blank rows)")
    assert shown[("note", str(tmp_path / "clinical.xlsx [Notes]"))][0] == "table 'Notes' is ignored (mapping: ignore)"
    report = json.loads(next((state / "reports").glob("contribute-*.json")).read_text())
    assert [(i["code"], i["file"]) for i in report["clinical"]["issues"] if "xlsx" in (i["file"] or "")][:2] == [
        ("sheet_not_read", str(tmp_path / "clinical.xlsx [Covid Tests]")),
        ("ignored_table", str(tmp_path / "clinical.xlsx [Notes]"))]


def _table_rows(stdout: str, title: str) -> list[list[str]]:
    """The rows of the table ``title`` as the terminal shows it, each cell's wrapped lines joined: a
    path folded inside a word, text between words."""
    lines = stdout[stdout.index(title):].splitlines()
    rows: list[list[list[str]]] = []
    for line in lines[4:]:
        if not line.startswith("│"):
            break
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells[0]:
            rows.append([[] for _ in cells])
        for parts, cell in zip(rows[-1], cells):
            if cell:
                parts.append(cell)
    return [["".join(parts) if index == 1 else " ".join(parts) for index, parts in enumerate(row)] for row in rows]
