"""What names an object, asked set-wise (``unreferenced_objects``, ``discard_unrecorded_objects``):
each kind of name keeps its object, on SQLite and PostgreSQL, across more than one ``IN`` list of
500 digests; what only a committed or abandoned submission, a released quarantine entry or nothing
names is listed and removed."""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path

from sqlalchemy import event, insert

from radcommons.pipelines.submission import discard_unrecorded_objects, unreferenced_objects
from radcommons.store.index import make_engine
from radcommons.store.index.schema import system_table
from radcommons.store.index.system import (
    QUARANTINE_HELD,
    QUARANTINE_RELEASED,
    SUBMISSION_ABANDONED,
    SUBMISSION_COMMITTED,
    SUBMISSION_OPEN,
)
from radcommons.store.objects import ObjectStore

#: Unnamed objects beside the named ones: more than one list of 500 digests.
_UNNAMED = 520


def _put(store: ObjectStore, label: str) -> str:
    return store.put_bytes(label.encode()).digest


def test_each_kind_of_name_keeps_its_object(migrated_url: str, tmp_path: Path) -> None:
    store = ObjectStore(f"memory://in-use-{tmp_path.name}")
    named = {kind: _put(store, kind) for kind in (
        "held", "pinned", "open-declared", "open-uploaded", "old-version", "latest-version")}
    unnamed = {kind: _put(store, kind) for kind in ("released", "committed", "abandoned")}
    unnamed.update({f"stray-{n}": _put(store, f"stray {n}") for n in range(_UNNAMED)})
    engine = make_engine(migrated_url)
    try:
        with engine.begin() as conn:
            submission, files = system_table("submission"), system_table("submission_file")
            ids = {status: conn.execute(insert(submission).values(
                project_id="P1", dataset=f"ds-{status}", site_id="SITE_A", status=status, created_by="t",
                created_at=_dt.datetime.now(_dt.timezone.utc)).returning(submission.c.id)).scalar_one()
                for status in (SUBMISSION_OPEN, SUBMISSION_COMMITTED, SUBMISSION_ABANDONED)}
            conn.execute(insert(files), [
                {"submission_id": ids[SUBMISSION_OPEN], "sha256": named["open-declared"], "study_uid": "1.2",
                 "status": None},
                {"submission_id": ids[SUBMISSION_OPEN], "sha256": named["open-uploaded"], "study_uid": None,
                 "status": "uploaded"},
                {"submission_id": ids[SUBMISSION_COMMITTED], "sha256": unnamed["committed"], "study_uid": "1.2",
                 "status": "rejected"},
                {"submission_id": ids[SUBMISSION_ABANDONED], "sha256": unnamed["abandoned"], "study_uid": None,
                 "status": "uploaded"},
            ])
            conn.execute(insert(system_table("quarantine")), [
                {"project_id": "P1", "source": "ingest", "sha256": digest, "reason": "r", "status": status}
                for digest, status in ((named["held"], QUARANTINE_HELD), (unnamed["released"], QUARANTINE_RELEASED))])
            cohort = conn.execute(insert(system_table("cohort")).values(
                name="c", owner="t", node="imaging_study", filter={}).returning(system_table("cohort").c.id)).scalar_one()
            conn.execute(insert(system_table("cohort_member")).values(
                cohort_id=cohort, node="instance", record_id=1, project_id="P1", submitter_id="i",
                object_id=named["pinned"]))
            conn.execute(insert(system_table("study_version")), [
                {"project_id": "P1", "study_uid": "1.2", "version": version, "change": "created",
                 "instances": [{"sop_instance_uid": f"1.2.{n}", "object_id": digest}
                               for n, digest in enumerate(digests)]}
                for version, digests in ((1, [named["old-version"], named["latest-version"]]),
                                         (2, [named["latest-version"]]))])

        statements: list[str] = []

        def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", note)
        found = unreferenced_objects(engine, store, _dt.timedelta(0))
        event.remove(engine, "before_cursor_execute", note)
        assert sorted(item.digest for item in found) == sorted(unnamed.values())
        # set-based: at most one query per kind of name per list of 500, never a round per object
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 2 * 5, len(statements)
        assert unreferenced_objects(engine, store, _dt.timedelta(hours=1)) == []  # all young
        everything = sorted([*named.values(), *unnamed.values()])
        assert sorted(discard_unrecorded_objects(engine, store, everything)) == sorted(unnamed.values())
        assert sorted(item.digest for item in store.iter_objects()) == sorted(named.values())
    finally:
        engine.dispose()


def test_a_version_names_only_whole_object_ids(migrated_url: str, tmp_path: Path) -> None:
    """A digest found somewhere in a version's JSON other than an ``object_id`` (a UID or a study
    value happening to hold it) does not name it: the elements are read, not the text searched."""
    store = ObjectStore(f"memory://in-use-{tmp_path.name}")
    digest = _put(store, "mentioned, not named")
    engine = make_engine(migrated_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(system_table("study_version")).values(
                project_id="P1", study_uid="1.3", version=1, change="created",
                instances=[{"sop_instance_uid": digest, "object_id": hashlib.sha256(b"other").hexdigest()}],
                study={"note": digest}))
        assert [item.digest for item in unreferenced_objects(engine, store, _dt.timedelta(0))] == [digest]
    finally:
        engine.dispose()
