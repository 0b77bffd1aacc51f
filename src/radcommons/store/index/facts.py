"""``series_facts``: one row per series with its own, its study's and its case's facet columns.

A faceted UI counts series by ``modality`` and by ``case.sex`` or ``case.age_at_index``
over and over. On the node tables the second needs a join of every series to its case;
here every facet is one GROUP BY over one narrow table (:mod:`radcommons.store.query.facets`
uses it whenever the filter and the fields name only its columns).

The columns come from the data dictionary: every ``facet`` property of ``series`` (same
name) and of each node ``series`` links to (``imaging_study``, ``case``), named
``<node>__<property>`` (``case__sex``). A new facet property flows in with the dictionary
(and its migration, like any schema change).

Never stale: :func:`refresh_series_facts` rewrites the rows of the studies an indexing
transaction touched, in that same transaction
(:meth:`radcommons.pipelines.indexing.IndexWriter.finish` calls it), and the rows follow
their series out (``ON DELETE CASCADE``). A parent in another project than its series is not
copied (its columns read as missing), so no value can cross a project boundary: each row is
scoped by the series' ``project_id`` alone.

``series_facet_counts`` (:data:`COUNTS_TABLE`) is the same rows pre-aggregated over the
low-cardinality columns (:data:`CUBE_FIELDS`): one row per (project, combination of their
values) with its number of series ``n``. A facet whose field and filter name only these
columns is a ``SUM(n) ... GROUP BY`` over tens of thousands of rows instead of a million.
:func:`refresh_series_facts` adds the change of the rows it rewrote to the counts, combination
by combination, in the same transaction (the project row locked, so two indexers of one project
take turns): a batch updates the few combinations it changed instead of regrouping the whole
project (bench/query/facts_refresh.py). They are never stale either: it then checks that each
touched project's counts add up to its rows (one indexed count), and recounts the project when
they do not (a series removed by ``ON DELETE CASCADE`` before the refresh could see
it, which indexing does in the transaction that removed it).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger, Column, ForeignKey, Index, MetaData, String, Table, and_, delete, func, insert, or_, select, update,
)
from sqlalchemy.engine import Connection

from radcommons.dictionary import Dictionary, load_dictionary

#: The table's name and the node type it has one row per.
FACTS_TABLE = "series_facts"
FACTS_NODE = "series"
#: The pre-aggregated counts of series_facts over :data:`CUBE_FIELDS`.
COUNTS_TABLE = "series_facet_counts"
#: The facet fields (as a query names them on series) counted in ``series_facet_counts``: the
#: low-cardinality ones (on the first 300k IDC series, with the project, they collapse to
#: ~18k combinations). Free text (descriptions), ZIP codes, days and measures stay out: they would
#: multiply the combinations. Those the dictionary does not make facet columns are skipped.
CUBE_FIELDS = ("modality", "body_part_examined", "manufacturer", "manufacturer_model_name",
               "imaging_study.study_year", "case.sex", "case.age_at_index", "case.race", "case.ethnicity")


@dataclass(frozen=True)
class FactColumn:
    """A column of ``series_facts``: the facet field it holds (``case.sex``) and where it comes from."""

    name: str  # column name: "modality", "case__sex"
    node: str  # the node type holding the value: "series", "case"
    property: str  # that node's property: "sex"

    @property
    def field(self) -> str:
        """The field as a query names it on series: ``modality``, ``case.sex``."""
        return self.property if self.node == FACTS_NODE else f"{self.node}.{self.property}"


def fact_columns(dictionary: Dictionary | None = None) -> list[FactColumn]:
    """The facet columns of ``series_facts``, in dictionary order (own first, then each parent's)."""
    dictionary = dictionary or load_dictionary()
    series = dictionary[FACTS_NODE]
    out = [FactColumn(p.name, FACTS_NODE, p.name) for p in series.properties if p.facet]
    for link in series.links:
        out += [FactColumn(f"{link.target}__{p.name}", link.target, p.name)
                for p in dictionary[link.target].properties if p.facet]
    return out


def cube_columns(dictionary: Dictionary | None = None) -> list[FactColumn]:
    """The columns of ``series_facts`` counted in ``series_facet_counts``, in :data:`CUBE_FIELDS` order."""
    by_field = {fact.field: fact for fact in fact_columns(dictionary)}
    return [by_field[f] for f in CUBE_FIELDS if f in by_field]


def add_counts_table(metadata: MetaData, dictionary: Dictionary) -> Table:
    """Declare ``series_facet_counts`` on ``metadata`` (after ``series_facts``, whose types it copies).

    No key: a combination may hold NULLs. Indexing adds its changes combination by combination;
    a full refresh replaces a project's rows at once.
    """
    facts = metadata.tables[FACTS_TABLE]
    cube = cube_columns(dictionary)
    columns: list[Column[object]] = [Column("project_id", String(64), nullable=False)]
    columns += [Column(c.name, facts.c[c.name].type, nullable=True) for c in cube]
    columns.append(Column("n", BigInteger(), nullable=False))
    # One combination of one project is found by equality or IS NULL on every column
    # (_apply_delta); the project alone by the leading column.
    cell = Index("ix_series_facet_counts_cell", "project_id", *(c.name for c in cube))
    return Table(COUNTS_TABLE, metadata, *columns, cell)


def add_facts_table(metadata: MetaData, dictionary: Dictionary) -> Table:
    """Declare ``series_facts`` on ``metadata`` (after the node tables, whose types it copies)."""
    series = metadata.tables[FACTS_NODE]
    columns: list[Column[object]] = [
        Column("series_id", series.c.id.type, ForeignKey(f"{FACTS_NODE}.id", ondelete="CASCADE"), primary_key=True,
               autoincrement=False),
        Column("project_id", String(64), nullable=False, index=True),
        Column("imaging_study_id", series.c.id.type, nullable=True, index=True),
    ]
    for fact in fact_columns(dictionary):
        # A parent's column is indexed, as it is in its own table (SQLite counts by index scan).
        columns.append(Column(fact.name, metadata.tables[fact.node].c[fact.property].type, nullable=True,
                              index=fact.node != FACTS_NODE))
    return Table(FACTS_TABLE, metadata, *columns)


def facts_table() -> Table:
    """The ``series_facts`` table of the packaged MetaData."""
    from radcommons.store.index.schema import get_metadata

    return get_metadata().tables[FACTS_TABLE]


def counts_table() -> Table:
    """The ``series_facet_counts`` table of the packaged MetaData."""
    from radcommons.store.index.schema import get_metadata

    return get_metadata().tables[COUNTS_TABLE]


def refresh_series_facts(conn: Connection, study_ids: Collection[int] | None = None) -> int:
    """Rewrite the facts of the series of ``study_ids`` (``None``: every series), and their projects' counts.

    Returns the rows written as the driver reports them (-1 where it cannot tell, as psycopg for
    a bulk ``INSERT ... SELECT``).

    Call it inside the transaction that changed those studies, their series or their cases,
    after the change: the facts then commit (or roll back) with it.
    """
    from radcommons.store.index.schema import get_metadata

    metadata = get_metadata()
    facts, series = metadata.tables[FACTS_TABLE], metadata.tables[FACTS_NODE]
    if study_ids is not None:
        ids = sorted(set(study_ids))
        if not ids:
            return 0
        # the studies' series now, as a list: an OR with a subquery would scan series_facts
        mine = list(conn.execute(select(series.c.id).where(series.c.imaging_study_id.in_(ids))).scalars())
        # The projects whose counts change: those of the old rows, the new rows and the studies
        # (a series removed since, by ON DELETE CASCADE, was in its study's project or in no row).
        study = metadata.tables["imaging_study"]
        projects = set(conn.execute(select(facts.c.project_id).where(
            or_(facts.c.imaging_study_id.in_(ids), facts.c.series_id.in_(mine))).distinct()).scalars())
        projects |= set(conn.execute(select(series.c.project_id).where(series.c.imaging_study_id.in_(ids))
                                     .distinct()).scalars())
        projects |= set(conn.execute(select(study.c.project_id).where(study.c.id.in_(ids)).distinct()).scalars())
        old_rows = or_(facts.c.imaging_study_id.in_(ids), facts.c.series_id.in_(mine))
        before = _cells(conn, old_rows)
        conn.execute(delete(facts).where(old_rows))
    else:
        conn.execute(delete(facts))
    parents = {}
    source = series
    for link in load_dictionary()[FACTS_NODE].links:
        parent = metadata.tables[link.target].alias(f"facts_{link.target}")
        # Same project only: a value never crosses a project boundary.
        source = source.outerjoin(parent, and_(parent.c.id == series.c[f"{link.name}_id"],
                                               parent.c.project_id == series.c.project_id))
        parents[link.target] = parent
    values = [series.c.id, series.c.project_id, series.c.imaging_study_id]
    values += [(series if f.node == FACTS_NODE else parents[f.node]).c[f.property] for f in fact_columns()]
    statement = select(*values).select_from(source)
    if study_ids is not None:
        statement = statement.where(series.c.imaging_study_id.in_(ids))
    names = ["series_id", "project_id", "imaging_study_id", *(f.name for f in fact_columns())]
    result = conn.execute(insert(facts).from_select(names, statement))
    if study_ids is None:
        _recount(conn, None)
    else:
        touched = sorted(p for p in projects if p is not None)
        after = _cells(conn, facts.c.imaging_study_id.in_(ids))
        delta = {cell: after.get(cell, 0) - before.get(cell, 0) for cell in set(before) | set(after)}
        if not _apply_delta(conn, touched, {cell: n for cell, n in delta.items() if n}):
            _recount(conn, touched)
    return int(result.rowcount or 0)


def _cells(conn: Connection, where: Any) -> dict[tuple, int]:
    """``series_facts`` rows matching ``where``, counted by (project, counted columns)."""
    facts = facts_table()
    keys = [facts.c.project_id, *(facts.c[c.name] for c in cube_columns())]
    return {tuple(row[:-1]): row[-1] for row in conn.execute(select(*keys, func.count()).where(where).group_by(*keys))}


def _apply_delta(conn: Connection, projects: list[str], delta: dict[tuple, int]) -> bool:
    """Add ``delta`` (series per (project, combination)) to ``series_facet_counts``; a combination
    down to 0 goes. False when the counts of ``projects`` do not then add up to their rows in
    ``series_facts`` (a series was removed with its facts, by ON DELETE CASCADE, before the
    refresh could see it): the caller recounts them.

    Per combination one indexed UPDATE (IS NULL where a value is missing, so an index serves it)
    instead of a recount of the whole project: a batch into a project of 300,000 series touches
    tens of its combinations, not its 36,000.
    """
    if not projects:
        return True
    counts, facts = counts_table(), facts_table()
    from radcommons.store.index.schema import get_metadata

    project = get_metadata().tables["project"]
    # Lock the projects' rows: two transactions updating one project's counts take turns
    # (PostgreSQL; SQLite has one writer at a time).
    conn.execute(select(project.c.id).where(project.c.submitter_id.in_(projects)).with_for_update())
    columns = [counts.c.project_id, *(counts.c[c.name] for c in cube_columns())]
    for cell, change in sorted(delta.items(), key=repr):
        match = and_(*(column.is_(None) if value is None else column == value for column, value in zip(columns, cell)))
        row = conn.execute(select(counts.c.n).where(match)).first()
        if row is None:
            if change < 0:
                return False  # counts that never were: recount
            conn.execute(insert(counts).values({**dict(zip((c.name for c in columns), cell)), "n": change}))
        elif row.n + change > 0:
            conn.execute(update(counts).where(match).values(n=counts.c.n + change))
        elif row.n + change == 0:
            conn.execute(delete(counts).where(match))
        else:
            return False
    counted = dict(conn.execute(select(counts.c.project_id, func.sum(counts.c.n))
                                .where(counts.c.project_id.in_(projects))
                                .group_by(counts.c.project_id)).all())
    present = dict(conn.execute(select(facts.c.project_id, func.count())
                                .where(facts.c.project_id.in_(projects)).group_by(facts.c.project_id)).all())
    return all(int(counted.get(p) or 0) == int(present.get(p) or 0) for p in projects)


def _recount(conn: Connection, projects: list[str] | None) -> None:
    """Recompute ``series_facet_counts`` of ``projects`` (``None``: all) from ``series_facts``."""
    from radcommons.store.index.schema import get_metadata

    metadata = get_metadata()
    facts, counts = metadata.tables[FACTS_TABLE], metadata.tables[COUNTS_TABLE]
    keys = [facts.c.project_id, *(facts.c[c.name] for c in cube_columns())]
    statement = select(*keys, func.count()).group_by(*keys)
    if projects is None:
        conn.execute(delete(counts))
    else:
        if not projects:
            return
        # Lock the projects' rows: two transactions recounting one project take turns (PostgreSQL;
        # SQLite has one writer at a time), so neither keeps the other's rows beside its own.
        project = metadata.tables["project"]
        conn.execute(select(project.c.id).where(project.c.submitter_id.in_(projects)).with_for_update())
        conn.execute(delete(counts).where(counts.c.project_id.in_(projects)))
        statement = statement.where(facts.c.project_id.in_(projects))
    names = ["project_id", *(c.name for c in cube_columns()), "n"]
    conn.execute(insert(counts).from_select(names, statement))
