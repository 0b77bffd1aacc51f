"""Filters against a hand-built commons, on SQLite and PostgreSQL (see conftest for the records)."""

from __future__ import annotations

from typing import Any

import pytest

from radcommons.store.query import count, query

from .conftest import COVID_CT_COHORT, Commons


def ids(commons: Commons, node: str, filter: Any, **kwargs: Any) -> list[str]:
    page = query(commons.engine, node, filter, fields=["submitter_id"], sort=[("submitter_id", "asc")],
                 limit=1000, **kwargs)
    found = [row["submitter_id"] for row in page.rows]
    assert count(commons.engine, node, filter, **kwargs) == len(found)
    return found


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"=": {"sex": "Female"}}, ["A1", "A3", "B1", "C1"]),
        ({"!=": {"sex": "Female"}}, ["A2"]),  # set and different: A4 (missing) is not in
        ({"not": {"=": {"sex": "Female"}}}, ["A2", "A4"]),  # does not match: missing is in
        ({"<": {"age_at_index": 55}}, ["A3", "C1"]),
        ({"<=": {"age_at_index": 55}}, ["A1", "A3", "C1"]),
        ({">": {"age_at_index": 60}}, ["B1"]),
        ({">=": {"age_at_index": 60}}, ["A2", "B1"]),
        ({"in": {"submitter_id": ["A1", "B1", "nobody"]}}, ["A1", "B1"]),
        ({"in": {"sex": []}}, []),
        ({"is_null": "age_at_index"}, ["A4"]),
        ({"not_null": "sex"}, ["A1", "A2", "A3", "B1", "C1"]),
        ({"=": {"project_id": "open-b"}}, ["B1"]),
        ({"within": {"age_at_index": {"value": 52, "by": 3}}}, ["A1", "C1"]),
    ],
)
def test_each_operator(commons: Commons, filter: dict[str, Any], expected: list[str]) -> None:
    assert ids(commons, "case", filter) == expected


def test_nested_and_or_not(commons: Commons) -> None:
    filter = {"and": [
        {"or": [{"=": {"sex": "Male"}}, {">=": {"age_at_index": 60}}]},
        {"not": {"=": {"project_id": "open-b"}}},
    ]}
    assert ids(commons, "case", filter) == ["A2"]
    assert ids(commons, "case", {"or": [{"is_null": "sex"}, {"and": [{"=": {"sex": "Female"}},
                                                                     {"<": {"age_at_index": 50}}]}]}) == ["A3", "A4"]
    assert ids(commons, "case", {"not": {"not": {"=": {"sex": "Male"}}}}) == ["A2"]


def test_contains_on_list_columns(commons: Commons) -> None:
    assert ids(commons, "imaging_study", {"contains": {"study_modality": "CR"}}) == ["A4-st1", "B1-st1"]
    assert ids(commons, "imaging_study", {"contains": {"study_modality": ["CT", "CR"]}}) == ["B1-st1"]
    assert ids(commons, "imaging_study", {"not": {"contains": {"study_modality": "CT"}}}) == ["A4-st1"]


def test_linked_filters_downward(commons: Commons) -> None:
    assert ids(commons, "case", {"=": {"series.manufacturer": "SIEMENS"}}) == ["A1", "A3", "B1", "C1"]
    assert ids(commons, "case", {"=": {"measurement.test_result_text": "Negative"}}) == ["B1"]
    # The same series must be CR and Agfa (exists) ...
    same = {"exists": {"node": "series", "filter": {"and": [{"=": {"modality": "CT"}}, {"=": {"manufacturer": "Agfa"}}]}}}
    assert ids(commons, "case", same) == []
    # ... while two dotted conditions may hold on different series.
    apart = {"and": [{"=": {"series.modality": "CT"}}, {"=": {"series.manufacturer": "Agfa"}}]}
    assert ids(commons, "case", apart) == ["B1"]
    assert ids(commons, "case", {"not": {"exists": {"node": "imaging_study"}}}) == []
    assert ids(commons, "case", {"not": {"exists": {"node": "measurement"}}}) == ["A4"]


def test_linked_filters_upward_and_sideways(commons: Commons) -> None:
    assert ids(commons, "series", {"and": [{"=": {"case.sex": "Female"}}, {"=": {"modality": "CR"}}]}) == ["B1-st1-s2"]
    assert len(ids(commons, "instance", {"=": {"case.submitter_id": "A1"}})) == 2
    assert ids(commons, "imaging_study", {"=": {"measurement.test_result_text": "Negative"}}) == ["B1-st1"]
    assert ids(commons, "series", {"=": {"project.availability": "sequestered"}}) == ["C1-st1-s1"]


def test_rt_pcr_within_7_days_of_a_ct_in_age_50_64_on_siemens(commons: Commons) -> None:
    # A1: test 4 days after its CT. A2: GE scanner and 20 days (its day-2 test is sequestered).
    # A3: too young. B1: only an antigen test is positive. C1: sequestered.
    assert ids(commons, "case", COVID_CT_COHORT) == ["A1", "C1"]
    assert ids(commons, "case", COVID_CT_COHORT, projects=["open-a", "open-b"]) == ["A1"]


def test_reference_offsets_compare_columns_of_two_records(commons: Commons) -> None:
    # Tests at least 10 days after some study of the same case: A2 (day 20 vs day 0).
    later = {"exists": {"node": "imaging_study", "as": "st", "filter": {
        "exists": {"node": "measurement", "filter": {">=": {"days_to_test": {"ref": "st.days_to_study", "offset": 10}}}}}}}
    assert ids(commons, "case", later, projects=["open-a", "open-b"]) == ["A2"]
