"""Fixtures shared by every test folder: the command line as a real subprocess (``run_cli``; or
forked, ``forked_cli``, for the tests not about its process), a fresh, empty database per test,
on SQLite and on PostgreSQL (or a migrated one, copied from one migrated per session), and a
de-identified synthetic site (``deid_tree``).

PostgreSQL: a uniquely named database is created on the server at
``RADCOMMONS_TEST_PG`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``,
administered through its ``test`` database) and dropped afterwards. Without a
server the PostgreSQL cases are skipped, except when ``CI`` is set: CI must have one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from database_support import pg_copy, pg_database, pg_server
from serve_support import run_radcommons
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


@pytest.fixture(scope="session")
def sqlite_migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite index migrated to the newest revision, once per session (and xdist worker)."""
    path = tmp_path_factory.mktemp("migrated") / "radcommons.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_migrated(pg_admin: psycopg.Connection) -> Iterator[str]:
    """A PostgreSQL database migrated to the newest revision, once per session (and xdist worker)."""
    with pg_database(pg_admin) as url:
        upgrade(url)
        yield url


@pytest.fixture
def migrated_url(db_url: str, request: pytest.FixtureRequest) -> str:
    """A fresh database migrated to the newest revision: a copy of a database ``upgrade`` migrated
    once per session (the migrations took 0.5 s on SQLite and 1.8 s on PostgreSQL for each test;
    tests/index/test_migrations.py runs them on the tests' own databases)."""
    if db_url.startswith("sqlite:"):
        template: Path = request.getfixturevalue("sqlite_migrated")
        # WAL: the template's last connection is closed, so its pages are all in the file.
        assert not template.with_name(template.name + "-wal").exists(), "the migrated template is still open"
        target = Path(make_url(db_url).database or "")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, target)
    else:
        pg_copy(request.getfixturevalue("pg_admin"), db_url, request.getfixturevalue("pg_migrated"))
    return db_url


@pytest.fixture(scope="session")
def deid_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """De-identified DICOM of one synthetic site (``SITE_A``: 30 instances, 11 studies, 3 patients),
    made with ``radcommons synth``, ``keygen`` and ``deid`` (forked by :mod:`serve_support`'s fork
    server), for the tests of every folder.

    Defined here once: imported into several folders' conftest.py, it was a fixture per folder to
    pytest, each with its own session cache, and the tree was made again for each folder.
    """
    root = tmp_path_factory.mktemp("deid-data")
    # One site: site_a's files are the same with --sites 2, whose site_b no test read.
    for args in (("synth", "synth", "--sites", "1", "--patients", "3", "--seed", "1", "--small"),
                 ("keygen", "key"),
                 ("deid", "synth/site_a", "deid", "--site", "SITE_A", "--key-file", "key", "--state-dir", "state",
                  "--workers", "1")):  # inline: helper processes took seconds to start, for 30 files
        done = run_radcommons(list(args), root, {**os.environ, "COLUMNS": "200"}, timeout=300)
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
def forked_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli``'s twin for the tests that use a command to get something done rather than test
    the command's process: the command runs as a process forked by :mod:`serve_support`'s fork
    server (its modules already imported: 0.05 s a command instead of 1 to 3 s), with the same
    arguments, environment and folder. What an interpreter reads as it starts is the fork
    server's, not the test's (``PYTHON*`` variables, the locale from ``LANG``, an import that
    fails lazily; ``TZ`` is applied): tests about those use ``run_cli``."""

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        return run_radcommons(list(args), cwd or tmp_path, clean_env(tmp_path, **(env or {})), timeout=120)

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
