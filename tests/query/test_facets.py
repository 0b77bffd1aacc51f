"""Facet counts: values, parents' values, lists, bins, the missing bucket, small-cell suppression."""

from __future__ import annotations

import pytest

from radcommons.errors import UserError
from radcommons.store.query import AGE_BINS, Bucket, facets
from radcommons.store.query.facets import bin_labels, suppress, suppressed_count

from .conftest import OPEN, Commons


def test_values_by_count_with_missing_last(commons: Commons) -> None:
    result = facets(commons.engine, "case", None, ["sex", "covid19_positive"])
    assert result["sex"] == [Bucket("Female", 4), Bucket("Male", 1), Bucket(None, 1)]
    assert result["covid19_positive"] == [Bucket("Yes", 4), Bucket("No", 1), Bucket("Not Reported", 1)]
    assert facets(commons.engine, "case", None, ["sex"], missing=False)["sex"][-1] == Bucket("Male", 1)
    assert facets(commons.engine, "case", None, ["sex"], top=1)["sex"] == [Bucket("Female", 4), Bucket(None, 1)]


def test_facets_follow_the_filter_and_parent_fields(commons: Commons) -> None:
    result = facets(commons.engine, "series", {"=": {"modality": "CT"}}, ["manufacturer", "case.sex"], projects=OPEN)
    assert result["manufacturer"] == [Bucket("SIEMENS", 3), Bucket("GE MEDICAL SYSTEMS", 1)]
    assert result["case.sex"] == [Bucket("Female", 3), Bucket("Male", 1)]  # series counted, not cases


def test_numeric_bins(commons: Commons) -> None:
    result = facets(commons.engine, "case", None, ["age_at_index"], bins={"age_at_index": AGE_BINS})
    assert result["age_at_index"] == [
        Bucket("0-17", 0), Bucket("18-29", 0), Bucket("30-39", 0), Bucket("40-49", 1), Bucket("50-64", 4),
        Bucket("65-74", 0), Bucket("75-84", 0), Bucket("85-89", 0), Bucket("90+", 0), Bucket(None, 1)]
    result = facets(commons.engine, "measurement", None, ["days_to_test"], bins={"days_to_test": [5, 10]})
    assert result["days_to_test"] == [Bucket("<5", 4), Bucket("5-9", 1), Bucket("10+", 2)]
    assert bin_labels([0, 0.5, 2], integer=False) == ["0-<0.5", "0.5-<2", "2+"]
    with pytest.raises(UserError, match="ascending"):
        facets(commons.engine, "case", None, ["age_at_index"], bins={"age_at_index": [10, 5]})
    with pytest.raises(UserError, match="not numeric"):
        facets(commons.engine, "case", None, ["sex"], bins={"sex": [1, 2]})


def test_list_fields_count_each_element(commons: Commons) -> None:
    result = facets(commons.engine, "imaging_study", None, ["study_modality"])
    assert result["study_modality"] == [Bucket("CT", 5), Bucket("CR", 2)]


def test_small_cells_are_suppressed(commons: Commons) -> None:
    result = facets(commons.engine, "case", None, ["sex", "age_at_index"], bins={"age_at_index": [0, 50, 90]},
                    min_count=2)
    # Male (1) and missing (1) are hidden; Female (4) stays.
    assert result["sex"] == [Bucket("Female", 4), Bucket("Male", None), Bucket(None, None)]
    # 0-49 (1) is the only small cell: the next smallest (missing, 1) is hidden with it; zeros stay.
    assert result["age_at_index"] == [Bucket("0-49", None), Bucket("50-89", 4), Bucket("90+", 0), Bucket(None, None)]
    assert suppress([Bucket("a", 50), Bucket("b", 3), Bucket("c", 20)], 10) == [
        Bucket("a", 50), Bucket("b", None), Bucket("c", None)]
    assert suppressed_count(7, 10) is None and suppressed_count(0, 10) == 0 and suppressed_count(12, 10) == 12


def test_aggregate_only_counts_name_no_record_and_no_small_free_value(commons: Commons) -> None:
    """Suppressed cells still listed their values: a facet on submitter_id listed every pseudonym,
    and a filter on one pseudonym gave that patient's age and sex, each with count None."""
    with pytest.raises(UserError, match="submitter_id identifies single records"):
        facets(commons.engine, "case", None, ["submitter_id"], min_count=2)
    with pytest.raises(UserError, match="study_uid identifies single records"):
        facets(commons.engine, "series", {"exists": {"node": "imaging_study", "filter": {"=": {"study_uid": "1.2.3"}}}},
               ["modality"], min_count=2)
    with pytest.raises(UserError, match="identif"):
        facets(commons.engine, "case", {"not": {"in": {"submitter_id": ["a"]}}}, ["sex"], min_count=2)
    result = facets(commons.engine, "case", None, ["sex", "age_at_index"], min_count=2)
    assert Bucket("Male", None) in result["sex"]  # an enumeration's values are public
    assert all(b.count is not None or b.value is None for b in result["age_at_index"]), result["age_at_index"]
    assert facets(commons.engine, "case", None, ["submitter_id"])  # full readers: as before


def test_unknown_fields_are_user_errors(commons: Commons) -> None:
    with pytest.raises(UserError, match="did you mean 'modality'"):
        facets(commons.engine, "series", None, ["modalty"])
    with pytest.raises(UserError, match="many series"):
        facets(commons.engine, "case", None, ["series.modality"])
