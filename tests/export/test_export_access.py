"""``radcommons export`` through the CLI: for whom (the server's access decision), and --query FILE.

The session commons (export_support.py) holds an open project and a sequestered one, and a
cohort of every series frozen with admin scope, so it has members in both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pyarrow.parquet as pq
import pytest
from export_support import OPEN, SEQUESTERED, Commons

from radcommons.store.index import make_engine
from radcommons.store.index.accounts import add_user, get_user, set_disabled
from radcommons.store.index.dua import accept
from radcommons.store.query import save_query

RESEARCHER, NO_DUA, ADMIN = "exp-researcher", "exp-no-dua", "exp-admin"
Cli = Callable[..., CompletedProcess[str]]


def _env(commons: Commons) -> dict[str, str]:
    return {"RADCOMMONS_DATABASE_URL": commons.db_url, "RADCOMMONS_OBJECT_STORE_URL": commons.store_url}


@pytest.fixture(scope="module")
def users(commons: Commons) -> Commons:
    """A researcher who accepted the data use agreement, one who did not, and an admin (made in the
    process: 'admin user add' through a process is tests/cli/test_admin_grants.py's)."""
    engine = make_engine(commons.db_url)
    try:
        for name, role in ((RESEARCHER, "researcher"), (NO_DUA, "researcher"), (ADMIN, "admin")):
            add_user(engine, name, role)
        accept(engine, get_user(engine, RESEARCHER).id, RESEARCHER)
    finally:
        engine.dispose()
    return commons


def _export(run_cli: Cli, commons: Commons, *args: str) -> CompletedProcess[str]:
    return run_cli("export", *args, env=_env(commons))


def _projects(dest: Path) -> set[str]:
    return {row["project_id"] for row in pq.read_table(dest / "labels.parquet").to_pylist()}


def _refused(done: CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def test_a_researcher_never_gets_sequestered_data(users: Commons, run_cli: Cli, tmp_path: Path) -> None:
    dest = tmp_path / "researcher"
    done = _export(run_cli, users, users.cohort_id, str(dest), "--for", RESEARCHER)
    assert done.returncode == 0, done.stderr
    assert _projects(dest) == {OPEN}
    assert not (dest / SEQUESTERED).exists()
    readme = (dest / "README.md").read_text()
    assert f"made for: {RESEARCHER}" in readme
    assert SEQUESTERED not in readme  # a sequestered project never enters what a researcher sees

    refused = _export(run_cli, users, users.cohort_id, str(tmp_path / "asked"), "--for", RESEARCHER,
                      "--include-sequestered")
    _refused(refused, f"'{RESEARCHER}' is a researcher", "sequestered projects are never exported", "hint:")
    assert not (tmp_path / "asked").exists()


def test_an_admin_gets_sequestered_data_only_when_asking(users: Commons, run_cli: Cli, tmp_path: Path) -> None:
    plain = _export(run_cli, users, users.cohort_id, str(tmp_path / "plain"), "--as-admin")
    assert plain.returncode == 0, plain.stderr
    assert _projects(tmp_path / "plain") == {OPEN}
    for who in (("--as-admin",), ("--for", ADMIN)):
        dest = tmp_path / who[-1].strip("-")
        done = _export(run_cli, users, users.cohort_id, str(dest), *who, "--include-sequestered")
        assert done.returncode == 0, done.stderr
        assert _projects(dest) == {OPEN, SEQUESTERED}
        assert (dest / SEQUESTERED / users.sequestered_patient).is_dir()


def test_the_export_must_name_whom_it_is_for(users: Commons, run_cli: Cli, tmp_path: Path) -> None:
    dest = str(tmp_path / "x")
    _refused(_export(run_cli, users, users.cohort_id, dest), "say whom the export is for", "--for", "--as-admin")
    _refused(_export(run_cli, users, users.cohort_id, dest, "--for", RESEARCHER, "--as-admin"), "not both")
    _refused(_export(run_cli, users, users.cohort_id, dest, "--for", "nobody-here"), "no user named 'nobody-here'")
    _refused(_export(run_cli, users, users.cohort_id, dest, "--for", NO_DUA),
             f"'{NO_DUA}' has not accepted the data use agreement", "accept_dua")
    assert not (tmp_path / "x").exists()


def test_no_export_for_a_disabled_user(users: Commons, run_cli: Cli, tmp_path: Path) -> None:
    engine = make_engine(users.db_url)
    try:
        accept(engine, add_user(engine, "exp-leaver", "researcher").id, "exp-leaver")
        set_disabled(engine, "exp-leaver", True)  # as 'radcommons admin user disable' does
    finally:
        engine.dispose()
    _refused(_export(run_cli, users, users.cohort_id, str(tmp_path / "x"), "--for", "exp-leaver"),
             "'exp-leaver' is disabled")


def test_export_of_a_query_file(users: Commons, run_cli: Cli, tmp_path: Path) -> None:
    query = tmp_path / "ct.json"
    query.write_text(json.dumps({"node": "series", "filter": {"=": {"modality": "CT"}}}))
    dest = tmp_path / "ct"
    done = _export(run_cli, users, str(dest), "--query", str(query), "--for", RESEARCHER)
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(dest / "labels.parquet").to_pylist()
    assert rows and {row["modality"] for row in rows} == {"CT"} and {row["project_id"] for row in rows} == {OPEN}
    readme = (dest / "README.md").read_text()
    assert "query ct.json" in readme and "run at export time" in readme and '"modality": "CT"' in readme

    # Every series, for the researcher: still nothing sequestered; for an admin who asks: both projects.
    everything = tmp_path / "all.json"
    everything.write_text(json.dumps({"node": "case", "filter": None}))
    done = _export(run_cli, users, str(tmp_path / "all-r"), "--query", str(everything), "--for", RESEARCHER)
    assert done.returncode == 0, done.stderr
    assert _projects(tmp_path / "all-r") == {OPEN}
    done = _export(run_cli, users, str(tmp_path / "all-a"), "--query", str(everything), "--as-admin",
                   "--include-sequestered")
    assert done.returncode == 0, done.stderr
    assert _projects(tmp_path / "all-a") == {OPEN, SEQUESTERED}


@pytest.mark.parametrize(("content", "words"), [
    ("{not json", ["bad.json: not JSON", "hint:"]),
    ('["=", "CT"]', ["bad.json: the query must be a JSON object, not list"]),
    ('{"node": "series", "filter": {"=": {"modalty": "CT"}}}', ["bad.json:", "modalty", "did you mean 'modality'"]),
    ('{"node": "project", "filter": null}', ["bad.json: node 'project' cannot be exported", "imaging_study"]),
    ('{"filter": {"=": {"modality": "CT"}}}', ["bad.json: the query names no node"]),
    ('{"node": "series", "fliter": {}}', ["bad.json: unknown key(s) fliter"]),
])
def test_a_bad_query_file_is_explained(users: Commons, run_cli: Cli, tmp_path: Path, content: str,
                                       words: list[str]) -> None:
    (tmp_path / "bad.json").write_text(content)
    _refused(_export(run_cli, users, str(tmp_path / "out"), "--query", str(tmp_path / "bad.json"), "--as-admin"),
             *words)
    assert not (tmp_path / "out").exists()


def test_query_arguments_are_checked(users: Commons, run_cli: Cli, tmp_path: Path) -> None:
    _refused(_export(run_cli, users, str(tmp_path / "out"), "--query", str(tmp_path / "missing.json"), "--as-admin"),
             "missing.json: cannot read the query file")
    (tmp_path / "q.json").write_text('{"node": "series"}')
    _refused(_export(run_cli, users, users.cohort_id, str(tmp_path / "out"), "--query", str(tmp_path / "q.json"),
                     "--as-admin"), "with --query give only DEST")
    _refused(_export(run_cli, users, str(tmp_path / "out"), "--as-admin"), "expected COHORT DEST")


def test_export_of_a_saved_query(users: Commons, run_cli: Cli, tmp_path: Path) -> None:
    engine = make_engine(users.db_url)
    try:
        saved = save_query(engine, "radiographs", "series", {"in": {"modality": ["CR", "DX"]}}, owner=RESEARCHER)
    finally:
        engine.dispose()
    dest = tmp_path / "saved"
    done = _export(run_cli, users, str(saved.id), str(dest), "--for", RESEARCHER, "--format", "png", "--size", "64")
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(dest / "labels.parquet").to_pylist()
    assert rows and {row["modality"] for row in rows} <= {"CR", "DX"} and _projects(dest) == {OPEN}
    assert f"saved query {saved.id}" in (dest / "README.md").read_text()
