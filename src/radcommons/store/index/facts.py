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
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Column, ForeignKey, MetaData, String, Table, and_, delete, insert, or_, select
from sqlalchemy.engine import Connection

from radcommons.dictionary import Dictionary, load_dictionary

#: The table's name and the node type it has one row per.
FACTS_TABLE = "series_facts"
FACTS_NODE = "series"


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


def refresh_series_facts(conn: Connection, study_ids: Collection[int] | None = None) -> int:
    """Rewrite the facts of the series of ``study_ids`` (``None``: every series).

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
        mine = select(series.c.id).where(series.c.imaging_study_id.in_(ids))
        conn.execute(delete(facts).where(or_(facts.c.imaging_study_id.in_(ids), facts.c.series_id.in_(mine))))
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
    return int(result.rowcount or 0)
