"""Alembic environment of the index: the target schema is the MetaData built from the dictionary.

Configured by :func:`radcommons.store.index.migrate.alembic_config`, which passes
either a ready ``engine`` or a ``url`` in ``config.attributes``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from radcommons.store.index.engine import make_engine
from radcommons.store.index.schema import build_metadata

config = context.config
target_metadata = build_metadata()


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # All steps in one transaction on SQLite too, where the engine makes that possible
        # (radcommons.store.index.migrate._migration_engine); Alembic assumes it is not.
        **({"transactional_ddl": True} if config.attributes.get("transactional_ddl") else {}),
    )


def run_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=config.attributes.get("url") or config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = config.attributes.get("engine")
    owned = engine is None
    if engine is None:
        engine = make_engine(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
