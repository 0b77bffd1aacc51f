"""An open submission never committed can be found and ended: by an operator with ``radcommons
admin submission list`` and ``abandon`` against a real ``radcommons serve``, and over HTTP
(``POST /submissions/{id}/abandon``) by the site that owns it or an administrator; both backends,
one server per backend for the module. Abandoned, its spool is gone, an upload or a commit to it
is a 409, its uploaded object is no longer in use; a recent one and a committed one are spared.

Each command runs once as a real subprocess (its exit code and messages as an operator sees them);
the further calls go through the same Typer app in process."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from commons_fixtures import PROJECT, SITE, Commons, instances_of, make_commons
from database_support import pg_database
from sqlalchemy import select, update
from typer.testing import CliRunner

from radcommons.cli import app
from radcommons.client import ManifestEntry
from radcommons.pipelines.submission import unreferenced_objects
from radcommons.store.index import make_engine
from radcommons.store.index.schema import system_table
from radcommons.store.objects import ObjectStore

_DAYS_AGO = 40


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Commons]:
    """One commons per backend for this module's tests (each uses its own datasets)."""
    root = tmp_path_factory.mktemp(f"abandon-{request.param}")
    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{root / 'index.db'}" if request.param == "sqlite"
               else stack.enter_context(pg_database(request.getfixturevalue("pg_admin"))))
        server = make_commons(root, url)
        try:
            yield server
        finally:
            server.stop()


def _age(commons: Commons, submission_id: int) -> None:
    """Make submission ``submission_id`` look idle for :data:`_DAYS_AGO` days: its row, its audit
    events and its spool files, every source of its last activity."""
    then = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=_DAYS_AGO)
    engine = make_engine(commons.db_url)
    try:
        with engine.begin() as conn:
            # the audit log's append-only triggers are not for this test's past: off in this transaction only
            triggers = []
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            else:
                triggers = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                                "AND tbl_name = 'audit_event'").all()
                for name, _ in triggers:
                    conn.exec_driver_sql(f"DROP TRIGGER {name}")
            submissions, audit = system_table("submission"), system_table("audit_event")
            conn.execute(update(submissions).where(submissions.c.id == submission_id).values(created_at=then))
            conn.execute(update(audit).where(audit.c.target == f"submission {submission_id}").values(at=then))
            for _, sql in triggers:
                conn.exec_driver_sql(sql)
    finally:
        engine.dispose()
    for path in (commons.root / "state" / "uploads" / str(submission_id)).glob("*"):
        os.utime(path, (then.timestamp(), then.timestamp()))


def _abandon_events(commons: Commons, submission_ids: set[int]) -> list[tuple[str, str | None, str | None]]:
    """(target, actor, client) of each submission.abandon event of ``submission_ids``, oldest first."""
    audit = system_table("audit_event")
    engine = make_engine(commons.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit.c.target, audit.c.actor, audit.c.client)
                                .where(audit.c.action == "submission.abandon").order_by(audit.c.id)).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows if int(row.target.split()[-1]) in submission_ids]  # type: ignore[misc]


def _unreferenced(commons: Commons) -> set[str]:
    engine = make_engine(commons.db_url)
    try:
        return {item.digest for item in unreferenced_objects(engine, ObjectStore(str(commons.store_dir)),
                                                              _dt.timedelta(0))}
    finally:
        engine.dispose()


