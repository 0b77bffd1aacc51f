"""series_facts and series_facet_counts answer series facets exactly as the node tables do, within the caller's projects."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from database_support import pg_database
from sqlalchemy import delete, func, select, update

from radcommons.store.index import make_engine, node_tables, upgrade
from radcommons.store.index.facts import cube_columns, counts_table, fact_columns, facts_table, refresh_series_facts
from radcommons.store.query import AGE_BINS, Bucket, facets

from .conftest import OPEN, Commons, build_commons

FIELDS = [fact.field for fact in fact_columns()]
CUBE = [fact.field for fact in cube_columns()]
FILTERS: list[Any] = [
    None,
    {"=": {"modality": "CT"}},
    {"or": [{"in": {"manufacturer": ["Agfa", "Philips"]}}, {"not": {"=": {"modality": "CT"}}}]},
    {"and": [{"not_null": "manufacturer"}, {"!=": {"body_part_examined": "HEAD"}}]},
    {"is_null": "manufacturer_model_name"},  # counted columns only, as above: series_facet_counts
    {"=": {"case.sex": "Female"}},  # a parent's column: the general path
    {"and": [{"=": {"modality": "CT"}}, {"not_null": "series_description"}]},  # an uncounted column: series_facts
]
SCOPES: list[Any] = [None, OPEN, ("seq-c",), ()]


def both(commons: Commons, filter: Any, projects: Any, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    args = (commons.engine, "series", filter, FIELDS)
    return (facets(*args, projects=projects, **options),
            facets(*args, projects=projects, use_facts=False, **options))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def unchanged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Commons]:
    """The commons of conftest.py, built once per database for the tests that only read it (the
    per-test ``commons`` is for the tests that change it)."""
    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path_factory.mktemp('series-facts') / 'index.db'}" if request.param == "sqlite"
               else stack.enter_context(pg_database(request.getfixturevalue("pg_admin"))))
        upgrade(url)
        engine = make_engine(url)
        stack.callback(engine.dispose)
        yield build_commons(engine)


@pytest.mark.parametrize("filter", FILTERS)
def test_facts_equal_the_node_tables(unchanged: Commons, filter: Any) -> None:
    for projects in SCOPES:
        fast, reference = both(unchanged, filter, projects, bins={"case.age_at_index": AGE_BINS}, min_count=2)
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
    # The facts table answers the uncounted columns: emptied, the fast path (and only it) counts nothing.
    uncounted = "imaging_study.body_part_examined"
    assert uncounted in FIELDS and uncounted not in CUBE
    with commons.engine.begin() as connection:
        connection.execute(facts_table().delete())
    assert facets(commons.engine, "series", None, [uncounted])[uncounted] == []
    assert facets(commons.engine, "series", None, [uncounted], use_facts=False)[uncounted] != []


def test_linked_filters_take_the_general_path(commons: Commons) -> None:
    linked = {"=": {"case.covid19_positive": "Yes"}}
    with commons.engine.begin() as connection:
        connection.execute(facts_table().delete())  # would count nothing if it were used
    assert facets(commons.engine, "series", linked, ["modality"], projects=OPEN)["modality"] == [Bucket("CT", 3)]


def _counted(commons: Commons) -> tuple[list[Any], int]:
    """(project, n) per project in series_facet_counts, and its rows with n <= 0."""
    counts = counts_table()
    with commons.engine.connect() as connection:
        totals = connection.execute(select(counts.c.project_id, func.sum(counts.c.n)).group_by(counts.c.project_id)
                                    .order_by(counts.c.project_id)).all()
        empty = connection.execute(select(func.count()).select_from(counts).where(counts.c.n <= 0)).scalar_one()
    return [tuple(row) for row in totals], empty


def test_counts_are_used_and_sealed(commons: Commons) -> None:
    """The counts table answers the counted fields, and a sequestered project's rows never show."""
    assert _counted(commons) == ([("open-a", 4), ("open-b", 2), ("seq-c", 1)], 0)
    assert facets(commons.engine, "series", None, ["modality"], projects=("seq-c",))["modality"] == [Bucket("CT", 1)]
    for projects in (OPEN, ("open-b",), ()):
        fast = facets(commons.engine, "series", {"=": {"modality": "CT"}}, CUBE, projects=projects)
        reference = facets(commons.engine, "series", {"=": {"modality": "CT"}}, CUBE, projects=projects,
                           use_facts=False)
        assert fast == reference, projects
    assert facets(commons.engine, "series", None, ["case.sex"], projects=OPEN)["case.sex"] == [
        Bucket("Female", 4), Bucket("Male", 1), Bucket(None, 1)]  # C1's Female series (seq-c) is not counted
    with commons.engine.begin() as connection:
        connection.execute(counts_table().delete())
    for field in ("modality", "case.sex", "case.age_at_index"):
        assert facets(commons.engine, "series", None, [field])[field] == [], field
        assert facets(commons.engine, "series", None, [field], use_facts=False)[field] != [], field


