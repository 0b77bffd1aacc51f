"""Fixtures for the contribution tests: a synthetic corpus, a key file, prepared plans per site."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from contribute_support import KEY, PROJECTS, RealCommons, make_request
from serve_support import free_port, start_server

from radcommons.pipelines.contribute import ContributionPlan, prepare
from radcommons.store.index import make_engine, upgrade
from radcommons.store.index.accounts import add_user, create_token
from radcommons.synth.generate import generate


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contribute") / "synth"
    generate(out, 3, 3, 2, small=True, defects=True)
    return out


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "deid.key"
    path.write_text(KEY.hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def plans(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ContributionPlan]:
    """One prepared (dry-run) plan per site, without the defect corrections file."""
    return {site: prepare(make_request(corpus, site, tmp_path_factory.mktemp(f"state-{site}")))
            for site in ("site_a", "site_b", "site_c")}


@pytest.fixture(scope="session")
def commons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCommons]:
    """A real server on a fresh SQLite index and local object store, shared by this folder's tests
    (each test sends to a project of its own, so none sees another's files). Its users and tokens
    are made in this process, as ``commons_fixtures.make_commons`` makes them: seven ``radcommons``
    processes took seconds, and ``admin user add`` and ``admin token create`` have tests of their own
    (tests/server/test_auth.py)."""
    root = tmp_path_factory.mktemp("commons")
    database = f"sqlite:///{root / 'index.db'}"
    env = {**os.environ, "RADCOMMONS_DATABASE_URL": database, "RADCOMMONS_OBJECT_STORE_URL": str(root / "objects"),
           "COLUMNS": "200"}
    upgrade(database)
    engine = make_engine(database)
    token_files = {}
    try:
        for site in ("SITE_A", "SITE_B", "SITE_C"):
            user = site.lower().replace("_", "-")
            add_user(engine, user, "contributor", site_id=site, projects=PROJECTS)
            token_files[site] = root / f"{user}.token"
            token_files[site].write_text(create_token(engine, user)[0] + "\n")
    finally:
        engine.dispose()
    port = free_port()
    server = start_server(root, port, env)
    try:
        yield RealCommons(f"http://127.0.0.1:{port}", root, token_files)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
