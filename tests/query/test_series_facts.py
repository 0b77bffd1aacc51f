"""series_facts answers series facets exactly as the node tables do, within the caller's projects."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update

from radcommons.store.index import node_tables
from radcommons.store.index.facts import fact_columns, facts_table, refresh_series_facts
from radcommons.store.query import AGE_BINS, Bucket, facets

from .conftest import OPEN, Commons

FIELDS = [fact.field for fact in fact_columns()]
FILTERS: list[Any] = [
    None,
    {"=": {"modality": "CT"}},
    {"or": [{"in": {"manufacturer": ["Agfa", "Philips"]}}, {"not": {"=": {"modality": "CT"}}}]},
    {"and": [{"not_null": "manufacturer"}, {"!=": {"body_part_examined": "HEAD"}}]},
]
SCOPES: list[Any] = [None, OPEN, ("seq-c",), ()]


def both(commons: Commons, filter: Any, projects: Any, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    args = (commons.engine, "series", filter, FIELDS)
    return (facets(*args, projects=projects, **options),
            facets(*args, projects=projects, use_facts=False, **options))


@pytest.mark.parametrize("filter", FILTERS)
def test_facts_equal_the_node_tables(commons: Commons, filter: Any) -> None:
    for projects in SCOPES:
        fast, reference = both(commons, filter, projects, bins={"case.age_at_index": AGE_BINS}, min_count=2)
        assert fast == reference, (filter, projects)


def test_facts_are_used_and_sealed(commons: Commons) -> None:
    """Sequestered series and cases never show through the facts table, and it is what answers."""
    series = node_tables()["series"]
    with commons.engine.begin() as connection:
        assert connection.execute(select(func.count()).select_from(facts_table())).scalar_one() == 7
        # A series of an open project whose case sits in the sequestered one: the case must read as missing.
        seq_case = commons.ids["case"]["C1"]
        connection.execute(update(series).where(series.c.submitter_id == "A4-st1-s1").values(case_id=seq_case))
        refresh_series_facts(connection, [commons.ids["imaging_study"]["A4-st1"]])
    fast, reference = both(commons, None, OPEN)
    assert fast == reference
    assert fast["case.sex"] == [Bucket("Female", 4), Bucket("Male", 1), Bucket(None, 1)]  # A4's series: missing
    assert fast["modality"] == [Bucket("CT", 4), Bucket("CR", 2)]  # C1's CT series (seq-c) is not counted
    # The facts table answers: emptied, the fast path (and only it) counts nothing.
    with commons.engine.begin() as connection:
        connection.execute(facts_table().delete())
    assert facets(commons.engine, "series", None, ["case.sex"])["case.sex"] == []
    assert facets(commons.engine, "series", None, ["case.sex"], use_facts=False)["case.sex"] != []


def test_linked_filters_take_the_general_path(commons: Commons) -> None:
    linked = {"=": {"case.covid19_positive": "Yes"}}
    with commons.engine.begin() as connection:
        connection.execute(facts_table().delete())  # would count nothing if it were used
    assert facets(commons.engine, "series", linked, ["modality"], projects=OPEN)["modality"] == [Bucket("CT", 3)]
