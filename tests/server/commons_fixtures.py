"""Fixtures and helpers of the server tests: a real commons server in a process of its own, on a free port.

``deid_tree`` (the de-identified site the tests ingest) is in tests/conftest.py.
``commons``: on the migrated database of ``migrated_url`` (SQLite, and PostgreSQL for the tests
that ask for it), makes users and tokens, starts ``radcommons serve`` and stops it afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from serve_support import ServerProcess, start_server
import pydicom
import pytest

from radcommons.client import CommonsClient
from radcommons.store.index import make_engine, upgrade
from radcommons.store.index.accounts import add_user, create_token
from serve_support import free_port

PROJECT = "Open-A1"
SITE = "SITE_A"


@dataclass(frozen=True)
class Instance:
    path: Path
    study_uid: str
    patient_id: str
    sop_uid: str


def instances_of(tree: Path) -> list[Instance]:
    found = []
    for path in sorted(tree.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found.append(Instance(path, str(ds.StudyInstanceUID), str(ds.PatientID), str(ds.SOPInstanceUID)))
    return found



@dataclass
class Commons:
    """A running server and the tokens of its users."""

    root: Path
    db_url: str
    store_dir: Path
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, user: str = "uploader", **kwargs: object) -> CommonsClient:
        kwargs.setdefault("backoff", 0.05)
        return CommonsClient(self.url, self.tokens[user], **kwargs)  # type: ignore[arg-type]

    def http(self, user: str | None = "uploader") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=60)

    def start(self) -> None:
        env = {**os.environ, "RADCOMMONS_DATABASE_URL": self.db_url,
               "RADCOMMONS_OBJECT_STORE_URL": str(self.store_dir)}
        self.process = start_server(self.root, self.port, env)

    def kill(self) -> None:
        """``kill -9``: no shutdown handlers run."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def make_commons(root: Path, db_url: str) -> Commons:
    upgrade(db_url)  # a few milliseconds when ``migrated_url`` made it
    engine = make_engine(db_url)
    try:
        add_user(engine, "admin", "admin")
        add_user(engine, "curator", "curator")
        add_user(engine, "uploader", "contributor", site_id=SITE, projects=[PROJECT])
        add_user(engine, "other-site", "contributor", site_id="SITE_B", projects=["Open-B1"])
        add_user(engine, "reader", "researcher")
        tokens = {name: create_token(engine, name)[0] for name in ("admin", "curator", "uploader", "other-site",
                                                                   "reader")}
    finally:
        engine.dispose()
    commons = Commons(root, db_url, root / "objects", tokens=tokens)
    commons.start()
    return commons


@pytest.fixture
def commons(migrated_url: str, tmp_path: Path) -> Iterator[Commons]:
    server = make_commons(tmp_path, migrated_url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_commons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Commons]:
    """One SQLite-backed server shared by the tests that do not need an empty commons (each uses its own datasets)."""
    root = tmp_path_factory.mktemp("shared-commons")
    server = make_commons(root, f"sqlite:///{root / 'index.db'}")
    try:
        yield server
    finally:
        server.stop()
