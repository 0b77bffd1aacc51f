"""ObjectStore against real back ends: a local folder, memory:// and S3 (a moto server)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from radcommons.errors import UserError
from radcommons.store.objects import (
    CorruptObjectError,
    InvalidDigestError,
    ObjectNotFoundError,
    ObjectStore,
    StoredObject,
    object_key,
    validate_digest,
)

if TYPE_CHECKING:  # the fixture's type, from this folder's conftest.py
    from objects_support import StoreCase

DATA = b"DICM" + bytes(range(256)) * 40
DIGEST = hashlib.sha256(DATA).hexdigest()
ABSENT = "0" * 64


class Explodes(io.RawIOBase):
    """A stream that fails after yielding ``good`` bytes, like a network read dying mid-file."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise OSError("connection reset while reading the source")
        n = min(len(buffer), self.left, 64 * 1024)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


# ---------------------------------------------------------------- every back end


def test_round_trip(case: StoreCase, tmp_path: Path) -> None:
    source = tmp_path / "image.dcm"
    source.write_bytes(DATA)

    stored = case.store.put_file(source)

    assert stored == StoredObject(
        DIGEST, len(DATA), object_key(DIGEST), case.store.url_for(DIGEST), True
    )
    assert stored.key == f"sha256/{DIGEST[:2]}/{DIGEST[2:4]}/{DIGEST}"
    assert case.raw_keys() == [stored.key]
    assert case.store.exists(DIGEST)
    assert case.store.size(DIGEST) == len(DATA)
    assert case.store.get_bytes(DIGEST) == DATA
    assert case.store.verify(DIGEST)
    assert list(case.store.iter_digests()) == [DIGEST]
    [info] = case.store.iter_objects()
    assert (info.digest, info.size, info.key) == (DIGEST, len(DATA), stored.key)

    copied = case.store.copy_to(DIGEST, tmp_path / "out" / "copy.dcm")
    assert copied.read_bytes() == DATA
    assert sorted(p.name for p in copied.parent.iterdir()) == ["copy.dcm"]  # no temp left

    assert case.store.delete(DIGEST) is True
    assert case.store.delete(DIGEST) is False
    assert not case.store.exists(DIGEST)
    assert list(case.store.iter_digests()) == []


def test_put_stream_and_bytes_agree(case: StoreCase) -> None:
    a = case.store.put_stream(io.BytesIO(DATA))
    b = case.store.put_bytes(DATA)
    assert a.digest == b.digest == DIGEST
    empty = case.store.put_bytes(b"")
    assert empty.digest == hashlib.sha256(b"").hexdigest() and empty.size == 0
    assert case.store.get_bytes(empty.digest) == b""


def test_dedup_stores_identical_content_once(case: StoreCase, tmp_path: Path) -> None:
    first = case.store.put_bytes(DATA)
    (tmp_path / "same.dcm").write_bytes(DATA)
    second = case.store.put_file(tmp_path / "same.dcm")

    assert first.created is True
    assert second.created is False
    assert second.digest == first.digest
    assert case.raw_keys() == [first.key]


def test_dedup_does_not_rewrite(case: StoreCase) -> None:
    if case.kind != "local":
        pytest.skip("modification times are checked on the local file system")
    stored = case.store.put_bytes(DATA)
    path = Path(case.prefix, stored.key)
    os.utime(path, (1_000_000, 1_000_000))
    case.store.put_bytes(DATA)
    assert path.stat().st_mtime == 1_000_000


def test_corrupted_object_is_detected_on_read(case: StoreCase, tmp_path: Path) -> None:
    stored = case.store.put_bytes(DATA)
    case.overwrite(stored.key, DATA[:-1] + b"!")  # same size, one byte changed

    assert case.store.verify(DIGEST) is False
    with pytest.raises(CorruptObjectError) as raised:
        case.store.get_bytes(DIGEST)
    error = raised.value
    assert isinstance(error, UserError)
    assert DIGEST in error.message and "corrupt" in error.message
    assert "put the original" in error.hint
    assert error.actual_digest == hashlib.sha256(DATA[:-1] + b"!").hexdigest()

    # Streaming readers fail at the end, not before.
    with case.store.open(DIGEST) as reader:
        assert reader.read(10) == DATA[:10]
        with pytest.raises(CorruptObjectError):
            while reader.read(4096):
                pass

    # copy_to leaves neither the destination nor a temp file.
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CorruptObjectError):
        case.store.copy_to(DIGEST, out / "copy.dcm")
    assert list(out.iterdir()) == []


def test_truncated_object_is_detected(case: StoreCase) -> None:
    stored = case.store.put_bytes(DATA)
    case.overwrite(stored.key, DATA[:100])
    assert case.store.verify(DIGEST) is False


