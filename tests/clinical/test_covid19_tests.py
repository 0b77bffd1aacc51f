"""Only a COVID-19 test counts as one. A file named "labs", "tests" or "lab results" is read as a test table, and
each of its rows counted toward the case's covid19_positive and its day 0 (the first positive test), and sent
as a SARS-CoV-2 test: a positive influenza test made the patient COVID-19 positive and moved every day offset
of the patient. Now a row counts only when its test name (or LOINC code) names a COVID-19 test; a row of
another test is not sent, with one warning per test name. Through ``radcommons contribute --dry-run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clinical_support import DryRun, Radiograph, dry_run, write_csv

from radcommons.clinical.mapping import COMBINED_PANEL, DIAGNOSTIC, SEROLOGY, VACCINATION, load_mapping
from radcommons.errors import UserError

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


def _labs(mrn: str, *tests: tuple[str, str, str]) -> list[list[object]]:
    """A labs file of the patient ``mrn``'s ``tests``: (date, test name, result)."""
    return [LABS, *([mrn, *test] for test in tests)]


def test_an_antibody_test_is_not_a_diagnostic_covid19_test(radiograph: Radiograph, tmp_path: Path) -> None:
    """A positive SARS-CoV-2 IgG (a past infection or a vaccination) before a negative RNA test made the case
    covid19_positive 'Yes', day 0 the serology date (every offset of the patient shifted), and was sent as a
    SARS-CoV-2 test; now antibody tests are not sent nor counted, one warning per name with its count."""
    mrn = radiograph.mrn
    run = _run(radiograph, tmp_path, _labs(mrn, ("2023-01-02", "SARS-CoV-2 IgG", "Positive"),
                                                ("2023-01-03", "COVID-19 Total Antibody", "Positive"),
                                                ("2023-01-08", "SARS-CoV-2 RNA", "Negative"),
                                                ("2023-01-09", "SARS-CoV-2 IgG", "Positive"),
                                                ("2023-01-10", "SARS-CoV-2 Ab", "Reactive")))
    [case] = run.sampled("case")
    assert case["covid19_positive"] == "No"
    assert _tests(run) == [("SARS-CoV-2 RNA", "Negative", 0)]
    warned = _warnings(run, "covid19_serology_test")
    assert [(file, row, column, value) for file, row, column, value, _ in warned] == [
        ("labs.csv", 2, "Test Name", "SARS-CoV-2 IgG"), ("labs.csv", 3, "Test Name", "COVID-19 Total Antibody"),
        ("labs.csv", 6, "Test Name", "SARS-CoV-2 Ab")]
    assert "2 rows (first: row 2)" in warned[0][4] and "past infection or a vaccination" in warned[0][4]
    assert "RT-PCR, antigen" in warned[0][4]
    assert not _warnings(run, "not_a_covid19_test")


def test_antibody_words_are_whole_words(radiograph: Radiograph, tmp_path: Path) -> None:
    """"Ab" is a word of "SARS-CoV-2 Ab", not of "Lab"; an antigen ("Ag", "Antigen") is a diagnostic test; an
    influenza IgG is no COVID-19 test at all."""
    mrn = radiograph.mrn
    tests = _labs(mrn, ("2023-01-02", "SARS-CoV-2 IgM/IgG", "Positive"), ("2023-01-05", "SARS-CoV-2 Ag", "Positive"),
                  ("2023-01-06", "COVID-19 PCR (Outside Lab)", "Positive"),
                  ("2023-01-07", "SARS-CoV-2 Antigen", "Negative"), ("2023-01-08", "Influenza A IgG", "Positive"))
    run = _run(radiograph, tmp_path, tests)
    assert run.sampled("case")[0]["covid19_positive"] == "Yes"
    assert run.report["clinical"]["records"]["measurement"] == 3  # day 0: the antigen test, not the serology
    assert ("SARS-CoV-2 Ag", "Positive", 0) in _tests(run)
    assert [value for _, _, _, value, _ in _warnings(run, "covid19_serology_test")] == ["SARS-CoV-2 IgM/IgG"]
    assert [value for _, _, _, value, _ in _warnings(run, "not_a_covid19_test")] == ["Influenza A IgG"]


