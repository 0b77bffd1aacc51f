"""Project scoping: a caller's projects bound every table a query touches, links included."""

from __future__ import annotations

from typing import Any

from radcommons.store.query import count, export_manifest, facets, freeze, query
from radcommons.store.query.manifest import manifest_rows

from .conftest import OPEN, Commons

#: Cases with an RT-PCR positive within 7 days of one of their CT studies (no age or scanner rule).
PCR_NEAR_CT: dict[str, Any] = {"exists": {"node": "imaging_study", "as": "ct", "filter": {"and": [
    {"contains": {"study_modality": "CT"}},
    {"exists": {"node": "measurement", "filter": {"and": [
        {"=": {"test_method": "RT-PCR"}}, {"=": {"test_result_text": "Positive"}},
        {"within": {"days_to_test": {"ref": "ct.days_to_study", "by": 7}}}]}}}]}}}


def names(commons: Commons, node: str, filter: Any, projects: Any) -> list[str]:
    page = query(commons.engine, node, filter, fields=["submitter_id"], sort=[("submitter_id", "asc")],
                 limit=1000, projects=projects)
    return [row["submitter_id"] for row in page.rows]


def test_projects_bound_the_queried_node(commons: Commons) -> None:
    assert names(commons, "case", None, OPEN) == ["A1", "A2", "A3", "A4", "B1"]
    assert names(commons, "case", None, ["seq-c"]) == ["C1"]
    assert names(commons, "case", None, []) == []
    assert count(commons.engine, "case", None, projects=[]) == 0


def test_a_sequestered_record_never_makes_a_linked_filter_match(commons: Commons) -> None:
    # A2's only test within 7 days of its CT is a sequestered record (project seq-c).
    assert names(commons, "case", PCR_NEAR_CT, None) == ["A1", "A2", "A3", "C1"]
    assert names(commons, "case", PCR_NEAR_CT, OPEN) == ["A1", "A3"]
    assert names(commons, "case", {"=": {"measurement.submitter_id": "A2-m-seq"}}, OPEN) == []
    assert names(commons, "case", {"not": {"exists": {"node": "measurement", "filter": {"=": {"days_to_test": 2}}}}},
                 OPEN) == ["A1", "A2", "A3", "A4"]  # B1 has its own day-2 test; A2's is invisible


def test_upward_links_and_output_columns_are_scoped_too(commons: Commons) -> None:
    # A series in open-a whose case would be in seq-c must not see the case's values.
    assert names(commons, "series", {"=": {"case.submitter_id": "C1"}}, OPEN) == []
    page = query(commons.engine, "measurement", {"=": {"submitter_id": "A2-m-seq"}},
                 fields=["submitter_id", "case.submitter_id"], projects=["seq-c"])
    assert page.rows == [{"submitter_id": "A2-m-seq", "case.submitter_id": None}]  # A2 is open-a: hidden


def test_facets_manifests_and_cohorts_are_scoped(commons: Commons) -> None:
    sex = dict(facets(commons.engine, "case", None, ["sex"], projects=["seq-c"])["sex"])
    assert sex == {"Female": 1}
    rows = [r for batch in manifest_rows(commons.engine, "case", None, projects=["open-b"]) for r in batch]
    assert {r["case_submitter_id"] for r in rows} == {"B1"} and len(rows) == 2
    assert b"C1" not in b"".join(export_manifest(commons.engine, "case", None, projects=OPEN))
    cohort = freeze(commons.engine, node="case", filter=PCR_NEAR_CT, name="pcr", owner="r", projects=OPEN)
    assert cohort.member_count == 2 and cohort.projects == OPEN
