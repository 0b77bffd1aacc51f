"""Fixtures for the contribution tests: a synthetic corpus, a key file, prepared plans per site."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from contribute_support import KEY, PROJECTS, RealCommons, make_request
from serve_support import free_port, start_server

from radcommons.pipelines.contribute import ContributionPlan, prepare
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


def _cli(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "radcommons", *args], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def commons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCommons]:
    """A real server on a fresh SQLite index and local object store, shared by this folder's tests
    (each test sends to a project of its own, so none sees another's files)."""
    root = tmp_path_factory.mktemp("commons")
    env = {**os.environ, "RADCOMMONS_DATABASE_URL": f"sqlite:///{root / 'index.db'}",
           "RADCOMMONS_OBJECT_STORE_URL": str(root / "objects"), "COLUMNS": "200"}
    _cli("db", "upgrade", env=env)
    token_files = {}
    for site in ("SITE_A", "SITE_B", "SITE_C"):
        user = site.lower().replace("_", "-")
        _cli("admin", "user", "add", user, "--role", "contributor", "--site", site,
             *[arg for project in PROJECTS for arg in ("--project", project)], env=env)
        token_files[site] = root / f"{user}.token"
        token_files[site].write_text(_cli("admin", "token", "create", user, env=env))
    port = free_port()
    server = start_server(root, port, env)
    try:
        yield RealCommons(f"http://127.0.0.1:{port}", root, token_files)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