def test_counts_follow_a_reindexed_study(commons: Commons) -> None:
    """Changed, moved and removed series: the counts are recomputed, decremented, with no zero rows left."""
    tables = node_tables()
    series, study = tables["series"], tables["imaging_study"]
    ids = commons.ids
    with commons.engine.begin() as connection:
        # B1's CR series becomes GE CT; A1's study moves to A2 (case columns change); A3's series is removed.
        connection.execute(update(series).where(series.c.submitter_id == "B1-st1-s2")
                           .values(modality="CT", manufacturer="GE"))
        connection.execute(update(study).where(study.c.id == ids["imaging_study"]["A1-st1"])
                           .values(case_id=ids["case"]["A2"]))
        connection.execute(update(series).where(series.c.imaging_study_id == ids["imaging_study"]["A1-st1"])
                           .values(case_id=ids["case"]["A2"]))
        connection.execute(delete(tables["instance"]).where(tables["instance"].c.series_id == ids["series"]["A3-st1-s1"]))
        connection.execute(delete(series).where(series.c.id == ids["series"]["A3-st1-s1"]))  # cascades to its facts
        refresh_series_facts(connection, [ids["imaging_study"][s] for s in ("B1-st1", "A1-st1", "A3-st1")])
    assert _counted(commons) == ([("open-a", 3), ("open-b", 2), ("seq-c", 1)], 0)
    for filter in FILTERS:
        for projects in SCOPES:
            fast, reference = both(commons, filter, projects, bins={"case.age_at_index": AGE_BINS})
            assert fast == reference, (filter, projects)
    by = facets(commons.engine, "series", None, ["modality", "manufacturer", "case.sex"], projects=OPEN)
    assert by["modality"] == [Bucket("CT", 4), Bucket("CR", 1)]
    # No Agfa: a combination down to 0 series is not shown.
    assert by["manufacturer"] == [Bucket("SIEMENS", 2), Bucket("GE", 1), Bucket("GE MEDICAL SYSTEMS", 1),
                                  Bucket("Philips", 1)]
    assert by["case.sex"] == [Bucket("Female", 2), Bucket("Male", 2), Bucket(None, 1)]
    # A whole project's series gone: its rows go too.
    with commons.engine.begin() as connection:
        gone = select(series.c.id).where(series.c.project_id == "open-b")
        connection.execute(delete(tables["instance"]).where(tables["instance"].c.series_id.in_(gone)))
        connection.execute(delete(series).where(series.c.project_id == "open-b"))
        refresh_series_facts(connection, [ids["imaging_study"]["B1-st1"]])
    assert _counted(commons) == ([("open-a", 3), ("seq-c", 1)], 0)
    assert facets(commons.engine, "series", None, ["modality"], projects=("open-b",))["modality"] == []


def test_counts_change_by_the_batch_not_by_a_recount(commons: Commons, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reindexed study changes its projects' counts combination by combination: no project is
    recounted (it would cost a scan of the whole project), and the counts still equal the node tables."""
    from radcommons.store.index import facts as facts_module

    def recount(*_args: Any) -> None:
        raise AssertionError("a project was recounted")

    monkeypatch.setattr(facts_module, "_recount", recount)
    tables = node_tables()
    series, ids = tables["series"], commons.ids
    with commons.engine.begin() as connection:
        # a new combination (MR, GE) and one series leaving its old one
        connection.execute(update(series).where(series.c.submitter_id == "B1-st1-s2")
                           .values(modality="MR", manufacturer="GE"))
        refresh_series_facts(connection, [ids["imaging_study"]["B1-st1"], ids["imaging_study"]["A1-st1"]])
    for filter in FILTERS:
        for projects in SCOPES:
            fast, reference = both(commons, filter, projects, bins={"case.age_at_index": AGE_BINS})
            assert fast == reference, (filter, projects)
    assert _counted(commons)[1] == 0


def test_migration_fills_the_counts(commons: Commons) -> None:
    """Migration 0008 counts the series already in series_facts, as refresh_series_facts does."""
    from alembic import command

    from radcommons.store.index import alembic_config

    counts = counts_table()
    rows = select(counts).order_by(*(c.asc().nulls_first() for c in counts.c))
    with commons.engine.connect() as connection:
        refreshed = connection.execute(rows).all()
    command.downgrade(alembic_config(engine=commons.engine), "0007")
    command.upgrade(alembic_config(engine=commons.engine), "head")
    with commons.engine.connect() as connection:
        assert connection.execute(rows).all() == refreshed
    assert len(refreshed) >= 6
