"""Creating SQLAlchemy engines for the index (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from radcommons.errors import UserError
from radcommons.settings import mask_url_password


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; plain ``postgresql://`` uses the psycopg 3 driver.

    Raises :class:`UserError` for a URL that is not SQLite or PostgreSQL.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        raise UserError(
            f"cannot parse database URL {url!r}",
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise UserError(
            f"unsupported database {backend!r} in URL",
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
        )
    return parsed


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or None for in-memory SQLite and other databases."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url``; on SQLite, foreign keys are enforced and WAL journaling is on.

    SQLite leaves foreign keys off unless every connection asks for them, so a
    listener turns them on for each new connection. WAL lets readers work while
    an ingest writes. The folder of a SQLite file is created when missing.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserError(
                    f"cannot create the folder {path.parent} for the SQLite database: {error.strerror or error}",
                    "choose a writable path in the URL (sqlite:///PATH)",
                ) from None
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas(path is not None))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def _sqlite_pragmas(on_disk: bool) -> Any:
    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if on_disk:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return set_pragmas


@contextmanager
def reachable(url: str | URL) -> Iterator[None]:
    """Turn "cannot connect / cannot open" errors into a :class:`UserError` naming the URL (password masked)."""
    try:
        yield
    except DatabaseError as error:
        # cannot connect or open (OperationalError), or a file that is no database or is damaged
        # (SQLite's plain DatabaseError); an IntegrityError and the like are not about reaching it
        if not isinstance(error, OperationalError) and type(error) is not DatabaseError:
            raise
        shown = mask_url_password(normalize_url(url).render_as_string(hide_password=False))
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        path = sqlite_path(url)
        if path is not None:
            hint = (f"{path} must be a SQLite index file (radcommons db upgrade creates one) or not exist yet; "
                    "a damaged one is restored from a backup")
        else:
            hint = "check that the server runs and the URL (the database_url setting, RADCOMMONS_DATABASE_URL) is right"
        raise UserError(f"cannot use the database {shown}: {reason}", hint) from None