def test_an_antibody_loinc_code_is_not_a_diagnostic_test(radiograph: Radiograph, tmp_path: Path) -> None:
    """94563-4 (SARS-CoV-2 IgG Ab) and 94661-6 (SARS-CoV-2 Ab interpretation) were read as COVID-19 tests; a
    code column alone now tells them from the RNA test 94500-6."""
    mrn = radiograph.mrn
    run = _run(radiograph, tmp_path, [["MRN", "TestDate", "LOINC", "Result"],
                                      [mrn, "2023-01-02", "94563-4", "Positive"],
                                      [mrn, "2023-01-03", "94661-6", "Positive"],
                                      [mrn, "2023-01-08", "94500-6", "Negative"]])
    assert run.sampled("case")[0]["covid19_positive"] == "No"
    assert _tests(run) == [("SARS-CoV-2", "Negative", 0)]
    assert [(column, row, value) for _, row, column, value, _ in _warnings(run, "covid19_serology_test")] == [
        ("LOINC", 2, "94563-4"), ("LOINC", 3, "94661-6")]


def test_a_combined_panel_counts_only_when_the_site_names_it(radiograph: Radiograph, tmp_path: Path) -> None:
    """One result of "SARS-CoV-2 + Influenza A/B" may be the influenza's: it made the case COVID-19 positive.
    It is now not read, with a warning, unless the site's mapping file lists the panel's whole name; a SARS-CoV-2
    test of a fluid ("BAL fluid") is no influenza panel."""
    mrn = radiograph.mrn
    tests = _labs(mrn, ("2023-01-02", "SARS-CoV-2 + Influenza A/B", "Positive"),
                       ("2023-01-04", "Flu A/B & COVID-19 PCR", "Positive"),
                       ("2023-01-05", "FLUABCOVID19", "Positive"),  # a flu A/B panel, or a flu antibody
                       ("2023-01-08", "SARS-CoV-2 RNA (BAL fluid)", "Negative"))
    run = _run(radiograph, tmp_path, tests)
    assert run.sampled("case")[0]["covid19_positive"] == "No"
    assert _tests(run) == [("SARS-CoV-2 RNA (BAL fluid)", "Negative", 0)]
    warned = _warnings(run, "combined_covid19_panel")
    assert [(row, value) for _, row, _, value, _ in warned] == [
        (2, "SARS-CoV-2 + Influenza A/B"), (3, "Flu A/B & COVID-19 PCR"), (4, "FLUABCOVID19")]
    assert "covid19_tests: ['SARS-CoV-2 + Influenza A/B']" in run.report["clinical"]["issues"][
        [i["code"] for i in run.report["clinical"]["issues"]].index("combined_covid19_panel")]["fix"]
    named = _run(radiograph, tmp_path / "named", tests, mapping='covid19_tests: ["SARS-CoV-2 + Influenza A/B"]\n')
    assert named.sampled("case")[0]["covid19_positive"] == "Yes"
    assert _tests(named) == [("SARS-CoV-2 + Influenza A/B", "Positive", 0),
                             ("SARS-CoV-2 RNA (BAL fluid)", "Negative", 6)]
    assert [value for _, _, _, value, _ in _warnings(named, "combined_covid19_panel")] == [
        "Flu A/B & COVID-19 PCR", "FLUABCOVID19"]


def test_a_serology_word_without_a_letter_is_refused(tmp_path: Path) -> None:
    """A name of no letter or digit would be in every test name: every COVID-19 test would be serology."""
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text('serology_tests: [Anti-S, "-"]\n', encoding="utf-8")
    with pytest.raises(UserError, match="mapping.yaml: '-' in 'serology_tests' has no letter or digit"):
        load_mapping(mapping)


@pytest.mark.parametrize(("names", "kind"), [
    (["COVID-19", "94563-4"], SEROLOGY),  # the name's last digits ran into the code: "covid19945634"
    (["SARS-CoV-2 94563-4"], SEROLOGY),
    (["Resp Panel 2", "94500-6"], DIAGNOSTIC),  # "...panel294500 6": the code was not found, the test skipped
    (["Other", "194500-67"], None),  # a code inside a longer number is not the code
    (["Other", "94500 6"], DIAGNOSTIC),
    (["SARS 2003 PCR"], None),  # SARS-CoV-1: "sars2" (SARS-2) ran into its year
    (["SARS-CoV 2003 IgG"], None),
    (["Coronavirus SARS/229E"], None),
    (["SARS2 PCR"], DIAGNOSTIC),
])
def test_a_loinc_code_is_found_beside_a_name_that_ends_in_a_digit(names: list[str], kind: str | None) -> None:
    assert load_mapping().covid19_test_kind(names) == kind


