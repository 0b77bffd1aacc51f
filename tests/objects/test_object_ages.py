"""Every store kind lists each object's modification time, which ``objects unreferenced`` needs for
its grace period: local ``mtime``, memory ``created``, S3 ``LastModified`` (moto)."""

from __future__ import annotations

import datetime as _dt

from objects_support import StoreCase
from sqlalchemy import Engine

from radcommons.pipelines.submission import discard_unrecorded_objects, unreferenced_objects
from radcommons.store.index import make_engine, upgrade

DATA = b"an object nothing names" * 10


def test_unreferenced_objects_by_age_on_every_store(case: StoreCase, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'index.db'}"
    upgrade(url)
    engine: Engine = make_engine(url)
    try:
        stored = case.store.put_bytes(DATA)
        (listed,) = case.store.iter_objects()
        assert listed.modified is not None and listed.modified.tzinfo is not None
        age = _dt.datetime.now(_dt.timezone.utc) - listed.modified
        assert _dt.timedelta(minutes=-5) < age < _dt.timedelta(minutes=5), listed.modified
        assert unreferenced_objects(engine, case.store, _dt.timedelta(hours=1)) == []  # still in its grace period
        assert [i.digest for i in unreferenced_objects(engine, case.store, _dt.timedelta(0))] == [stored.digest]
        assert discard_unrecorded_objects(engine, case.store, [stored.digest]) == [stored.digest]
        assert list(case.store.iter_objects()) == []
    finally:
        engine.dispose()
