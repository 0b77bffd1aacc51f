"""The index: a relational database of every record, with tables generated from the dictionary.

SQLite for a laptop or a site, PostgreSQL (psycopg 3) for a commons. The schema is
managed with Alembic migrations shipped in this package::

    >>> from radcommons.store.index import upgrade, make_engine, counts   # doctest: +SKIP
    >>> upgrade("sqlite:///var/radcommons.db")
    '0001'
    >>> counts(make_engine("sqlite:///var/radcommons.db"))["case"]
    0
"""

from __future__ import annotations

from radcommons.store.index.engine import make_engine, normalize_url, reachable, sqlite_path
from radcommons.store.index.migrate import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    known_revisions,
    upgrade,
)
from radcommons.store.index.queries import counts, schema_dictionary_version
from radcommons.store.index.schema import (
    SYSTEM_COLUMNS,
    VERSION_TABLE,
    build_metadata,
    column_type,
    get_metadata,
    node_tables,
)

__all__ = [
    "MIGRATIONS_DIR",
    "SYSTEM_COLUMNS",
    "VERSION_TABLE",
    "alembic_config",
    "build_metadata",
    "column_type",
    "counts",
    "current_revision",
    "downgrade",
    "get_metadata",
    "head_revision",
    "known_revisions",
    "make_engine",
    "node_tables",
    "normalize_url",
    "schema_dictionary_version",
    "reachable",
    "sqlite_path",
    "upgrade",
]
