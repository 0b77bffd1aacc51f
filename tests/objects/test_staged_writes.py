"""Batched durability: staged objects appear only when published; finished uploads are moved in."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from objects_support import StoreCase

from radcommons.store.objects import ObjectStore, object_key


def test_staged_objects_appear_only_when_published(case: StoreCase, tmp_path: Path) -> None:
    contents = [f"instance {n}".encode() * 1000 for n in range(12)] + [b"instance 0" * 1000]  # one twice
    paths = []
    for n, data in enumerate(contents):
        paths.append(tmp_path / f"{n}.dcm")
        paths[-1].write_bytes(data)
    before = case.store.put_bytes(contents[1])  # already stored: publishing does not rewrite it
    staged = [case.store.stage_file(path) for path in paths]
    assert [s.digest for s in staged] == [hashlib.sha256(d).hexdigest() for d in contents]
    if case.kind == "local":  # nothing visible yet, only temporary files (never listed)
        assert [o.digest for o in case.store.iter_objects()] == [before.digest]
    stored = case.store.publish(staged)
    assert [s.digest for s in stored] == [s.digest for s in staged]
    assert stored[1].created is False
    for data, item in zip(contents, stored):
        assert case.store.get_bytes(item.digest) == data
    assert sorted(o.digest for o in case.store.iter_objects()) == sorted({s.digest for s in staged})
    if case.kind == "local":
        assert not list(Path(case.prefix, "tmp").glob("*"))  # every temporary file renamed or removed


def test_move_in_renames_a_checked_file_into_a_local_store(tmp_path: Path) -> None:
    store = ObjectStore(str(tmp_path / "objects"))
    spool = tmp_path / "objects-spool.part"
    spool.write_bytes(b"whole upload")
    digest = hashlib.sha256(b"whole upload").hexdigest()
    inode = os.stat(spool).st_ino
    stored = store.move_in(spool, digest)
    assert stored.created and not spool.exists()
    assert os.stat(tmp_path / "objects" / stored.key).st_ino == inode  # renamed, not copied
    assert store.get_bytes(digest) == b"whole upload"
    spool.write_bytes(b"whole upload")
    again = store.move_in(spool, digest)
    assert not again.created and not spool.exists()


def test_move_in_copies_into_other_stores(tmp_path: Path) -> None:
    store = ObjectStore(f"memory://move-in-{os.getpid()}-{id(tmp_path)}")
    spool = tmp_path / "x.part"
    spool.write_bytes(b"elsewhere")
    stored = store.move_in(spool, hashlib.sha256(b"elsewhere").hexdigest())
    assert stored.created and not spool.exists()
    assert store.get_bytes(stored.digest) == b"elsewhere"


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs a second file system (tmpfs at /dev/shm)")
def test_move_in_many_copies_across_file_systems(tmp_path: Path) -> None:
    """Spools on another file system than a local store (EXDEV on rename) are copied in, then removed."""
    store = ObjectStore(str(tmp_path / "objects"))
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same file system here")
        contents = [b"first", b"second", b"first"]
        spools = []
        for n, data in enumerate(contents):
            spools.append(Path(other, f"{n}.part"))
            spools[-1].write_bytes(data)
        stored = store.move_in_many([(p, hashlib.sha256(d).hexdigest()) for p, d in zip(spools, contents)])
        assert [s.created for s in stored] == [True, True, False]
        assert not any(p.exists() for p in spools)
    assert [store.get_bytes(s.digest) for s in stored] == contents
    assert not list((tmp_path / "objects" / "tmp").glob("*"))


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux fincore")
def test_a_bulk_publish_leaves_nothing_in_the_page_cache(tmp_path: Path) -> None:
    """publish(keep_cached=False), as ingest calls it: the objects are on disk and their pages
    dropped from the page cache; by default they stay cached."""
    store = ObjectStore(str(tmp_path / "objects"))

    def resident(digest: str) -> int:
        out = subprocess.run(["fincore", "--bytes", "--raw", "--noheadings", "--output", "RES",
                              str(tmp_path / "objects" / object_key(digest))], capture_output=True, text=True)
        return int(out.stdout.split()[0])

    kept, dropped = [], []
    for n, target in enumerate([kept, dropped] * 4):
        source = tmp_path / f"in-{n}.bin"
        source.write_bytes(os.urandom(1 << 20))
        target.append(store.stage_file(source))
    kept_objects = store.publish(kept)
    if not all(resident(o.digest) for o in kept_objects):
        pytest.skip("this file system keeps no page cache of its own (tmpfs?)")
    dropped_objects = store.publish(dropped, keep_cached=False)
    assert [resident(o.digest) for o in dropped_objects] == [0] * 4
    assert all(store.verify(o.digest) for o in dropped_objects)
