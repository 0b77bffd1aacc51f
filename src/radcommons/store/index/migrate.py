"""Alembic migrations of the index, configured in code so they run from any directory.

The migration scripts ship inside the package (``radcommons/store/index/migrations``);
:func:`alembic_config` points Alembic at them, so no ``alembic.ini`` is needed and
``radcommons db upgrade`` works from an installed wheel.

Alembic itself is imported only to migrate: every command checks that the index is at the
newest revision, and importing Alembic and loading its script directory for that cost about
0.3 s per command. The check reads ``alembic_version`` with one query, and the newest
revision from the scripts' ``revision``/``down_revision`` lines (a test holds it equal to
Alembic's own answer).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event, func, inspect, select, text
from sqlalchemy.engine import URL

from radcommons.errors import UserError
from radcommons.store.index.engine import make_engine, normalize_url, reachable, sqlite_path

if TYPE_CHECKING:
    from alembic.config import Config

#: Folder of the Alembic environment and its versions.
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | URL | None = None, engine: Engine | None = None) -> "Config":
    """An Alembic :class:`Config` for the packaged migrations.

    The URL (or a ready engine) travels in ``config.attributes`` rather than the
    ini option, so passwords with ``%`` need no escaping.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.attributes["url"] = normalize_url(url)
    if engine is not None:
        config.attributes["engine"] = engine
    return config


_REVISION_LINE = re.compile(
    r"^(?P<name>revision|down_revision)\b[^=\n]*=\s*(?:'(?P<single>[^']*)'|\"(?P<double>[^\"]*)\"|(?P<none>None))\s*$",
    re.MULTILINE,
)


@functools.cache
def head_revision() -> str:
    """The newest migration shipped with the package."""
    revisions: dict[str, str | None] = {}
    for script in (MIGRATIONS_DIR / "versions").glob("[!_]*.py"):
        found = {m["name"]: m["single"] or m["double"] for m in _REVISION_LINE.finditer(script.read_text("utf-8"))}
        if "revision" not in found or "down_revision" not in found:
            return alembic_head_revision()  # a script written some other way (a merge): ask Alembic
        revisions[found["revision"]] = found["down_revision"]
    heads = set(revisions) - set(revisions.values())
    if len(heads) != 1:
        return alembic_head_revision()
    return heads.pop()


def alembic_head_revision() -> str:
    """The newest migration, as Alembic reads it from the scripts (imports Alembic)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def known_revisions() -> set[str]:
    """The revisions of the migrations shipped with the package."""
    return {m["single"] or m["double"] for script in (MIGRATIONS_DIR / "versions").glob("[!_]*.py")
            for m in _REVISION_LINE.finditer(script.read_text("utf-8")) if m["name"] == "revision"}


@contextmanager
def _migrating() -> Iterator[None]:
    """Alembic's refusals (an unknown target revision, an index at a revision this version does not
    ship) as a :class:`UserError` that says what to do."""
    from alembic.util.exc import CommandError

    try:
        yield
    except CommandError as error:
        raise UserError(f"cannot migrate the index: {error}",
                        f"this version of radcommons knows the revisions {', '.join(sorted(known_revisions()))} "
                        "(and base, head); an index at another revision was migrated by another version: use "
                        "that version, or restore a backup") from None


def upgrade(url: str | URL, revision: str = "head") -> str | None:
    """Migrate the database at ``url`` up to ``revision``; returns the revision it is then at.

    The folder of a SQLite file is created when missing. Raises :class:`UserError`
    when the database cannot be reached.
    """
    from alembic import command

    engine = _migration_engine(url)
    try:
        with reachable(url), _migrating(), _one_migration_at_a_time(engine):
            command.upgrade(_migration_config(engine), revision)
        return _current(engine)
    finally:
        engine.dispose()


def downgrade(url: str | URL, revision: str = "base") -> str | None:
    """Migrate the database at ``url`` down to ``revision`` (``base`` drops every table)."""
    from alembic import command

    engine = _migration_engine(url)
    try:
        with reachable(url), _migrating(), _one_migration_at_a_time(engine):
            command.downgrade(_migration_config(engine), revision)
        return _current(engine)
    finally:
        engine.dispose()


#: Key of the PostgreSQL advisory lock a migration holds ("RCMG").
MIGRATION_LOCK = 0x52434D47
#: How long a migration waits for another one on SQLite (seconds).
SQLITE_MIGRATION_WAIT = 600


def _migration_engine(url: str | URL) -> Engine:
    """An engine whose migrations are one transaction, all or nothing, on SQLite too.

    Alembic runs every step of an upgrade in one transaction, but pysqlite commits before each
    DDL statement: a migration killed half way left tables of the next revision under the old
    ``alembic_version``, and every later upgrade failed on "table ... already exists". Here
    SQLAlchemy's transaction is SQLite's, begun with ``BEGIN IMMEDIATE``: the write lock from the
    start, so a second migration waits for the first and then finds nothing left to do.
    """
    if normalize_url(url).get_backend_name() != "sqlite":
        return make_engine(url)
    engine = make_engine(url, connect_args={"timeout": SQLITE_MIGRATION_WAIT})

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _migration_config(engine: Engine) -> "Config":
    config = alembic_config(engine=engine)
    config.attributes["transactional_ddl"] = True  # the engine's transactions hold DDL too (SQLite)
    return config


@contextmanager
def _one_migration_at_a_time(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, hold an advisory lock for the migration: two ``db upgrade`` at once both created
    ``alembic_version`` and one failed on a unique violation. (SQLite: ``BEGIN IMMEDIATE`` does it.)"""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(select(func.pg_advisory_lock(MIGRATION_LOCK)))
        connection.commit()  # a session lock: it outlives this transaction, and the migration's
        try:
            yield
        finally:
            connection.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK)))
            connection.commit()


def current_revision(url: str | URL) -> str | None:
    """The migration the database at ``url`` is at, or None when it was never migrated."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None  # connecting would create an empty file where the user mistyped a path
    engine = make_engine(url)
    try:
        with reachable(url):
            return _current(engine)
    finally:
        engine.dispose()


def _current(engine: Engine) -> str | None:
    """The revision in ``alembic_version`` (Alembic's own table; one row on a linear history)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) > 1:
        raise UserError(f"the index is at several revisions at once ({', '.join(sorted(rows))})",
                        "this index was migrated by something else than radcommons db upgrade")
    return rows[0] if rows else None


def is_current(engine: Engine) -> bool:
    """True when the database has the tables of the newest migration."""
    return _current(engine) == head_revision() and inspect(engine).has_table("alembic_version")


def engine_revision(engine: Engine) -> str | None:
    """The migration the database of ``engine`` is at (None when never migrated)."""
    return _current(engine)
