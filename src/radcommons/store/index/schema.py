"""SQLAlchemy tables generated from the data dictionary.

One table per node type, named after it (``case``, ``imaging_study``, ...; quote
``"case"`` in hand-written SQL, it is a keyword). Every table has:

* ``id``: an integer surrogate key (BIGINT, INTEGER on SQLite so that it autoincrements);
* ``project_id``: the project's submitter_id (a foreign key to ``project.submitter_id``;
  NULL for programs, which sit above projects);
* ``submitter_id``: unique per project and node type;
* one ``<link>_id`` foreign key per dictionary link (``imaging_study.case_id -> case.id``);
* one column per dictionary property: string -> VARCHAR/TEXT, enum -> VARCHAR(64) (values are
  checked at ingest by :mod:`radcommons.dictionary.validate`, so enlarging an enumeration needs
  no migration), integer -> INTEGER or BIGINT by its range, number -> DOUBLE, boolean ->
  BOOLEAN, array -> JSON (JSONB on PostgreSQL);
* ``created_at``, ``updated_at`` (server clock) and ``created_by``.

Descriptions are deliberately not copied into SQL comments: a wording change in the
dictionary must not need a migration.

Indexes are chosen for facet counts and cohort queries over millions of rows: every
``facet``/``indexed`` property, every foreign key, the unique ``(project_id, submitter_id)``
pair and every ``unique`` property (DICOM UIDs).
"""

from __future__ import annotations

import functools

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

from radcommons.dictionary import Dictionary, NodeType, Property, PropertyType, load_dictionary

#: Name of the table recording the dictionary version the schema is at.
VERSION_TABLE = "dictionary_version"

#: Columns every node table has besides its properties and links.
SYSTEM_COLUMNS = ("id", "project_id", "submitter_id", "created_at", "updated_at", "created_by")

# Deterministic constraint names, identical on every database, so migrations can name them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_INT32 = (-(2**31), 2**31 - 1)
ENUM_LENGTH = 64


def id_type() -> TypeEngine[int]:
    """Surrogate key type: BIGINT, but INTEGER on SQLite (only INTEGER PRIMARY KEY autoincrements there)."""
    return BigInteger().with_variant(Integer, "sqlite")


def json_type() -> TypeEngine[object]:
    """JSON, stored as JSONB on PostgreSQL (indexable, compact)."""
    return JSON().with_variant(JSONB(), "postgresql")


def column_type(prop: Property) -> TypeEngine[object]:
    """The SQL type of a dictionary property."""
    if prop.type is PropertyType.ARRAY:
        return json_type()
    if prop.type is PropertyType.ENUM:
        return String(ENUM_LENGTH)
    if prop.type is PropertyType.STRING:
        return String(prop.max_length) if prop.max_length else Text()
    if prop.type is PropertyType.INTEGER:
        low = prop.minimum if prop.minimum is not None else -(2**63)
        high = prop.maximum if prop.maximum is not None else 2**63
        return Integer() if _INT32[0] <= low and high <= _INT32[1] else BigInteger()
    if prop.type is PropertyType.NUMBER:
        return Double()
    if prop.type is PropertyType.BOOLEAN:
        return Boolean()
    raise AssertionError(f"unhandled property type {prop.type}")


def build_metadata(dictionary: Dictionary | None = None) -> MetaData:
    """A new :class:`MetaData` with one table per node type of ``dictionary`` (default: the packaged one)."""
    dictionary = dictionary or load_dictionary()
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    Table(
        VERSION_TABLE,
        metadata,
        Column("version", String(32), primary_key=True),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    for node in dictionary.nodes:
        _node_table(node, metadata)
    # Imported here: the system tables use this module's column types.
    from radcommons.store.index.system import add_system_tables

    add_system_tables(metadata)
    from radcommons.store.index.cohort_tables import add_cohort_tables  # saved queries, frozen cohorts

    add_cohort_tables(metadata)
    from radcommons.store.index.facts import add_counts_table, add_facts_table

    add_facts_table(metadata, dictionary)  # series with their parents' facet columns
    add_counts_table(metadata, dictionary)  # and their counts over the low-cardinality ones
    return metadata


@functools.lru_cache(maxsize=1)
def get_metadata() -> MetaData:
    """The MetaData of the packaged dictionary, built once (treat it as read-only)."""
    return build_metadata()


def system_table(name: str) -> Table:
    """A system table (``user``, ``token``, ``submission``, ...) of the packaged MetaData."""
    return get_metadata().tables[name]


def node_tables(metadata: MetaData | None = None, dictionary: Dictionary | None = None) -> dict[str, Table]:
    """Node type name -> table, in dictionary (graph) order."""
    metadata = metadata if metadata is not None else get_metadata()
    dictionary = dictionary or load_dictionary()
    return {name: metadata.tables[name] for name in dictionary.node_names if name in metadata.tables}


def _node_table(node: NodeType, metadata: MetaData) -> Table:
    columns: list[object] = [
        Column("id", id_type(), primary_key=True, autoincrement=True),
    ]
    if node.name in ("program", "project"):
        # Programs sit above projects; a project's project_id is its own submitter_id.
        columns.append(Column("project_id", String(64), nullable=node.name == "program"))
    else:
        columns.append(
            Column("project_id", String(64), ForeignKey("project.submitter_id"), nullable=False)
        )
    columns.append(Column("submitter_id", String(128), nullable=False))
    for link in node.links:
        columns.append(
            Column(f"{link.name}_id", id_type(), ForeignKey(f"{link.target}.id"), nullable=not link.required,
                   index=True)
        )
    for prop in node.properties:
        if prop.name in SYSTEM_COLUMNS:
            continue
        columns.append(
            Column(
                prop.name,
                column_type(prop),
                nullable=True,  # required-ness is checked at ingest; NULL keeps partial corrections possible
                index=(prop.facet or prop.indexed) and not prop.unique,
                unique=prop.unique,
            )
        )
    columns += [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now(),
               onupdate=func.now()),
        Column("created_by", String(128), nullable=True),
    ]
    if node.name in ("program", "project"):
        columns.append(UniqueConstraint("submitter_id"))
    else:
        columns.append(UniqueConstraint("project_id", "submitter_id"))
    return Table(node.name, metadata, *columns)  # type: ignore[arg-type]
