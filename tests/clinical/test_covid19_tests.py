"""Only a COVID-19 test counts as one. A file named "labs", "tests" or "lab results" is read as a test table, and
each of its rows counted toward the case's covid19_positive and its day 0 (the first positive test), and sent
as a SARS-CoV-2 test: a positive influenza test made the patient COVID-19 positive and moved every day offset
of the patient. Now a row counts only when its test name (or LOINC code) names a COVID-19 test; a row of
another test is not sent, with one warning per test name. Through ``radcommons contribute --dry-run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinical_support import DryRun, Radiograph, dry_run, write_csv

LABS = ["MRN", "TestDate", "Test Name", "Result"]


def _run(radiograph: Radiograph, tmp_path: Path, tests: list[list[object]], *, name: str = "labs",
         mapping: str | None = None) -> DryRun:
    """The dry run of the radiograph's patient with the test file ``name`` holding ``tests`` (header first)."""
    folder = tmp_path / "clinical"
    folder.mkdir(parents=True)
    files = [write_csv(folder / "demographics.csv", [["MRN", "Sex"], [radiograph.mrn, "F"]]),
             write_csv(folder / f"{name}.csv", tests)]
    mapping_file = None
    if mapping is not None:
        mapping_file = tmp_path / "mapping.yaml"
        mapping_file.write_text(mapping, encoding="utf-8")
    return dry_run(radiograph, tmp_path / "state", *files, mapping=mapping_file, errors=False)


def _warnings(run: DryRun, code: str) -> list[tuple[Any, ...]]:
    return [(Path(i["file"]).name, i["row"], i["column"], i["value"], i["message"])
            for i in run.report["clinical"]["issues"] if i["code"] == code]


def _tests(run: DryRun) -> list[tuple[str, str, int]]:
    """The measurements sent: (test_name, result, days_to_test)."""
    return sorted((m["test_name"], m["test_result_text"], m["days_to_test"]) for m in run.sampled("measurement"))


def test_an_influenza_positive_is_not_a_covid19_positive(radiograph: Radiograph, tmp_path: Path) -> None:
    """A positive influenza test three days before a negative COVID-19 test made the case covid19_positive
    'Yes', day 0 the influenza test, and was sent as a SARS-CoV-2 test."""
    mrn = radiograph.mrn
    run = _run(radiograph, tmp_path, [LABS, [mrn, "2023-01-05", "Influenza A", "Positive"],
                                      [mrn, "2023-01-08", "SARS-CoV-2 RNA", "Negative"]])
    [case] = run.sampled("case")
    assert case["covid19_positive"] == "No"
    assert _tests(run) == [("SARS-CoV-2 RNA", "Negative", 0)]  # day 0: the COVID-19 test, the first test
    [(file, row, column, value, message)] = _warnings(run, "not_a_covid19_test")
    assert (file, row, column, value) == ("labs.csv", 2, "Test Name", "Influenza A")
    assert "not a COVID-19 test" in message


def test_a_file_of_mixed_tests_sends_its_covid19_tests_alone(radiograph: Radiograph, tmp_path: Path) -> None:
    """Of a lab file of influenza tests, blood counts (a result no test result reads) and COVID-19 tests of
    three spellings, the COVID-19 tests alone are sent and counted; one warning per other test name."""
    mrn = radiograph.mrn
    run = _run(radiograph, tmp_path, [LABS, [mrn, "2023-01-02", "Influenza A", "Positive"],
                                      [mrn, "2023-01-03", "CBC", "12.5"],
                                      [mrn, "2023-01-04", "Influenza A", "Negative"],
                                      [mrn, "2023-01-06", "COVID-19 PCR", "Negative"],
                                      [mrn, "2023-01-09", "2019-nCoV Antigen", "Positive"],
                                      [mrn, "2023-01-11", "Troponin", "Positive"]])
    [case] = run.sampled("case")
    assert case["covid19_positive"] == "Yes"
    assert _tests(run) == [("2019-nCoV Antigen", "Positive", 0), ("COVID-19 PCR", "Negative", -3)]
    assert run.report["clinical"]["records"]["measurement"] == 2
    warned = [(row, value, "2 rows (first: row 2)" in message) for _, row, _, value, message
              in _warnings(run, "not_a_covid19_test")]
    assert warned == [(2, "Influenza A", True), (3, "CBC", False), (7, "Troponin", False)]
    assert not [i for i in run.report["clinical"]["issues"] if i["severity"] == "error"]


def test_the_mapping_file_adds_a_covid19_test_name(radiograph: Radiograph, tmp_path: Path) -> None:
    """A site's name for its COVID-19 test ("Resp Panel 2") counts once the mapping file lists it; an influenza
    test beside it still does not."""
    mrn = radiograph.mrn
    tests = [LABS, [mrn, "2023-01-05", "Influenza B", "Positive"], [mrn, "2023-01-08", "Resp Panel 2", "Negative"]]
    run = _run(radiograph, tmp_path, tests, mapping="covid19_tests: [Resp Panel 2]\n")
    [case] = run.sampled("case")
    assert case["covid19_positive"] == "No"
    assert _tests(run) == [("Resp Panel 2", "Negative", 0)]
    assert [value for _, _, _, value, _ in _warnings(run, "not_a_covid19_test")] == ["Influenza B"]


def test_a_loinc_code_column_tells_the_covid19_tests(radiograph: Radiograph, tmp_path: Path) -> None:
    """A LOINC column was an unknown column (an error); now its code tells a COVID-19 test (94500-6: SARS-CoV-2
    RNA) from another (80382-5: influenza A), and is not sent."""
    mrn = radiograph.mrn
    run = _run(radiograph, tmp_path, [["MRN", "TestDate", "LOINC", "Result"], [mrn, "2023-01-05", "80382-5", "Positive"],
                                      [mrn, "2023-01-08", "94500-6", "Positive"]])
    [case] = run.sampled("case")
    assert case["covid19_positive"] == "Yes"
    assert _tests(run) == [("SARS-CoV-2", "Positive", 0)]
    assert [(row, value) for _, row, _, value, _ in _warnings(run, "not_a_covid19_test")] == [(2, "80382-5")]


def test_a_test_file_without_a_test_name_is_assumed_and_said_once(radiograph: Radiograph, tmp_path: Path) -> None:
    """A "labs" file without a test name column is read as COVID-19 tests, as it was, but now the report says
    so, once; a file whose name says COVID-19 tests needs no such warning."""
    mrn = radiograph.mrn
    tests = [["MRN", "TestDate", "Result"], [mrn, "2023-01-05", "Positive"], [mrn, "2023-01-08", "Negative"]]
    run = _run(radiograph, tmp_path, tests)
    assert run.sampled("case")[0]["covid19_positive"] == "Yes"
    [(file, row, column, _, message)] = _warnings(run, "assumed_covid19_test")
    assert (file, row, column) == ("labs.csv", None, None) and "its 2 row(s)" in message
    assert not _warnings(_run(radiograph, tmp_path / "named", tests, name="covid_tests"), "assumed_covid19_test")