def test_a_lab_export_of_many_rows_is_told_apart_once_per_name(tmp_path: Path) -> None:
    """Each row's names were searched for some 50 names and codes: 100k rows of a lab export (a few dozen names)
    took 6 s; each name is now worked out once per mapping, and another mapping (a site's) works it out anew."""
    names = [[f"Analyte {i}"] for i in range(27)] + [["SARS-CoV-2 RNA"], ["SARS-CoV-2 IgG", "94563-4"], ["Analyte 3"]]
    mapping = load_mapping()
    worked_out = []
    work_out = mapping._test_kind
    # the mapping is a frozen dataclass: a spy on its worker is set as dataclasses set their fields
    object.__setattr__(mapping, "_test_kind", lambda *args: worked_out.append(args) or work_out(*args))
    kinds = [mapping.covid19_test_kind(names[row % len(names)]) for row in range(100_000)]
    assert len(worked_out) == len(names) - 1  # "Analyte 3" twice
    assert kinds[26:30] == [None, DIAGNOSTIC, SEROLOGY, None]
    site = tmp_path / "mapping.yaml"
    site.write_text("covid19_tests: [Analyte 3]\n", encoding="utf-8")
    assert load_mapping(site).covid19_test_kind(["Analyte 3"]) == DIAGNOSTIC
    assert mapping.covid19_test_kind(["Analyte 3"]) is None


def test_a_serology_test_method_makes_an_antibody_test(radiograph: Radiograph, tmp_path: Path) -> None:
    """A row named "SARS-CoV-2" whose Test Method column says "Serology" (or IgG) is an antibody test: its method
    ("Serology", no dictionary value) made the row an error, and an "IgG" one under a name that only names the
    virus was read as diagnostic; a row that names no test, its method IgM, is an antibody test too."""
    mrn = radiograph.mrn
    run = _run(radiograph, tmp_path, [["MRN", "TestDate", "Test Name", "Test Method", "Result"],
                                      [mrn, "2023-01-02", "SARS-CoV-2", "Serology", "Positive"],
                                      [mrn, "2023-01-03", "SARS-CoV-2", "IgG", "Positive"],
                                      [mrn, "2023-01-04", "", "IgM", "Positive"],
                                      [mrn, "2023-01-05", "SARS-CoV-2", "PCR", "Negative"],
                                      [mrn, "2023-01-06", "SARS-CoV-2 Antibody", "Lateral flow", "Positive"]])
    assert run.sampled("case")[0]["covid19_positive"] == "No"
    assert _tests(run) == [("SARS-CoV-2", "Negative", 0)]
    warned = _warnings(run, "covid19_serology_test")
    # the method that made it an antibody test is pointed at (it pointed at the name, its value "name / method")
    assert [(row, column, value) for _, row, column, value, _ in warned] == [
        (2, "Test Method", "Serology"), (3, "Test Method", "IgG"), (4, "Test Method", "IgM"),
        (6, "Test Name", "SARS-CoV-2 Antibody")]
    assert "row 2 of test 'SARS-CoV-2' (test method 'Serology') is not read" in warned[0][4]
    assert "row 4 of test 'IgM' is not read" in warned[2][4]
    assert not _warnings(run, "assumed_covid19_test")
    assert not [i for i in run.report["clinical"]["issues"] if i["severity"] == "error"]


