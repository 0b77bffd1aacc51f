"""An open submission never committed can be found and ended by an operator: ``radcommons admin
submission list`` and ``abandon`` (through the CLI) against a real ``radcommons serve``, both
backends. Abandoned, its spool is gone, an upload or a commit to it is a 409, its uploaded object
is no longer in use (``objects unreferenced`` lists it); a recent one and a committed one are spared."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

from commons_fixtures import PROJECT, Commons, instances_of
from sqlalchemy import update

from radcommons.client import ManifestEntry
from radcommons.store.index import make_engine
from radcommons.store.index.schema import system_table

_DAYS_AGO = 40


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


def test_an_idle_open_submission_is_listed_abandoned_and_refused(commons: Commons, deid_tree: Path, run_cli) -> None:
    first, second, third = instances_of(deid_tree)[:3]
    client = commons.client()
    # idle: one file uploaded (an object only it names), another half sent (spooled)
    idle = client.create_submission(PROJECT, "idle-ds")
    sent = client.upload_file(idle.id, first.path)
    data = second.path.read_bytes()
    half_sha = hashlib.sha256(data).hexdigest()
    with commons.http() as http:
        answer = http.patch(f"/submissions/{idle.id}/files/{half_sha}", content=data[: len(data) // 2],
                            headers={"Upload-Offset": "0", "Upload-Length": str(len(data))})
        assert answer.status_code in (200, 204), answer.text
    spool = commons.root / "state" / "uploads" / str(idle.id)
    assert any(spool.glob("*.part"))
    _age(commons, idle.id)
    recent = client.create_submission(PROJECT, "recent-ds")
    done = client.create_submission(PROJECT, "done-ds")
    kept = client.upload_file(done.id, third.path)
    client.put_study_manifest(done.id, third.study_uid, [ManifestEntry(kept.sha256, kept.size, third.path.name)])
    client.commit(done.id)

    env = {"RADCOMMONS_OBJECT_STORE_URL": str(commons.store_dir)}
    where = ["--state-dir", str(commons.root / "state"), "--url", commons.db_url]

    def cli(*args: str):
        return run_cli("admin", "submission", *args, *where, env=env)

    def unreferenced() -> str:
        found = run_cli("objects", "unreferenced", "--older-than", "0", "--store", str(commons.store_dir),
                        "--url", commons.db_url, env=env)
        assert found.returncode == 0, found.stderr
        return found.stdout

    assert sent.sha256 not in unreferenced()  # an open submission's upload is in use
    listed = cli("list", "--open", "--older-than", "30")
    assert listed.returncode == 0, listed.stderr
    assert "idle-ds" in listed.stdout and "recent-ds" not in listed.stdout and "done-ds" not in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if "idle-ds" in line)
    assert str(len(data) // 2) in row and str(sent.size) in row  # spooled bytes, uploaded bytes
    everything = cli("list")
    assert all(name in everything.stdout for name in ("idle-ds", "recent-ds", "done-ds", "committed"))

    ended = cli("abandon", "--older-than", "30", "--yes")
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert f"abandoned submission {idle.id}" in ended.stdout and f"submission {recent.id}" not in ended.stdout
    assert not spool.exists()
    assert sent.sha256 in unreferenced()  # its upload is no longer in use
    states = {s.id: s.status for s in client.list_submissions()}
    assert states[idle.id] == "abandoned" and states[recent.id] == "open"

    with commons.http() as http:
        # the rest of the half-sent file (a short chunk: the answer comes before the body is read)
        refused = [http.patch(f"/submissions/{idle.id}/files/{half_sha}", content=data[len(data) // 2:][:64],
                              headers={"Upload-Offset": str(len(data) // 2), "Upload-Length": str(len(data))}),
                   http.post(f"/submissions/{idle.id}/commit")]
    for answer in refused:
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "submission_closed" and "abandoned" in error["message"]
        assert "start a new submission" in error["hint"]
    assert not spool.exists()  # the refused upload left nothing

    again = cli("abandon", str(done.id), "--yes")
    assert again.returncode == 1
    assert f"submission {done.id}" in again.stderr and "was committed" in again.stderr
    assert "only an open submission can be abandoned" in again.stderr and "Traceback" not in again.stderr
    audit = run_cli("admin", "audit", "--action", "submission.abandon", "--json", "--url", commons.db_url, env=env)
    events = [json.loads(line) for line in audit.stdout.splitlines() if line.strip()]
    assert [e["target"] for e in events] == [f"submission {idle.id}"]
    # the dataset can be sent again: a new submission, not the abandoned one
    assert client.create_submission(PROJECT, "idle-ds").id not in (idle.id, recent.id, done.id)
