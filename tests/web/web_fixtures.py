"""A commons with data for the browser tests: synthetic sites, an open and a sequestered project.

Built the way an operator would, with real commands (``radcommons synth``, ``db upgrade``,
``admin``, ``serve``, ``contribute``, ``deid``, ``ingest``; processes forked by
:mod:`serve_support`'s fork server), once per session:

* the contributing site's account and token are made with ``radcommons admin`` (the token goes in
  a file for ``contribute``); the admin, curator and researcher accounts in this process, as
  commons_fixtures.make_commons makes them (six processes fewer);
* SITE_A contributes to the open project ``Open-A1`` through the API, with its clinical files
  (so cases have tests, visits and breathing support for the timeline);
* one SITE_B patient's de-identified studies are ingested into the sequestered project ``Seq-B1``
  (the tests need it to hold some cases, not all four);
* one raw (not de-identified) SITE_B image is ingested into ``Open-A1``: it fails the gate and
  is held in the quarantine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from serve_support import ServerProcess, free_port, run_radcommons, start_server

from radcommons.store.index import make_engine
from radcommons.store.index.accounts import add_user, create_token

OPEN_PROJECT, SEQUESTERED_PROJECT = "Open-A1", "Seq-B1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
#: Accounts made in this process: name -> role (the contributor ``uploader`` is made with the command line).
USERS = {"admin": "admin", "curator": "curator", "reader": "researcher"}



@dataclass
class WebCommons:
    root: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    process: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, *args: str, exit_code: int = 0) -> str:
        done = run_radcommons(list(args), self.root, self.env)
        assert done.returncode == exit_code, f"radcommons {' '.join(args[:2])} exited {done.returncode}:\n" \
                                             f"{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self) -> None:
        self.process = start_server(self.root, self.port, self.env)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def build_commons(root: Path) -> WebCommons:
    """Data, users and a running server under ``root`` (see the module docstring)."""
    env = {**os.environ, "COLUMNS": "200", "RADCOMMONS_DATABASE_URL": f"sqlite:///{root / 'index.db'}",
           "RADCOMMONS_OBJECT_STORE_URL": str(root / "objects")}
    commons = WebCommons(root, env)
    commons.run("synth", "synth", "--sites", "2", "--patients", "4", "--seed", "7", "--small")
    commons.run("db", "upgrade")
    commons.run("admin", "user", "add", "uploader", "--role", "contributor", "--project", OPEN_PROJECT,
                "--site", "SITE_A")
    commons.tokens["uploader"] = commons.run("admin", "token", "create", "uploader", "--label", "web-tests").strip()
    engine = make_engine(env["RADCOMMONS_DATABASE_URL"])
    try:
        for name, role in USERS.items():
            add_user(engine, name, role)
            commons.tokens[name] = create_token(engine, name, label="web-tests")[0]
    finally:
        engine.dispose()
    (root / "uploader.token").write_text(commons.tokens["uploader"])
    os.chmod(root / "uploader.token", 0o600)
    commons.run("keygen", "key")
    commons.start()
    commons.run("contribute", "synth/site_a", "--clinical", "synth/site_a/clinical", "--site", "SITE_A",
                "--project", OPEN_PROJECT, "--server", commons.url, "--token-file", "uploader.token",
                "--key-file", "key", "--state-dir", "state-a", "--dataset", "SITE_A_web", "--allow-partial",
                "--workers", "1")  # more would spawn de-identification processes: seconds to start, for 4 patients
    patient = min(p.name for p in (root / "synth" / "site_b").iterdir() if p.is_dir() and p.name != "clinical")
    commons.run("deid", f"synth/site_b/{patient}", "deid_b", "--site", "SITE_B", "--key-file", "key",
                "--state-dir", "state-b")
    commons.run("ingest", "deid_b", "--project", SEQUESTERED_PROJECT, "--site", "SITE_B",
                "--availability", "sequestered")
    raw = next(p for p in sorted((root / "synth" / "site_b").rglob("*.dcm")))
    commons.run("ingest", str(raw), "--project", OPEN_PROJECT, "--site", "SITE_B", exit_code=1)  # quarantined
    return commons


@pytest.fixture(scope="session")
def web_commons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebCommons]:
    commons = build_commons(tmp_path_factory.mktemp("web-commons"))
    try:
        yield commons
    finally:
        commons.stop()