def test_copy_to_replaces_existing_file_and_accepts_a_folder(case: StoreCase, tmp_path: Path) -> None:
    case.store.put_bytes(DATA)
    target = tmp_path / "existing.dcm"
    target.write_bytes(b"old")
    assert case.store.copy_to(DIGEST, target).read_bytes() == DATA
    folder = tmp_path / "folder"
    folder.mkdir()
    assert case.store.copy_to(DIGEST, folder) == folder / DIGEST


def test_failed_put_leaves_nothing(case: StoreCase) -> None:
    with pytest.raises(OSError, match="connection reset"):
        case.store.put_stream(Explodes(good=3 * 1024 * 1024 + 17))

    assert list(case.store.iter_digests()) == []
    assert [k for k in case.raw_keys() if not k.startswith("tmp/")] == []
    assert [k for k in case.raw_keys() if k.endswith(".partial")] == []
    if case.s3 is not None:
        assert case.s3.pending_uploads(case.prefix) == []


def test_stray_files_are_not_listed(case: StoreCase) -> None:
    case.store.put_bytes(DATA)
    case.overwrite("sha256/zz/notes.txt", b"not an object")
    case.overwrite(f"sha256/ff/ff/{DIGEST}", b"misplaced")
    case.overwrite("tmp/put-1-abc.partial", b"half")
    assert list(case.store.iter_digests()) == [DIGEST]


def test_missing_object(case: StoreCase, tmp_path: Path) -> None:
    assert not case.store.exists(ABSENT)
    for call in (
        lambda: case.store.size(ABSENT),
        lambda: case.store.open(ABSENT),
        lambda: case.store.get_bytes(ABSENT),
        lambda: case.store.verify(ABSENT),
        lambda: case.store.copy_to(ABSENT, tmp_path / "x"),
    ):
        with pytest.raises(ObjectNotFoundError) as raised:
            call()
        assert ABSENT in str(raised.value)
        assert isinstance(raised.value, UserError)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65, "sha256:" + "0" * 64, " " + "0" * 64, "../" * 21 + "a"],
)
def test_bad_digests_are_rejected(case: StoreCase, bad: str, tmp_path: Path) -> None:
    for call in (
        lambda: case.store.exists(bad),
        lambda: case.store.size(bad),
        lambda: case.store.open(bad),
        lambda: case.store.verify(bad),
        lambda: case.store.delete(bad),
        lambda: case.store.copy_to(bad, tmp_path / "x"),
    ):
        with pytest.raises(InvalidDigestError, match="not a valid SHA-256 digest"):
            call()


# ---------------------------------------------------------------- helpers and local specifics


def test_validate_digest_hints() -> None:
    assert validate_digest(DIGEST) == DIGEST
    with pytest.raises(InvalidDigestError) as raised:
        validate_digest(DIGEST.upper())
    assert DIGEST in raised.value.hint  # tells the lowercase form
    with pytest.raises(InvalidDigestError) as raised:
        validate_digest("sha256:" + DIGEST)
    assert "prefix" in raised.value.hint
    assert isinstance(raised.value, ValueError)


def test_relative_path_is_resolved_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = ObjectStore("var/objects")
    monkeypatch.chdir("/")
    stored = store.put_bytes(DATA)
    assert (tmp_path / "var" / "objects" / stored.key).read_bytes() == DATA
    assert store.url == str(tmp_path / "var" / "objects")


def test_file_url(tmp_path: Path) -> None:
    store = ObjectStore((tmp_path / "o").as_uri())
    assert store.is_local
    stored = store.put_bytes(DATA)
    assert (tmp_path / "o" / stored.key).read_bytes() == DATA


def test_put_file_errors(tmp_path: Path) -> None:
    store = ObjectStore(str(tmp_path / "o"))
    with pytest.raises(UserError, match="file not found"):
        store.put_file(tmp_path / "nope.dcm")
    with pytest.raises(UserError, match="is a directory"):
        store.put_file(tmp_path)


def test_put_stream_rejects_text() -> None:
    with pytest.raises(TypeError, match="binary"):
        ObjectStore("memory://text-stream").put_stream(io.StringIO("text"))


def test_unknown_protocol_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="cannot open object store"):
        ObjectStore("nosuchprotocol://x")


