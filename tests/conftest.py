"""Fixtures shared by every test folder: the command line as a real subprocess, a fresh, empty
database per test, on SQLite and on PostgreSQL, and a de-identified synthetic site (``deid_tree``).

PostgreSQL: a uniquely named database is created on the server at
``RADCOMMONS_TEST_PG`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``,
administered through its ``test`` database) and dropped afterwards. Without a
server the PostgreSQL cases are skipped, except when ``CI`` is set: CI must have one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from database_support import pg_database, pg_server
from sqlalchemy.engine import make_url

from radcommons.store.index import upgrade

def _admin_conninfo() -> str:
    url = make_url(pg_server() + "/test")
    parts = {"host": url.host or "127.0.0.1", "port": url.port or 5432, "user": url.username or "postgres",
             "dbname": url.database or "test", "password": url.password}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection]:
    """An autocommit connection to the server's ``test`` database (skip or fail when absent)."""
    try:
        connection = psycopg.connect(_admin_conninfo(), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        reason = f"no PostgreSQL server at {pg_server()} ({str(error).strip().splitlines()[0]})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must provide one (set RADCOMMONS_TEST_PG)")
        pytest.skip(f"{reason}; set RADCOMMONS_TEST_PG to run the PostgreSQL tests")
    with connection:
        yield connection


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index' / 'radcommons.db'}"
        return
    with pg_database(request.getfixturevalue("pg_admin")) as url:
        yield url


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """A fresh database migrated to the newest revision."""
    upgrade(db_url)
    return db_url


@pytest.fixture(scope="session")
def deid_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """De-identified DICOM of one synthetic site (``SITE_A``: 30 instances, 11 studies, 3 patients),
    made with ``radcommons synth``, ``keygen`` and ``deid``, for the tests of every folder.

    Defined here once: imported into several folders' conftest.py, it was a fixture per folder to
    pytest, each with its own session cache, and the tree was made again for each folder.
    """
    root = tmp_path_factory.mktemp("deid-data")
    # One site: site_a's files are the same with --sites 2, whose site_b no test read.
    for args in (("synth", "synth", "--sites", "1", "--patients", "3", "--seed", "1", "--small"),
                 ("keygen", "key"),
                 ("deid", "synth/site_a", "deid", "--site", "SITE_A", "--key-file", "key", "--state-dir", "state")):
        done = subprocess.run([sys.executable, "-m", "radcommons", *args], cwd=root, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "COLUMNS": "200"})
        assert done.returncode == 0, done.stderr
    return root / "deid"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment without the caller's RADCOMMONS_* settings, and a wide, plain terminal."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "COLUMNS": "250",
        "NO_COLOR": "1",
        "TERM": "dumb",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra)
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli("config", "show", env={...})`` runs ``python -m radcommons config show`` in ``tmp_path``."""

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        return subprocess.run(
            [sys.executable, "-m", "radcommons", *args],
            cwd=cwd or tmp_path,
            env=clean_env(tmp_path, **(env or {})),
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture
def held_elsewhere() -> Callable[[Path], contextlib.AbstractContextManager[None]]:
    """``with held_elsewhere(folder):`` another process holds ``folder`` (``durable.folder_held``), as a
    run still writing there would; it is gone, and its lock with it, when the block ends."""

    @contextlib.contextmanager
    def hold(folder: Path) -> Iterator[None]:
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time\nfrom radcommons.durable import folder_held\n"
             "with folder_held(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)", str(folder)],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            yield
        finally:
            holder.kill()
            holder.wait(30)

    return hold
