"""Migrations build exactly the schema the dictionary describes, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
import pytest
from sqlalchemy import MetaData, delete, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError

from radcommons.dictionary import Property, PropertyType, load_dictionary
from radcommons.store.index.schema import system_table
from radcommons.store.index.system import SYSTEM_TABLES
from radcommons.store.index import (
    VERSION_TABLE,
    build_metadata,
    current_revision,
    downgrade,
    get_metadata,
    head_revision,
    make_engine,
    schema_dictionary_version,
    upgrade,
)


def differences(url: str, metadata: MetaData) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_creates_every_table(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(load_dictionary().node_names) | set(SYSTEM_TABLES) | {VERSION_TABLE} <= tables
        assert set(get_metadata().tables) | {"alembic_version"} == tables
        assert schema_dictionary_version(engine) == load_dictionary().version
    finally:
        engine.dispose()
    assert current_revision(migrated_url) == head_revision()


def test_migrations_equal_the_dictionary_metadata(migrated_url: str) -> None:
    # A dictionary change without a migration makes this fail: write a new revision.
    assert differences(migrated_url, get_metadata()) == []


def test_a_dictionary_change_without_migration_is_detected(migrated_url: str) -> None:
    dictionary = load_dictionary()
    case = dictionary["case"]
    extra = Property(name="blood_type", type=PropertyType.STRING, max_length=8, facet=True)
    changed = dataclasses.replace(
        dictionary,
        nodes=tuple(dataclasses.replace(n, properties=(*n.properties, extra)) if n is case else n
                    for n in dictionary.nodes),
    )
    found = differences(migrated_url, build_metadata(changed))
    kinds = {(d[0], getattr(d[-1], "name", None)) for d in found if isinstance(d, tuple)}
    assert ("add_column", "blood_type") in kinds
    assert ("add_index", "ix_case_blood_type") in kinds


def test_downgrade_to_base_and_upgrade_again(migrated_url: str) -> None:
    assert downgrade(migrated_url, "base") is None
    engine = make_engine(migrated_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    assert upgrade(migrated_url) == head_revision()
    assert differences(migrated_url, get_metadata()) == []


def test_upgrade_is_idempotent(migrated_url: str) -> None:
    assert upgrade(migrated_url) == head_revision()


def test_head_revision_read_from_the_scripts_is_alembics() -> None:
    from radcommons.store.index.migrate import alembic_head_revision

    assert head_revision() == alembic_head_revision()


def test_the_revision_check_does_not_import_alembic(migrated_url: str) -> None:
    """Every command checks the index's revision; importing Alembic for it cost ~0.3 s a command."""
    code = ("import sys; from radcommons.cli.context import open_index; open_index(sys.argv[1]);"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'alembic'], 'alembic imported'")
    done = subprocess.run([sys.executable, "-c", code, migrated_url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


_KILLED_AT_SERIES_FACTS = """
import os, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine

@event.listens_for(Engine, "before_cursor_execute")
def killed(conn, cursor, statement, *args):
    if "CREATE TABLE series_facts" in statement:  # migration 0006, after five others
        os._exit(9)

from radcommons.store.index import upgrade
upgrade(sys.argv[1])
"""


def test_an_upgrade_killed_half_way_leaves_the_index_as_it_was(db_url: str) -> None:
    """On SQLite each DDL statement was committed on its own: an upgrade killed half way left
    tables of a later revision under the old alembic_version, and every later upgrade failed on
    'table ... already exists' (the commons stayed down)."""
    killed = subprocess.run([sys.executable, "-c", _KILLED_AT_SERIES_FACTS, db_url], capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == 9, killed.stderr
    assert current_revision(db_url) is None
    engine = make_engine(db_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    assert upgrade(db_url) == head_revision()


def test_two_upgrades_at_once_both_succeed(db_url: str) -> None:
    """The second used to fail: on PostgreSQL a unique violation creating alembic_version, on SQLite
    'table ... already exists'."""
    command = [sys.executable, "-m", "radcommons", "db", "upgrade", "--url", db_url]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, out + err
    assert current_revision(db_url) == head_revision()


def test_the_audit_log_refuses_update_and_delete(migrated_url: str) -> None:
    """Append-only in the database itself, on SQLite (revision 0015) as on PostgreSQL (0004): no client,
    the commons' own code included, can rewrite or remove who did what."""
    audit = system_table("audit_event")
    engine = make_engine(migrated_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(audit).values(actor="curator", action="quarantine.release", target="entry 1"))
        for statement in (update(audit).values(actor="nobody"), delete(audit)):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(statement)
        with engine.connect() as conn:
            assert conn.execute(select(audit.c.actor, audit.c.action)).all() == [("curator", "quarantine.release")]
    finally:
        engine.dispose()
