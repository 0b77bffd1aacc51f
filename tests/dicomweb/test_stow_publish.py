"""STOW-RS moves the received parts into the object store in one call; when a remote store
refuses one copy, only that instance fails (every instance was reported failed, though the
copies before it were stored)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from radcommons.pipelines.indexing import Examined
from radcommons.server.dicomweb.multipart import SpooledPart
from radcommons.server.dicomweb.stow import OUT_OF_RESOURCES, Outcome, publish
from radcommons.store.objects import ObjectStore


def _outcome(folder: Path, data: bytes) -> Outcome:
    path = folder / f"part-{uuid.uuid4().hex}"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    part = SpooledPart({}, path, len(data), digest)
    return Outcome(Examined("ok"), object_id=digest, size=len(data), part=part)


def test_one_refused_copy_fails_only_its_instance(tmp_path: Path) -> None:
    store = ObjectStore(f"memory://stow-{uuid.uuid4().hex}")  # a remote store: copied file by file
    first, lost, third = (_outcome(tmp_path, f"instance {i}".encode()) for i in range(3))
    assert lost.part is not None
    lost.part.path.unlink()  # the copy of the second fails (the spool was cleaned meanwhile)
    publish(store, [first, lost, third])
    assert [o.reason for o in (first, lost, third)] == [0, OUT_OF_RESOURCES, 0]
    assert "send it again" in lost.comment
    assert store.get_bytes(first.object_id) == b"instance 0" and store.get_bytes(third.object_id) == b"instance 2"
    assert not store.exists(lost.object_id)
    assert all(o.part is None for o in (first, lost, third))
    assert not any(tmp_path.iterdir())  # every stored part was moved out of the spool
