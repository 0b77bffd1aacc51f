"""Small read queries over the index that interfaces need (counts, schema version)."""

from __future__ import annotations

from sqlalchemy import Engine, func, inspect, select

from radcommons.dictionary import Dictionary, load_dictionary
from radcommons.errors import UserError
from radcommons.store.index.engine import reachable
from radcommons.store.index.schema import VERSION_TABLE, get_metadata, node_tables


def counts(engine: Engine, dictionary: Dictionary | None = None) -> dict[str, int]:
    """Number of records per node type, in graph order (program first).

    Raises :class:`UserError` when the database has not been migrated.
    """
    tables = node_tables(get_metadata(), dictionary)
    with reachable(engine.url):
        _require_schema(engine)
        with engine.connect() as connection:
            return {
                name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in tables.items()
            }


def schema_dictionary_version(engine: Engine) -> str | None:
    """The data dictionary version the database schema is at, or None when not migrated."""
    with reachable(engine.url):
        if not inspect(engine).has_table(VERSION_TABLE):
            return None
        table = get_metadata().tables[VERSION_TABLE]
        with engine.connect() as connection:
            return connection.execute(select(table.c.version)).scalars().first()


def _require_schema(engine: Engine) -> None:
    version = schema_dictionary_version(engine)
    if version is None:
        raise UserError(
            f"the database {engine.url.render_as_string(hide_password=True)} has no RadCommons tables",
            "create them with: radcommons db upgrade",
        )
    expected = load_dictionary().version
    if version != expected:
        raise UserError(
            f"the database schema is at data dictionary {version}, this software uses {expected}",
            "migrate it with: radcommons db upgrade",
        )