def test_a_covid19_vaccination_is_not_a_test(radiograph: Radiograph, tmp_path: Path) -> None:
    """An immunization row ("COVID-19 Vaccine", "SARS-CoV-2 vaccine dose 1") in a lab export was read as a COVID-19
    test: its result ("Given", "Completed") an error, or a "Positive" (given) made the case covid19_positive."""
    mrn = radiograph.mrn
    run = _run(radiograph, tmp_path, _labs(mrn, ("2023-01-02", "COVID-19 Vaccine", "Positive"),
                                                ("2023-01-03", "SARS-CoV-2 vaccine dose 1", "Completed"),
                                                ("2023-01-04", "COVID-19 Immunization", "Given"),
                                                ("2023-01-08", "SARS-CoV-2 RNA", "Negative")))
    assert run.sampled("case")[0]["covid19_positive"] == "No"
    assert _tests(run) == [("SARS-CoV-2 RNA", "Negative", 0)]
    warned = _warnings(run, "covid19_vaccination")
    assert [(row, value) for _, row, _, value, _ in warned] == [
        (2, "COVID-19 Vaccine"), (3, "SARS-CoV-2 vaccine dose 1"), (4, "COVID-19 Immunization")]
    assert "a COVID-19 vaccination (immunization), not a test" in warned[0][4]
    assert not [i for i in run.report["clinical"]["issues"] if i["severity"] == "error"]


@pytest.mark.parametrize(("name", "kind"), [
    ("SARSCOV2PCR", DIAGNOSTIC), ("COVID19PCR", DIAGNOSTIC), ("Covid19Ag", DIAGNOSTIC), ("SARSCoV2RNA", DIAGNOSTIC),
    # a glued antibody test, panel or vaccination was read as a diagnostic test: its words were one word
    ("SARSCOV2IGG", SEROLOGY), ("COVID19AB", SEROLOGY), ("CovidIgG", SEROLOGY), ("SARS-CoV-2IgM", SEROLOGY),
    ("COVID19IgMIgG", SEROLOGY), ("COVID19FLUPCR", COMBINED_PANEL), ("Covid19RSVFluPCR", COMBINED_PANEL),
    ("COVID19VACCINE", VACCINATION),
    ("COVID19Abbott", DIAGNOSTIC),  # a glued run of other words is left whole: "Abbott" is no "Ab"
    ("SARS-CoV-2 ORF 1ab", DIAGNOSTIC), ("SARS-CoV-2 ORF1ab", DIAGNOSTIC),  # a gene, not an "Ab"
    ("Flu12AB", None),  # no SARS-CoV-2 name: no COVID-19 test, glued or not
    # the other word glued before the SARS-CoV-2 name was not read either
    ("IGGCOVID19", SEROLOGY), ("IgMSARSCoV2", SEROLOGY), ("ABCOVID", SEROLOGY), ("IgGIgMCOVID", SEROLOGY),
    ("VACCINECOVID19", VACCINATION), ("RSVCOVID19PCR", COMBINED_PANEL), ("PCRCOVID19", DIAGNOSTIC),
    ("LABCOVID19", DIAGNOSTIC),  # "Lab" is no "Ab"
    # "FLUAB": a flu A/B panel or a flu antibody, neither diagnostic: read as the panel
    ("FLUABCOVID19", COMBINED_PANEL), ("COVID19FLUAB", COMBINED_PANEL), ("FLUAB COVID-19", COMBINED_PANEL),
    ("COVID-19 IGGIGM", SEROLOGY),  # a glued word beside the name
])
def test_a_name_run_together_is_read_as_its_words(name: str, kind: str | None) -> None:
    assert load_mapping().covid19_test_kind([name]) == kind


@pytest.mark.parametrize(("name", "kind"), [
    ("nCoV-2019", DIAGNOSTIC), ("nCoV 2019 RNA", DIAGNOSTIC), ("2019-nCoV", DIAGNOSTIC), ("SARS2 PCR", DIAGNOSTIC),
    ("SARS-2", DIAGNOSTIC), ("SARS 2 Ag", DIAGNOSTIC), ("SARS CoV 2", DIAGNOSTIC), ("SARS2IGG", SEROLOGY),
    # "nCoV" alone is no name of it: it is in "uncovered"
    ("Uncovered wound culture", None), ("nCoV", None),
])
def test_spaced_and_hyphenated_names_of_sars_cov_2(name: str, kind: str | None) -> None:
    """"nCoV-2019", "SARS2 PCR" and "SARS-2" were not COVID-19 tests: not sent, nor counted."""
    assert load_mapping().covid19_test_kind([name]) == kind
