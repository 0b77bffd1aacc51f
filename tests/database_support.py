"""A fresh PostgreSQL database for a test or a module of tests (shared by test folders; conftest
modules cannot be imported)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432"


def pg_server() -> str:
    """The PostgreSQL server the tests use (``RADCOMMONS_TEST_PG``), as a URL without a database."""
    return os.environ.get("RADCOMMONS_TEST_PG", PG_DEFAULT).rstrip("/")


@contextlib.contextmanager
def pg_database(admin: psycopg.Connection) -> Iterator[str]:
    """The URL of a uniquely named, empty database on :func:`pg_server`, dropped afterwards
    (``admin``: the ``pg_admin`` fixture's autocommit connection)."""
    name = f"rc_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_server()}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
