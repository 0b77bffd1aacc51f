"""Alembic migrations of the index, configured in code so they run from any directory.

The migration scripts ship inside the package (``radcommons/store/index/migrations``);
:func:`alembic_config` points Alembic at them, so no ``alembic.ini`` is needed and
``radcommons db upgrade`` works from an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL

from radcommons.errors import UserError
from radcommons.store.index.engine import make_engine, normalize_url, reachable

#: Folder of the Alembic environment and its versions.
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | URL | None = None, engine: Engine | None = None) -> Config:
    """An Alembic :class:`Config` for the packaged migrations.

    The URL (or a ready engine) travels in ``config.attributes`` rather than the
    ini option, so passwords with ``%`` need no escaping.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.attributes["url"] = normalize_url(url)
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The newest migration shipped with the package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def upgrade(url: str | URL, revision: str = "head") -> str | None:
    """Migrate the database at ``url`` up to ``revision``; returns the revision it is then at.

    The folder of a SQLite file is created when missing. Raises :class:`UserError`
    when the database cannot be reached.
    """
    engine = make_engine(url)
    try:
        with reachable(url):
            command.upgrade(alembic_config(engine=engine), revision)
        return _current(engine)
    finally:
        engine.dispose()


def downgrade(url: str | URL, revision: str = "base") -> str | None:
    """Migrate the database at ``url`` down to ``revision`` (``base`` drops every table)."""
    engine = make_engine(url)
    try:
        with reachable(url):
            command.downgrade(alembic_config(engine=engine), revision)
        return _current(engine)
    finally:
        engine.dispose()


def current_revision(url: str | URL) -> str | None:
    """The migration the database at ``url`` is at, or None when it was never migrated."""
    engine = make_engine(url)
    try:
        with reachable(url):
            return _current(engine)
    finally:
        engine.dispose()


def _current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(engine: Engine) -> bool:
    """True when the database has the tables of the newest migration."""
    return _current(engine) == head_revision() and inspect(engine).has_table("alembic_version")


def engine_revision(engine: Engine) -> str | None:
    """The migration the database of ``engine`` is at (None when never migrated)."""
    return _current(engine)
