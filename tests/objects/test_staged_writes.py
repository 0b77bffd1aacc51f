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


def test_staging_from_an_open_file_reads_from_its_position(case: StoreCase, tmp_path: Path) -> None:
    """Ingest stages from the file it read the header from (one open file: a file deleted
    meanwhile is still whole); what was read before the position is not part of the object."""
    data = os.urandom(3 * 4096 + 123)
    path = tmp_path / "open.dcm"
    path.write_bytes(b"skipped" + data)
    with open(path, "rb") as source:
        source.seek(len(b"skipped"))
        path.unlink()
        staged = case.store.stage_file(source)
    assert (staged.digest, staged.size) == (hashlib.sha256(data).hexdigest(), len(data))
    (tmp_path / "other").write_bytes(b"other")
    discarded = case.store.stage_file(tmp_path / "other")
    case.store.discard(discarded)
    assert case.store.get_bytes(case.store.publish([staged])[0].digest) == data
    if case.kind == "local":
        assert not list(Path(case.prefix, "tmp").glob("*"))
        assert not case.store.exists(discarded.digest)


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


def _resident_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache (util-linux fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--raw", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux fincore")
def test_a_bulk_move_in_leaves_nothing_in_the_page_cache(tmp_path: Path) -> None:
    """move_in_many(keep_cached=False), as the upload spool calls it: the objects are on disk and
    their pages dropped from the page cache; by default they stay cached."""
    store = ObjectStore(str(tmp_path / "objects"))
    kept, dropped = [], []
    for n, target in enumerate([kept, dropped] * 4):
        source = tmp_path / f"in-{n}.part"
        data = os.urandom(1 << 20)
        source.write_bytes(data)  # through the page cache, as a spool is written
        target.append((source, hashlib.sha256(data).hexdigest()))
    kept_objects = store.move_in_many(kept)
    if not all(_resident_bytes(tmp_path / "objects" / object_key(o.digest)) for o in kept_objects):
        pytest.skip("this file system keeps no page cache of its own")
    dropped_objects = store.move_in_many(dropped, keep_cached=False)
    assert [_resident_bytes(tmp_path / "objects" / object_key(o.digest)) for o in dropped_objects] == [0] * 4
    assert all(store.verify(o.digest) for o in dropped_objects)


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux fincore")
def test_staging_writes_around_the_page_cache_and_keeps_every_byte(tmp_path: Path) -> None:
    """stage_file (ingest) writes its copy with direct I/O where the file system allows it: whole
    blocks, the last one padded and the file cut to its length, so any size comes back exactly,
    and none of the copy sits in the page cache."""
    kind = subprocess.run(["stat", "--file-system", "--format", "%T", str(tmp_path)], capture_output=True,
                          text=True, check=True).stdout.strip()
    if kind == "tmpfs":
        pytest.skip("tmpfs keeps every file in the page cache: there is no cache to write around")
    store = ObjectStore(str(tmp_path / "objects"))
    sizes = [0, 1, 4095, 4096, 4097, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 12345]
    staged, contents = [], []
    for size in sizes:
        source = tmp_path / f"in-{size}.dcm"
        contents.append(os.urandom(size))
        source.write_bytes(contents[-1])
        staged.append(store.stage_file(source))
    assert [(s.digest, s.size) for s in staged] == [(hashlib.sha256(d).hexdigest(), len(d)) for d in contents]
    assert [os.path.getsize(s.temp) for s in staged] == sizes
    assert sum(_resident_bytes(Path(s.temp)) for s in staged) == 0
    stored = store.publish(staged)
    assert [store.get_bytes(o.digest) for o in stored] == contents
