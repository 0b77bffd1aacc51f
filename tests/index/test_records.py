"""Records in the index: the graph chain, uniqueness, foreign keys and counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from radcommons.dictionary import load_dictionary
from radcommons.dictionary.examples import example_records
from radcommons.store.index import counts, get_metadata, make_engine, node_tables

PROJECT = "Open-R1"
CHAIN = ["program", "project", "dataset", "case", "imaging_study", "series", "instance"]


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


def row(node: str, parents: dict[str, int], number: int = 1, **changes: Any) -> dict[str, Any]:
    """A table row from the dictionary's example record of ``node``, its links resolved to ids."""
    node_type = load_dictionary()[node]
    record = example_records(node, number)[number - 1]
    values = {k: v for k, v in record.items() if k in node_type.property_names}
    values["project_id"] = None if node == "program" else (
        record["submitter_id"] if node == "project" else PROJECT
    )
    if node == "project":
        values["submitter_id"] = values["project_id"] = PROJECT
    for link in node_type.links:
        values[f"{link.name}_id"] = parents[link.target]
    values["created_by"] = "test"
    values.update(changes)
    return values


def insert_chain(engine: Engine) -> dict[str, int]:
    tables = node_tables()
    ids: dict[str, int] = {}
    with engine.begin() as connection:
        for node in CHAIN:
            ids[node] = connection.execute(insert(tables[node]).values(row(node, ids))).inserted_primary_key[0]
        for clinical in ("measurement", "visit", "condition", "medication", "procedure", "observation"):
            connection.execute(insert(tables[clinical]).values(row(clinical, ids)))
    return ids


def test_chain_round_trip(engine: Engine) -> None:
    insert_chain(engine)
    t = node_tables()
    query = (
        select(t["case"].c.submitter_id, t["case"].c.sex, t["imaging_study"].c.days_from_study_to_pos_covid_test,
               t["series"].c.modality, t["series"].c.pixel_spacing, t["instance"].c.object_id,
               t["instance"].c.size, t["imaging_study"].c.study_year_shifted, t["case"].c.created_at)
        .join(t["imaging_study"], t["imaging_study"].c.case_id == t["case"].c.id)
        .join(t["series"], t["series"].c.imaging_study_id == t["imaging_study"].c.id)
        .join(t["instance"], t["instance"].c.series_id == t["series"].c.id)
        .where(t["case"].c.project_id == PROJECT)
    )
    with engine.connect() as connection:
        result = connection.execute(query).one()
    assert result.submitter_id == "case-1"
    assert result.sex == "Female"
    assert result.days_from_study_to_pos_covid_test == [41]
    assert result.pixel_spacing == [1.5]
    assert len(result.object_id) == 64
    assert result.study_year_shifted is False
    assert result.created_at is not None


def test_counts(engine: Engine) -> None:
    assert set(counts(engine).values()) == {0}
    insert_chain(engine)
    numbers = counts(engine)
    assert list(numbers) == list(load_dictionary().node_names)
    assert set(numbers.values()) == {1}


def test_submitter_id_unique_per_project(engine: Engine) -> None:
    ids = insert_chain(engine)
    cases = node_tables()["case"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(cases).values(row("case", ids)))
    # the same submitter_id in another project is fine
    with engine.begin() as connection:
        projects = node_tables()["project"]
        connection.execute(insert(projects).values(row("project", ids, submitter_id="Seq-A1", project_id="Seq-A1")))
        connection.execute(insert(cases).values(row("case", ids, project_id="Seq-A1")))


def test_unique_uids(engine: Engine) -> None:
    ids = insert_chain(engine)
    studies = node_tables()["imaging_study"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(studies).values(row("imaging_study", ids, submitter_id="other")))


@pytest.mark.parametrize("column", ["case_id", "project_id"])
def test_foreign_keys_are_enforced(engine: Engine, column: str) -> None:
    ids = insert_chain(engine)
    bad = {"case_id": 999_999, "project_id": "No-Such-Project"}[column]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(node_tables()["visit"]).values(row("visit", ids, submitter_id="v9", **{column: bad})))


def test_facet_and_foreign_key_columns_are_indexed() -> None:
    metadata = get_metadata()
    dictionary = load_dictionary()
    for node in dictionary.nodes:
        table = metadata.tables[node.name]
        indexed = {col.name for index in table.indexes for col in index.columns}
        unique = {tuple(c.name for c in uc.columns) for uc in table.constraints if hasattr(uc, "columns")}
        for prop in node.properties:
            if prop.facet and not prop.unique:
                assert prop.name in indexed, f"{node.name}.{prop.name}"
        for link in node.links:
            assert f"{link.name}_id" in indexed
        assert ("project_id", "submitter_id") in unique or ("submitter_id",) in unique