def test_killed_process_leaves_only_an_ignored_temp_file(tmp_path: Path) -> None:
    """A put killed outright (no cleanup runs) leaves a .partial in tmp/, never an object."""
    root = tmp_path / "objects"
    script = textwrap.dedent(
        f"""
        import io, os
        from radcommons.store.objects import ObjectStore

        class DiesHalfway(io.RawIOBase):
            sent = 0
            def readable(self):
                return True
            def readinto(self, buffer):
                if self.sent >= 2 * 1024 * 1024:
                    os._exit(9)  # like SIGKILL: no finally blocks run
                buffer[: len(buffer)] = b"y" * len(buffer)
                self.sent += len(buffer)
                return len(buffer)

        ObjectStore({str(root)!r}).put_stream(DiesHalfway())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr

    partials = list((root / "tmp").glob("*.partial"))
    assert len(partials) == 1
    assert not (root / "sha256").exists() or not any(p.is_file() for p in (root / "sha256").rglob("*"))
    store = ObjectStore(str(root))
    assert list(store.iter_digests()) == []
    from radcommons.store.objects import _temp_name

    running = root / "tmp" / _temp_name("put")  # of this process: a put still running
    running.write_bytes(b"half")
    elsewhere = root / "tmp" / "put-otherhost-1-0123abcd.partial"  # another machine's, on a shared store
    elsewhere.write_bytes(b"half")
    # the killed writer's file goes at once (it stayed for good: nothing called clean_temp after a kill)
    assert store.clean_temp(older_than=3600) == 1
    assert sorted((root / "tmp").glob("*.partial")) == sorted([running, elsewhere])
    assert store.clean_temp(older_than=0) == 2
    assert list((root / "tmp").glob("*.partial")) == []


@pytest.mark.slow
def test_large_file_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    block = os.urandom(1024 * 1024)
    source = tmp_path / "big.bin"
    hasher = hashlib.sha256()
    with open(source, "wb") as out:
        for i in range(200):
            chunk = block[i:] + block[:i]  # vary the blocks so dedup inside the file is impossible
            out.write(chunk)
            hasher.update(chunk)
    store = ObjectStore(str(tmp_path / "objects"))

    tracemalloc.start()
    try:
        stored = store.put_file(source)
        assert store.verify(stored.digest)
        store.copy_to(stored.digest, tmp_path / "copy.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.digest == hasher.hexdigest()
    assert stored.size == 200 * 1024 * 1024
    assert (tmp_path / "copy.bin").stat().st_size == stored.size
    assert peak < 16 * 1024 * 1024, f"peak Python memory {peak / 2**20:.1f} MiB for a 200 MiB file"


# ---------------------------------------------------------------- S3 specifics


@pytest.mark.slow
def test_s3_multipart_upload_round_trip(s3_server, tmp_path: Path) -> None:
    """Files over 16 MiB go up as a multipart upload, visible only once complete."""
    store = ObjectStore(f"s3://{s3_server.bucket}/multipart", **s3_server.storage_options())
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(1024 * 1024) * 20)
    stored = store.put_file(source)
    assert stored.created and stored.size == 20 * 1024 * 1024
    assert s3_server.keys("multipart/") == [f"multipart/{stored.key}"]
    assert s3_server.pending_uploads("multipart/") == []
    assert store.verify(stored.digest)
    assert store.put_file(source).created is False


def test_s3_sees_objects_written_by_another_client(s3_server) -> None:
    """Listing caches must not hide objects another process wrote or removed."""
    url = f"s3://{s3_server.bucket}/shared"
    options = s3_server.storage_options()
    a = ObjectStore(url, **options)
    b = ObjectStore(url, **options)
    assert list(b.iter_digests()) == [] and not b.exists(DIGEST)
    a.put_bytes(DATA)
    assert b.exists(DIGEST)
    assert list(b.iter_digests()) == [DIGEST]
    a.delete(DIGEST)
    assert not b.exists(DIGEST)
    assert b.put_bytes(DATA).created is True


def test_a_failed_copy_into_s3_leaves_the_files_for_a_retry(s3_server, tmp_path: Path) -> None:
    """move_in_many removes a finished upload only once it is stored: a copy the store refuses
    (here a bucket that does not exist) keeps every file, and a later try stores and removes them."""
    first, second = tmp_path / "first.part", tmp_path / "second.part"
    first.write_bytes(DATA)
    second.write_bytes(DATA + b"!")
    files = [(first, DIGEST), (second, hashlib.sha256(DATA + b"!").hexdigest())]
    refusing = ObjectStore("s3://radcommons-no-such-bucket/retry", **s3_server.storage_options())
    with pytest.raises((UserError, OSError)):
        refusing.move_in_many(files)
    assert first.read_bytes() == DATA and second.read_bytes() == DATA + b"!"
    working = ObjectStore(f"s3://{s3_server.bucket}/retry", **s3_server.storage_options())
    assert [stored.digest for stored in working.move_in_many(files)] == [digest for _, digest in files]
    assert not first.exists() and not second.exists()
    assert working.get_bytes(DIGEST) == DATA
