"""Migration 0012: the body parts of rows indexed before 0011 get the normalised term, in the node
tables, series_facts and series_facet_counts, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, MetaData, insert, text

from radcommons.store.index import downgrade, head_revision, make_engine, upgrade
from radcommons.store.query import facets

#: (submitter_id, project, body_part_examined, body_part_examined_raw) as 0011 left them: a row
#: indexed before it holds the value as sent in both, one indexed since its term and the value.
STUDIES = [
    ("st-old", "P1", "Chest", "Chest"),
    ("st-new", "P1", "CHEST", "thorax"),
    ("st-none", "P1", None, None),
    ("st-other", "P2", "HEAD", "HEAD"),
]
SERIES = [  # (submitter_id, study, body_part_examined, body_part_examined_raw)
    ("se-chest", "st-old", "Chest", "Chest"),
    ("se-thorax", "st-old", "THORAX", "THORAX"),
    ("se-lower", "st-new", "chest", "chest"),
    ("se-new", "st-new", "CHEST", "LUNG"),
    ("se-knee", "st-new", "Left  knee", "Left  knee"),  # no Annex L term: a Code String
    ("se-raw-only", "st-none", None, "Abd"),
    ("se-blank", "st-none", "  ", "  "),  # left as indexing leaves a blank value
    ("se-none", "st-none", None, None),
    ("se-head", "st-other", "HEAD", "HEAD"),
]
NORMALISED = {
    "se-chest": "CHEST", "se-thorax": "CHEST", "se-lower": "CHEST", "se-new": "CHEST", "se-knee": "LEFT KNEE",
    "se-raw-only": "ABDOMEN", "se-blank": "  ", "se-none": None, "se-head": "HEAD",
}


def index_the_old_way(connection: Connection, tables: dict[str, Any]) -> None:
    """The rows above, and their series_facts and series_facet_counts as indexing wrote them."""
    connection.execute(insert(tables["program"]).values(id=1, submitter_id="prog"))
    ids: dict[str, int] = {}
    for n, project in enumerate(("P1", "P2"), 1):
        connection.execute(insert(tables["project"]).values(id=n, project_id=project, submitter_id=project,
                                                            program_id=1))
        connection.execute(insert(tables["dataset"]).values(id=n, project_id=project, submitter_id=f"ds-{project}"))
        connection.execute(insert(tables["case"]).values(id=n, project_id=project, submitter_id=f"case-{project}",
                                                         dataset_id=n, sex="Female"))
    for n, (name, project, value, raw) in enumerate(STUDIES, 1):
        ids[name] = n
        connection.execute(insert(tables["imaging_study"]).values(
            id=n, project_id=project, submitter_id=name, case_id=int(project[1]), body_part_examined=value,
            body_part_examined_raw=raw))
    project_of = {name: project for name, project, _, _ in STUDIES}
    for n, (name, study, value, raw) in enumerate(SERIES, 1):
        project = project_of[study]
        connection.execute(insert(tables["series"]).values(
            id=n, project_id=project, submitter_id=name, imaging_study_id=ids[study], case_id=int(project[1]),
            modality="CT", body_part_examined=value, body_part_examined_raw=raw))
    # series_facts: each column from the series, or its study or case ("imaging_study__body_part_examined")
    names = [c.name for c in tables["series_facts"].columns]
    own = {"series_id": "s.id", "project_id": "s.project_id", "imaging_study_id": "s.imaging_study_id"}
    values = [own.get(n) or (("st." if n.startswith("imaging_study__") else "c.") + n.split("__", 1)[1]
                             if "__" in n else f"s.{n}") for n in names]
    connection.execute(text(
        f'INSERT INTO series_facts ({", ".join(names)}) SELECT {", ".join(values)} FROM series s '
        'LEFT JOIN imaging_study st ON st.id = s.imaging_study_id AND st.project_id = s.project_id '
        'LEFT JOIN "case" c ON c.id = s.case_id AND c.project_id = s.project_id'))
    keys = ", ".join(c.name for c in tables["series_facet_counts"].columns if c.name != "n")
    connection.execute(text(f"INSERT INTO series_facet_counts ({keys}, n) "
                            f"SELECT {keys}, count(*) FROM series_facts GROUP BY {keys}"))


def counts(url: str) -> dict[str, dict[Any, int | None]]:
    """Series facets by body part (series_facet_counts) and by the study's (series_facts), checked
    against the node tables."""
    fields = ["body_part_examined", "imaging_study.body_part_examined"]
    engine = make_engine(url)
    try:
        found = facets(engine, "series", None, fields)
        assert found == facets(engine, "series", None, fields, use_facts=False)
        by_project = facets(engine, "series", None, fields, projects=["P2"])
        assert by_project == facets(engine, "series", None, fields, projects=["P2"], use_facts=False)
    finally:
        engine.dispose()
    assert {b.value: b.count for b in by_project["body_part_examined"]} == {"HEAD": 1}
    return {field: {b.value: b.count for b in buckets} for field, buckets in found.items()}


def test_rows_indexed_before_0011_get_the_normalised_body_part(db_url: str) -> None:
    assert upgrade(db_url, "0011") == "0011"
    engine = make_engine(db_url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.begin() as connection:
            index_the_old_way(connection, metadata.tables)
    finally:
        engine.dispose()

    assert upgrade(db_url) == head_revision()

    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            series = dict(connection.execute(text("SELECT submitter_id, body_part_examined FROM series")).all())
            raw = dict(connection.execute(text("SELECT submitter_id, body_part_examined_raw FROM series")).all())
            studies = dict(connection.execute(text("SELECT submitter_id, body_part_examined FROM imaging_study")).all())
    finally:
        engine.dispose()
    assert series == NORMALISED
    assert raw == {name: value for name, _, _, value in SERIES}  # the values as sent are kept
    assert studies == {"st-old": "CHEST", "st-new": "CHEST", "st-none": None, "st-other": "HEAD"}
    expected = {
        "body_part_examined": {"CHEST": 4, "ABDOMEN": 1, "HEAD": 1, "LEFT KNEE": 1, "  ": 1, None: 1},
        "imaging_study.body_part_examined": {"CHEST": 5, "HEAD": 1, None: 3},
    }
    assert counts(db_url) == expected

    # The downgrade changes nothing, and upgrading again finds nothing to change.
    assert downgrade(db_url, "0011") == "0011"
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            kept = dict(connection.execute(text("SELECT submitter_id, body_part_examined FROM series")).all())
    finally:
        engine.dispose()
    assert kept == NORMALISED and counts(db_url) == expected
    assert upgrade(db_url) == head_revision()
    assert counts(db_url) == expected