def _half_upload(commons: Commons, submission_id: int, data: bytes) -> None:
    """Send the first half of ``data``: a spool file, no object."""
    with commons.http() as http:
        answer = http.patch(f"/submissions/{submission_id}/files/{hashlib.sha256(data).hexdigest()}",
                            content=data[: len(data) // 2],
                            headers={"Upload-Offset": "0", "Upload-Length": str(len(data))})
        assert answer.status_code in (200, 204), answer.text


def _assert_closed(answer, state: str = "abandoned", hint: str = "start a new submission") -> None:
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "submission_closed" and state in error["message"] and hint in error["hint"], error


def test_an_idle_open_submission_is_listed_abandoned_and_refused(shared: Commons, deid_tree: Path, run_cli) -> None:
    commons = shared
    first, second, third = instances_of(deid_tree)[:3]
    client = commons.client()
    # idle: one file uploaded (an object only it names), another half sent (spooled)
    idle = client.create_submission(PROJECT, "idle-ds")
    sent = client.upload_file(idle.id, first.path)
    data = second.path.read_bytes()
    half_sha = hashlib.sha256(data).hexdigest()
    _half_upload(commons, idle.id, data)
    spool = commons.root / "state" / "uploads" / str(idle.id)
    assert any(spool.glob("*.part"))
    _age(commons, idle.id)
    recent = client.create_submission(PROJECT, "recent-ds")
    done = client.create_submission(PROJECT, "done-ds")
    kept = client.upload_file(done.id, third.path)
    client.put_study_manifest(done.id, third.study_uid, [ManifestEntry(kept.sha256, kept.size, third.path.name)])
    client.commit(done.id)

    # the admin commands read the index and the spool, never the object store: an unusable one stops nothing
    env = {"RADCOMMONS_OBJECT_STORE_URL": "nosuchprotocol://unreachable/objects"}
    where = ["--state-dir", str(commons.root / "state"), "--url", commons.db_url]
    runner = CliRunner()

    def in_process(*args: str):
        return runner.invoke(app, ["admin", "submission", *args, *where], env={**env, "COLUMNS": "250"})

    assert sent.sha256 not in _unreferenced(commons)  # an open submission's upload is in use
    listed = run_cli("admin", "submission", "list", "--open", "--older-than", "30", *where, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "idle-ds" in listed.stdout and "recent-ds" not in listed.stdout and "done-ds" not in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if "idle-ds" in line)
    assert str(len(data) // 2) in row and str(sent.size) in row  # spooled bytes, uploaded bytes
    everything = in_process("list")
    assert everything.exit_code == 0, everything.output
    assert all(name in everything.output for name in ("idle-ds", "recent-ds", "done-ds", "committed"))

    ended = run_cli("admin", "submission", "abandon", "--older-than", "30", "--yes", *where, env=env)
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert f"abandoned submission {idle.id}" in ended.stdout and f"submission {recent.id}" not in ended.stdout
    assert not spool.exists()
    assert sent.sha256 in _unreferenced(commons)  # its upload is no longer in use
    states = {s.id: s.status for s in client.list_submissions()}
    assert states[idle.id] == "abandoned" and states[recent.id] == "open"

    with commons.http() as http:
        # the rest of the half-sent file (a short chunk: the answer comes before the body is read)
        refused = [http.patch(f"/submissions/{idle.id}/files/{half_sha}", content=data[len(data) // 2:][:64],
                              headers={"Upload-Offset": str(len(data) // 2), "Upload-Length": str(len(data))}),
                   http.post(f"/submissions/{idle.id}/commit")]
    for answer in refused:
        _assert_closed(answer)
    assert not spool.exists()  # the refused upload left nothing

    again = in_process("abandon", str(done.id), "--yes")
    assert again.exit_code == 1
    assert f"submission {done.id}" in again.output and "was committed" in again.output
    assert "only an open submission can be abandoned" in again.output
    assert _abandon_events(commons, {idle.id, recent.id, done.id}) == [(f"submission {idle.id}", "admin-cli", None)]
    # the dataset can be sent again: a new submission, not the abandoned one
    assert client.create_submission(PROJECT, "idle-ds").id not in (idle.id, recent.id, done.id)


def test_a_site_abandons_its_own_submission_over_http_and_an_admin_any(shared: Commons, deid_tree: Path) -> None:
    commons = shared
    first, second, third = instances_of(deid_tree)[3:6]
    client = commons.client()
    own = client.create_submission(PROJECT, "http-own")
    sent = client.upload_file(own.id, first.path)
    data = second.path.read_bytes()
    _half_upload(commons, own.id, data)
    spool = commons.root / "state" / "uploads" / str(own.id)
    assert any(spool.glob("*.part"))

    for user in ("other-site", "reader", "curator"):  # another site's, a researcher, a curator who did not create it
        with commons.http(user) as http:
            answer = http.post(f"/submissions/{own.id}/abandon")
        assert answer.status_code == 403, (user, answer.text)
        assert answer.json()["error"]["code"] == "forbidden"
    with commons.http(None) as http:
        assert http.post(f"/submissions/{own.id}/abandon").status_code == 401
    assert any(spool.glob("*.part"))  # nothing changed

    with commons.http() as http:
        ended = http.post(f"/submissions/{own.id}/abandon")
        assert ended.status_code == 200, ended.text
        assert ended.json()["status"] == "abandoned" and ended.json()["id"] == own.id
        assert not spool.exists()
        _assert_closed(http.post(f"/submissions/{own.id}/abandon"), "already abandoned", "nothing to do")
        _assert_closed(http.patch(f"/submissions/{own.id}/files/{hashlib.sha256(data).hexdigest()}",
                                  content=data[:64], headers={"Upload-Offset": "0",
                                                              "Upload-Length": str(len(data))}))
        assert http.get(f"/submissions/{own.id}").json()["status"] == "abandoned"
    assert sent.sha256 in _unreferenced(commons)

    # an administrator ends any open one; a committed one is refused; an unknown one is not found
    other = client.create_submission(PROJECT, "http-admin")
    done = client.create_submission(PROJECT, "http-done")
    kept = client.upload_file(done.id, third.path)
    client.put_study_manifest(done.id, third.study_uid, [ManifestEntry(kept.sha256, kept.size, third.path.name)])
    client.commit(done.id)
    with commons.http("admin") as http:
        assert http.post(f"/submissions/{other.id}/abandon").json()["status"] == "abandoned"
        refused = http.post(f"/submissions/{done.id}/abandon")
        _assert_closed(refused, "was committed", "a new submission")
        assert "only an open submission can be abandoned" in refused.json()["error"]["message"]
        missing = http.post("/submissions/999999/abandon")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    # a curator ends the submissions it created
    mine = commons.client("curator").create_submission(PROJECT, "http-curator", site_id=SITE)
    with commons.http("curator") as http:
        assert http.post(f"/submissions/{mine.id}/abandon").json()["status"] == "abandoned"

    events = _abandon_events(commons, {own.id, other.id, done.id, mine.id})
    assert [(target, actor) for target, actor, _ in events] == [
        (f"submission {own.id}", "uploader"), (f"submission {other.id}", "admin"),
        (f"submission {mine.id}", "curator")]
    assert all((client_address or "").startswith("127.0.0.1:") for _, _, client_address in events)
