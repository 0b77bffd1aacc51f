"""A "No" (or a default) is a statement about the patient: it is sent only where the site's files could have
said otherwise. A visit file without an ICU column says nothing about intensive care, a visit nothing about
ventilation, a procedure of no stated kind is no known breathing support, a test of unknown result may have
been positive, and a code in a column named "code" is not known to be ICD-10-CM. Through ``radcommons
contribute --dry-run``, whose sample shows each case (two patients a run: the radiograph's, and one without
images, which is a warning only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinical_support import KEY, Radiograph, dry_run, write_csv

from radcommons.deid import patient_pseudonym

OTHER = "7777777"  #: the patient without images (its day 0: its test)
DEMOGRAPHICS = ["MRN", "Sex"]
OTHER_TEST = [["MRN", "TestDate", "Result"], [OTHER, "2023-01-08", "Positive"]]


def _sent(radiograph: Radiograph, tmp_path: Path, files: dict[str, list[list[object]]]) -> dict[str, Any]:
    """The dry run's records of ``files`` (name -> rows), by node and then by MRN (their cases') or by the
    record's submitter_id."""
    folder = tmp_path / "clinical"
    folder.mkdir()
    paths = [write_csv(folder / f"{name}.csv", rows) for name, rows in files.items()]
    run = dry_run(radiograph, tmp_path / "state", *paths, errors=False)
    mrns = {patient_pseudonym(KEY, "S", mrn): mrn for mrn in (radiograph.mrn, OTHER)}
    cases = {mrns[c["submitter_id"]]: c for c in run.sampled("case")}
    assert len(cases) == 2, run.stdout
    return {"case": cases, **{node: {mrns[r["case.submitter_id"]]: r for r in run.sampled(node)}
                              for node in ("procedure", "condition") if f"\n{node} (sample of " in run.stdout}}


def _indicators(cases: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {mrn: (case["icu_indicator"], case["ventilator_indicator"]) for mrn, case in cases.items()}


def test_files_without_the_column_that_could_say_yes_give_not_reported(radiograph: Radiograph, tmp_path: Path) -> None:
    """Visits with no ICU column and breathing support with no kind of support: both patients were sent
    icu_indicator and ventilator_indicator 'No' (the one with a visit only too: a visit says nothing of
    ventilation), and the support row as procedure_type 'Breathing Support' (a 'procedures' file may hold
    any procedure)."""
    mrn = radiograph.mrn
    sent = _sent(radiograph, tmp_path, {
        "demographics": [DEMOGRAPHICS, [mrn, "F"], [OTHER, "M"]],
        "covid_tests": OTHER_TEST,
        "encounters": [["MRN", "EncounterType", "AdmitDate"], [mrn, "Inpatient", "2023-01-09"],
                       [OTHER, "Inpatient", "2023-01-09"]],
        "procedures": [["MRN", "StartDate"], [mrn, "2023-01-10"]],
    })
    assert _indicators(sent["case"]) == {mrn: ("Not Reported", "Not Reported"),
                                         OTHER: ("Not Reported", "Not Reported")}
    procedure = sent["procedure"][mrn]
    assert (procedure["procedure_type"], procedure["breathing_support_type"]) == ("Not Reported", "Not Reported")


def test_a_no_is_sent_where_the_files_could_have_said_yes(radiograph: Radiograph, tmp_path: Path) -> None:
    """With an ICU column and a kind of support column, a visit without an ICU date is an ICU 'No', and a
    patient the breathing support file does not list was not ventilated. But a visit of type ICU was sent
    icu_indicator 'No' (only an ICU date said Yes), and a support of no stated kind (its cell blank)
    ventilator_indicator 'No', though it may have been a ventilation."""
    mrn = radiograph.mrn
    sent = _sent(radiograph, tmp_path, {
        "demographics": [DEMOGRAPHICS, [mrn, "F"], [OTHER, "M"]],
        "covid_tests": OTHER_TEST,
        "encounters": [["MRN", "EncounterType", "AdmitDate", "ICUAdmitDate"], [mrn, "Inpatient", "2023-01-09", ""],
                       [OTHER, "ICU", "2023-01-09", ""]],
        "breathing_support": [["MRN", "StartDate", "SupportType"], [mrn, "2023-01-10", ""],
                              [mrn, "2023-01-11", "Oxygen"]],
    })
    assert _indicators(sent["case"]) == {mrn: ("No", "Not Reported"), OTHER: ("Yes", "No")}


def test_unknown_test_results_and_codes_of_another_system_are_not_stated(radiograph: Radiograph,
                                                                         tmp_path: Path) -> None:
    """A negative test and one of unknown result were sent covid19_positive 'No'; a condition code 486
    (ICD-9-CM's pneumonia), which the code check accepts, was sent as an ICD-10-CM code."""
    mrn = radiograph.mrn
    sent = _sent(radiograph, tmp_path, {
        "demographics": [DEMOGRAPHICS, [mrn, "F"], [OTHER, "M"]],
        "covid_tests": [["MRN", "TestDate", "Result"], [mrn, "2023-01-08", "Negative"], [mrn, "2023-01-09", "Unknown"],
                        [OTHER, "2023-01-08", "Negative"]],
        "conditions": [["MRN", "Code", "Condition"], [mrn, "486", "Pneumonia"], [OTHER, "U07.1", "COVID-19"]],
    })
    assert {m: c["covid19_positive"] for m, c in sent["case"].items()} == {mrn: "Not Reported", OTHER: "No"}
    assert {m: c.get("condition_code_system") for m, c in sent["condition"].items()} == {
        mrn: "Not Reported", OTHER: "ICD-10-CM"}


def test_a_test_row_not_read_of_unknown_result_gives_no_covid_no(radiograph: Radiograph, tmp_path: Path) -> None:
    """Counted from its study, a case with a negative test and a row not read (its date impossible) of
    unknown result was sent covid19_positive 'No': read, that row makes it 'Not Reported' (above), and so it
    does not read."""
    mrn = radiograph.mrn
    folder = tmp_path / "clinical"
    folder.mkdir()
    files = [write_csv(folder / "demographics.csv", [DEMOGRAPHICS, [mrn, "F"]]),
             write_csv(folder / "covid_tests.csv", [["MRN", "TestDate", "Result"], [mrn, "2023-01-08", "Negative"],
                                                    [mrn, "2023-02-30", "Unknown"]])]
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("index_event: [first_imaging_study]\n", encoding="utf-8")
    run = dry_run(radiograph, tmp_path / "state", *files, mapping=mapping, partial=True)
    assert [i["row"] for i in run.report["clinical"]["issues"] if i["severity"] == "error"] == [3]
    [case] = run.sampled("case")
    assert case["covid19_positive"] == "Not Reported"
