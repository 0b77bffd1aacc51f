"""Steps 1-3 of a contribution: de-identify, convert, validate, report (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from radcommons.dictionary import validate_records
from radcommons.dictionary.values import looks_like_date
from radcommons.pipelines.contribute import ContributionPlan

SITES = ("site_a", "site_b", "site_c")


@pytest.mark.parametrize("site", SITES)
def test_records_are_valid_and_complete(plans: dict[str, ContributionPlan], site: str) -> None:
    plan = plans[site]
    assert plan.errors == []
    for node, rows in plan.clinical.items():
        assert validate_records(rows, node).problems == (), node
    # Every de-identified study is sent, with its imaging_study record.
    studies = {s.study_uid for s in plan.staged}
    assert {p.study_uid for p in plan.packages} == studies
    assert {r["study_uid"] for r in plan.clinical["imaging_study"]} == studies
    assert plan.held_back == {}


@pytest.mark.parametrize("site", SITES)
def test_case_ids_are_the_patient_ids_of_the_deidentified_images(plans: dict[str, ContributionPlan],
                                                                 site: str) -> None:
    plan = plans[site]
    study_case = {r["study_uid"]: r["case.submitter_id"] for r in plan.clinical["imaging_study"]}
    cases = {r["submitter_id"] for r in plan.clinical["case"]}
    for package in plan.packages:
        for item in package.files:
            ds = pydicom.dcmread(item.path, stop_before_pixels=True)
            assert ds.PatientID == study_case[package.study_uid]
            assert ds.PatientID in cases
            assert ds.StudyInstanceUID == package.study_uid


@pytest.mark.parametrize("site", SITES)
def test_days_to_study_agrees_with_the_images(plans: dict[str, ContributionPlan], site: str) -> None:
    """days_to_study (from real dates) equals the shifted study date minus the shifted index date."""
    plan = plans[site]
    import datetime as dt

    from radcommons.deid import date_offset_days

    for staged in plan.staged:
        record = next(r for r in plan.clinical["imaging_study"] if r["study_uid"] == staged.study_uid)
        shifted = dt.datetime.strptime(staged.study_date, "%Y%m%d").date()
        offset = date_offset_days(plan.request.context.key, plan.request.site, staged.patient_id)
        assert shifted.year == record["study_year"]
        real = shifted - dt.timedelta(days=offset)
        assert record["days_to_study"] is not None
        index = real - dt.timedelta(days=record["days_to_study"])
        # The index event is a real date of this patient's clinical data or images.
        assert index <= real or record["days_to_study"] < 0


def test_nothing_private_is_staged_or_sent(plans: dict[str, ContributionPlan]) -> None:
    for plan in plans.values():
        staging = plan.request.staging.resolve()
        for package in plan.packages:
            for item in package.files:
                assert staging in item.path.resolve().parents
        assert plan.report_markdown is not None and staging not in plan.report_markdown.resolve().parents
        for rows in plan.clinical.values():
            for row in rows:
                for value in row.values():
                    assert not (isinstance(value, str) and looks_like_date(value)), value


def test_report_names_file_row_field_and_fix(corpus: Path, tmp_path: Path) -> None:
    from contribute_support import make_request

    from radcommons.pipelines.contribute import prepare

    plan = prepare(make_request(corpus, "site_a", tmp_path / "state", corrections=True))
    assert plan.errors
    data = json.loads(plan.report_json.read_text())
    issue = next(i for i in data["clinical"]["issues"] if i["code"] == "bad_date")
    assert issue["file"].endswith("demographics_corrections.csv") and issue["row"] == 2
    assert issue["column"] == "DOB" and issue["fix"]
    text = plan.report_markdown.read_text()
    assert "demographics_corrections.csv | 2 | DOB | 2021-02-30" in text
    assert "## What leaves the site" in text
    assert data["deid"]["counts"]["rejected"] >= 3  # truncated, not DICOM, zero bytes
    assert oct(plan.report_json.stat().st_mode & 0o777) == "0o600"


def test_the_report_keeps_each_value_as_read_and_as_sent(plans: dict[str, ContributionPlan]) -> None:
    """The commons gets the dictionary's spelling; the site's own stays in its private report
    (issue 4: enumerations normalised, the raw value kept)."""
    plan = plans["site_b"]  # writes sex F/M, "Unknown/Declined" and "Emergency" visits
    data = json.loads(plan.report_json.read_text())
    read = {(v["field"], v["as_read"]): (v["sent_as"], v["rows"]) for v in data["clinical"]["values"]}
    sexes = [c["sex"] for c in plan.clinical["case"]]
    assert read[("sex", "F")] == ("Female", sexes.count("Female"))
    assert read[("sex", "M")] == ("Male", sexes.count("Male"))
    assert read[("race", "Unknown/Declined")][0] == "Not Reported"
    assert read[("visit_type", "Emergency")][0] == "Emergency Department"
    assert f"| sex | F | Female | {sexes.count('Female')} |" in plan.report_markdown.read_text()
