"""Content-addressed object store: files kept under their SHA-256 digest, through fsspec.

Every stored file lives at ``<root>/sha256/<h[0:2]>/<h[2:4]>/<h>`` where ``h`` is
the lowercase hex SHA-256 of its content, so identical content is stored once
and any reader can check what it got. ``<root>`` is any fsspec URL: a local
folder (relative paths are resolved against the working directory when the
store is created), ``file://...``, ``memory://...``, ``s3://bucket/prefix``, ...

Guarantees:

* **Atomic writes.** A half-written object is never visible under its final
  key. On a local file system the content is written to
  ``<root>/tmp/*.partial``, fsynced and moved into place with
  :func:`os.replace`. Elsewhere (S3, memory, ...) the content is first spooled
  to a local temporary file while its digest is computed, then uploaded in a
  single put (or a multipart upload, which S3 only makes visible once it is
  completed) straight to its final key; no temporary key is ever created in
  the store.
* **Batched durability.** Bulk writers (``radcommons ingest``, STOW-RS) call
  :meth:`ObjectStore.stage_file` for each file (written and hashed under
  ``<root>/tmp/``, not yet synced nor visible) and then :meth:`ObjectStore.publish`
  once per batch, before the index transaction that references the batch
  commits: it makes the staged contents durable, renames them into place and
  makes the renames durable, with one file-system sync (Linux ``syncfs``) instead
  of two fsyncs per object. A crash before it leaves only temporary files; an
  object is never visible under its key before its content is on disk.
  :meth:`ObjectStore.move_in_many` installs finished local files (upload spools,
  their digests checked) the same way, renamed instead of copied.
* **Streaming.** Files are read and hashed in chunks of :data:`CHUNK_SIZE`;
  a 1 GB file is never held in memory.
* **Verified reads.** :meth:`ObjectStore.open` returns a reader that hashes
  what it reads and raises :class:`CorruptObjectError` at the end of the
  object if the content does not match its digest.

Example::

    >>> store = ObjectStore("memory://example-objects")
    >>> stored = store.put_bytes(b"hello")
    >>> stored.digest[:12], stored.size, stored.created
    ('2cf24dba5fb0', 5, True)
    >>> store.get_bytes(stored.digest)
    b'hello'
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import io
import math
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from radcommons.durable import (
    copy_hashing_direct,
    drop_cached,
    fsync_dir,
    process_ended,
    remove_if_present,
    sync_paths,
)
from radcommons.errors import UserError

__all__ = [
    "CHUNK_SIZE",
    "CorruptObjectError",
    "InvalidDigestError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "StagedObject",
    "StoredObject",
    "VerifyingReader",
    "object_key",
    "validate_digest",
]

#: Bytes read, hashed and written at a time.
CHUNK_SIZE = 1024 * 1024

#: Folder (under the store root) holding content-addressed objects.
OBJECTS_DIR = "sha256"

#: Folder (under a local store root) for in-progress writes; never listed as objects.
TEMP_DIR = "tmp"
TEMP_SUFFIX = ".partial"


_HOST = socket.gethostname().replace("-", "_") or "host"


def _temp_name(kind: str) -> str:
    """``<kind>-<host>-<pid>-<random>.partial``: who writes it, for :meth:`ObjectStore.clean_temp`."""
    return f"{kind}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex}{TEMP_SUFFIX}"


def _writer_gone(name: str) -> bool:
    """Whether a temporary file named by :func:`_temp_name` was written by a process of this machine
    that no longer runs (a killed ingest or upload)."""
    parts = name.removesuffix(TEMP_SUFFIX).split("-")
    return len(parts) == 4 and parts[1] == _HOST and parts[2].isdigit() and process_ended(int(parts[2]))


# S3 multipart part size: small parts keep memory bounded (s3fs holds
# ``max_concurrency`` parts in memory at once), growing only when a file would
# otherwise exceed S3's 10,000-part limit.
_S3_PART_SIZE = 8 * 1024 * 1024
_S3_MAX_PARTS = 10_000
_S3_MAX_CONCURRENCY = 4

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------- errors


class ObjectStoreError(UserError):
    """A problem with the object store that a person has to act on."""


class InvalidDigestError(ObjectStoreError, ValueError):
    """A string given as a digest is not 64 lowercase hexadecimal characters."""


class ObjectNotFoundError(ObjectStoreError, LookupError):
    """No object with the given digest is in the store."""

    def __init__(self, digest: str, url: str) -> None:
        super().__init__(
            f"object {digest} not found in the object store (looked for {url})",
            hint="check the digest, and that --store / RADCOMMONS_OBJECT_STORE_URL names "
            "the store it was put into; `radcommons objects ls` lists what is there",
        )
        self.digest = digest
        self.url = url


class CorruptObjectError(ObjectStoreError):
    """A stored object's content does not match its digest.

    It is a :class:`~radcommons.errors.UserError` because an operator, not the
    program, has to repair it, and the interfaces must say so without a
    traceback.
    """

    def __init__(self, digest: str, url: str, actual_digest: str, actual_size: int) -> None:
        super().__init__(
            f"object {digest} is corrupt: its content ({actual_size} bytes at {url}) "
            f"hashes to {actual_digest}",
            hint=f"do not use this copy. Delete it (`radcommons objects rm {digest}`) and put "
            "the original file again from its source or a replica; run `radcommons objects "
            "verify` to check the rest of the store",
        )
        self.digest = digest
        self.url = url
        self.actual_digest = actual_digest
        self.actual_size = actual_size


# --------------------------------------------------------------------------- plain data


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object present in the store.

    Attributes:
        digest: lowercase hex SHA-256 of the content.
        size: length of the content in bytes.
        key: path of the object relative to the store root (``sha256/ab/cd/abcd...``);
            the same in every replica of the store, so it is what an index should keep.
        url: full fsspec URL of the object (``s3://bucket/prefix/sha256/...``).
        modified: when the object was last written (UTC), as the listing gives it; None when the
            file system gives no time (an unknown age: never old enough to be removed as unused).
    """

    digest: str
    size: int
    key: str
    url: str
    modified: _dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredObject:
    """The result of a put.

    Attributes:
        digest: lowercase hex SHA-256 of the content.
        size: length of the content in bytes.
        key: path relative to the store root (``sha256/ab/cd/abcd...``).
        url: full fsspec URL of the object.
        created: ``True`` when this put wrote the object, ``False`` when the
            same content was already stored (deduplicated; nothing was rewritten).
    """

    digest: str
    size: int
    key: str
    url: str
    created: bool


@dataclass(frozen=True, slots=True)
class StagedObject:
    """Content written by :meth:`ObjectStore.stage_file`, to be published with :meth:`ObjectStore.publish`.

    Attributes:
        digest: lowercase hex SHA-256 of the content.
        size: length of the content in bytes.
        temp: the local temporary file holding it (not yet synced); empty when the store
            is not local and the content was already put whole (``stored``).
        stored: the finished put, for stores that are not local.
        cached: whether ``temp`` may have pages in the page cache (False: written around it,
            :func:`~radcommons.durable.copy_hashing_direct`; nothing for :meth:`ObjectStore.publish`
            to drop).
    """

    digest: str
    size: int
    temp: str = ""
    stored: StoredObject | None = None
    cached: bool = True


# --------------------------------------------------------------------------- pure functions


def _modified(info: dict[str, Any]) -> _dt.datetime | None:
    """When a listed file was last written, from its fsspec ``info``: each file system names it
    differently (local ``mtime`` and memory ``created``: epoch seconds; S3 ``LastModified``, Azure
    ``last_modified``: datetimes; GCS ``updated``: ISO 8601 text). None when it gives none."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _dt.datetime.fromtimestamp(value, _dt.timezone.utc)
        if isinstance(value, str):
            try:
                value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(value, _dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
    return None


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is 64 lowercase hex characters, else raise :class:`InvalidDigestError`."""
    if isinstance(digest, str) and _DIGEST_RE.fullmatch(digest):
        return digest
    shown = repr(digest) if len(str(digest)) <= 80 else repr(str(digest)[:77] + "...")
    hint = "a digest is the SHA-256 of the content as 64 lowercase hexadecimal characters, "
    if isinstance(digest, str) and _DIGEST_RE.fullmatch(digest.strip().lower()):
        hint += f"here: {digest.strip().lower()}"
    elif isinstance(digest, str) and digest.startswith("sha256:"):
        hint += "without the 'sha256:' prefix"
    else:
        hint += "as printed by `radcommons objects put` or `radcommons objects ls`"
    raise InvalidDigestError(f"not a valid SHA-256 digest: {shown}", hint=hint)


def object_key(digest: str) -> str:
    """Path of an object relative to the store root: ``sha256/<h[0:2]>/<h[2:4]>/<h>``."""
    validate_digest(digest)
    return f"{OBJECTS_DIR}/{digest[0:2]}/{digest[2:4]}/{digest}"


def _copy_hashing(source: IO[bytes], target: IO[bytes]) -> tuple[str, int]:
    """Copy ``source`` to ``target`` in chunks; return (sha256 hex, bytes copied)."""
    hasher = hashlib.sha256()
    size = 0
    while True:
        chunk = source.read(CHUNK_SIZE)
        if not chunk:
            break
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"put_stream needs a binary file object; read() returned {type(chunk).__name__}"
            )
        hasher.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


# --------------------------------------------------------------------------- verified reads


class VerifyingReader(io.RawIOBase):
    """A read-only, forward-only binary file that checks the object's digest at its end.

    Reading to the end (``read()``, or ``read(n)`` until it returns ``b""``)
    raises :class:`CorruptObjectError` if the bytes read do not hash to the
    expected digest. A reader closed before the end has verified nothing.
    Seeking is not supported, because it would make the check meaningless.
    """

    def __init__(self, raw: IO[bytes], digest: str, url: str) -> None:
        super().__init__()
        self._raw = raw
        self._digest = digest
        self._url = url
        self._hasher = hashlib.sha256()
        self._size = 0
        self._verified = False

    @property
    def digest(self) -> str:
        """The digest the content must match."""
        return self._digest

    @property
    def verified(self) -> bool:
        """``True`` once the whole object has been read and matched its digest."""
        return self._verified

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        if not data:
            self._check()
            return 0
        n = len(data)
        view[:n] = data
        self._hasher.update(data)
        self._size += n
        return n

    def readall(self) -> bytes:
        chunks = []
        while True:
            chunk = self.read(CHUNK_SIZE)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def _check(self) -> None:
        if self._verified:
            return
        actual = self._hasher.hexdigest()
        if actual != self._digest:
            raise CorruptObjectError(self._digest, self._url, actual, self._size)
        self._verified = True

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            finally:
                super().close()


# --------------------------------------------------------------------------- the store


class ObjectStore:
    """Content-addressed storage of files under their SHA-256 digest.

    Args:
        url: where the store lives: a local folder (relative to the working
            directory), or any fsspec URL (``file://``, ``memory://``,
            ``s3://bucket/prefix``, ``gs://...``).
        **storage_options: passed to the fsspec file system, e.g. for S3
            ``endpoint_url=``, ``key=``, ``secret=``, ``client_kwargs=`` (see
            :class:`s3fs.S3FileSystem`).

    Example::

        store = ObjectStore("s3://commons/objects", endpoint_url="http://127.0.0.1:9000")
        stored = store.put_file("image.dcm")
        store.copy_to(stored.digest, "out/image.dcm")
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        url = str(url)
        if not url:
            raise ObjectStoreError(
                "the object store URL is empty",
                hint="give a folder or an fsspec URL (s3://bucket/prefix, memory://name)",
            )
        if "://" not in url:
            # A plain path: pin it now, so a later chdir cannot move the store.
            url = str(Path(url).expanduser().resolve())
        try:
            fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except (ValueError, ImportError) as error:
            raise ObjectStoreError(
                f"cannot open object store {url!r}: {error}",
                hint="use a local folder or an fsspec URL whose protocol is installed "
                "(file://, memory://, s3://bucket/prefix)",
            ) from error
        self._fs: fsspec.AbstractFileSystem = fs
        self._root: str = root.rstrip("/")
        self._local: bool = isinstance(fs, LocalFileSystem)
        self._url: str = url
        self._storage_options: dict[str, Any] = dict(storage_options)

    # -- naming

    @property
    def url(self) -> str:
        """The URL the store was opened with (plain paths made absolute)."""
        return self._url

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options the store was opened with (to open it again in a worker process)."""
        return dict(self._storage_options)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The underlying fsspec file system."""
        return self._fs

    @property
    def is_local(self) -> bool:
        """Whether the store is a folder on the local file system."""
        return self._local

    def missing_folder(self) -> bool:
        """Whether this is a local store whose folder does not exist (nothing was ever put in it:
        likely a wrong path); a remote store's prefix exists once something is put there."""
        return self._local and not os.path.isdir(self._root)

    def __repr__(self) -> str:
        return f"ObjectStore({self._url!r})"

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def key(self, digest: str) -> str:
        """Key of an object relative to the store root (validates ``digest``)."""
        return object_key(digest)

    def url_for(self, digest: str) -> str:
        """Full fsspec URL of the object with this digest (it need not exist)."""
        return self._fs.unstrip_protocol(self._path(object_key(digest)))

    def _fresh(self, path: str) -> None:
        # Listing caches (s3fs) could hide objects written or removed by another process.
        self._fs.invalidate_cache(path)

    # -- writing

    def put_file(self, path: str | os.PathLike[str]) -> StoredObject:
        """Store a local file, streaming it; return where it is and whether it was new."""
        source = Path(path)
        if source.is_dir():
            raise ObjectStoreError(
                f"{source} is a directory, not a file",
                hint="give the files inside it (for example with a shell glob)",
            )
        try:
            handle = open(source, "rb")
        except FileNotFoundError as error:
            raise ObjectStoreError(f"file not found: {source}", hint="check the path") from error
        except PermissionError as error:
            raise ObjectStoreError(
                f"cannot read {source}: permission denied", hint="check the file's permissions"
            ) from error
        with handle:
            return self.put_stream(handle)

    def stage_file(self, source: str | os.PathLike[str] | BinaryIO) -> StagedObject:
        """Write and hash a local file (a path, or a binary file read from its position) for a
        later :meth:`publish` (a local store defers the syncs).

        Until published, the content is in ``<root>/tmp/`` only (removed by :meth:`discard`, or
        by :meth:`clean_temp` if nobody publishes it). Other stores put it whole at once.
        """
        given = not isinstance(source, (str, os.PathLike))
        if not self._local:
            stored = self.put_stream(source) if given else self.put_file(source)  # type: ignore[arg-type]
            return StagedObject(stored.digest, stored.size, "", stored)
        temp_dir = self._path(TEMP_DIR)
        os.makedirs(temp_dir, exist_ok=True)
        temp = os.path.join(temp_dir, _temp_name("stage"))
        try:
            copied = copy_hashing_direct(source, temp)  # a staged object is not read back: no page cache
            cached = copied is None
            if copied is None:
                with (contextlib.nullcontext(source) if given else open(source, "rb")) as src, \
                        open(temp, "xb") as out:  # type: ignore[arg-type]
                    copied = _copy_hashing(src, out)
        except BaseException:
            remove_if_present(temp)
            raise
        return StagedObject(copied[0], copied[1], temp, cached=cached)

    def discard(self, staged: StagedObject) -> None:
        """Drop content staged by :meth:`stage_file` that will not be published.

        A local store removes the temporary file. Other stores have already put it whole under
        its digest; it stays, unreferenced, like any object no index row names.
        """
        if staged.temp:
            remove_if_present(staged.temp)

    def publish(self, staged: Sequence[StagedObject], *, keep_cached: bool = True) -> list[StoredObject]:
        """Make staged contents durable and visible under their keys; one sync for the batch.

        Call it before committing anything that refers to the objects. Content already stored
        is not rewritten (its temporary copy is removed). ``keep_cached=False``: a bulk writer that
        will not read the objects back lets the kernel drop their pages once they are on disk
        (:func:`~radcommons.durable.drop_cached`).
        """
        local = [item for item in staged if item.temp]
        sync_paths([item.temp for item in local], [])
        folders: dict[str, None] = {}
        done: dict[str, StoredObject] = {}
        cached: list[str] = []
        for item in local:
            key = object_key(item.digest)
            final = self._path(key)
            created = not os.path.isfile(final)
            if created:
                folder = os.path.dirname(final)
                for parent in (folder, os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))):
                    folders.setdefault(parent)
                os.makedirs(folder, exist_ok=True)
                os.replace(item.temp, final)
                if item.cached:
                    cached.append(final)
            else:
                remove_if_present(item.temp)
            done[item.temp] = StoredObject(item.digest, item.size, key, self._fs.unstrip_protocol(final), created)
        sync_paths([], list(folders))
        if not keep_cached:
            drop_cached(cached)
        return [done[item.temp] if item.temp else item.stored for item in staged]  # type: ignore[misc]

    def move_in(self, path: str | os.PathLike[str], digest: str) -> StoredObject:
        """Install one finished local file whose SHA-256 the caller has checked: :meth:`move_in_many`."""
        return self.move_in_many([(path, digest)])[0]

    def move_in_many(self, files: Sequence[tuple[str | os.PathLike[str], str]], *,
                     keep_cached: bool = True) -> list[StoredObject]:
        """Install finished local files (``(path, sha256)``, digests checked by the caller), moving them when possible.

        On a local store on the same file system the files are made durable, renamed into
        place and the renames made durable, as :meth:`publish` does (one sync for many files,
        ``keep_cached`` as there); otherwise each is copied as by :meth:`put_file`. A file is
        gone once it is stored; one whose copy failed stays where it was.
        """
        if self._local and files:
            staged = [StagedObject(digest, os.path.getsize(path), str(path)) for path, digest in files]
            try:
                return self.publish(staged, keep_cached=keep_cached)
            except OSError as error:
                if error.errno != errno.EXDEV:  # another file system: copied below
                    raise
        results = []
        for path, _ in files:
            results.append(self.put_file(path))
            remove_if_present(path)  # only once stored: a failed put leaves the file for a retry
        return results

    def put_bytes(self, data: bytes) -> StoredObject:
        """Store ``data``; return where it is and whether it was new."""
        return self.put_stream(io.BytesIO(bytes(data)))

    def put_stream(self, fileobj: IO[bytes] | BinaryIO) -> StoredObject:
        """Store everything read from a binary file object, in chunks.

        If reading fails part-way, nothing is stored and no temporary file is
        left behind (a process killed outright may leave one in
        ``<root>/tmp/``, which is never listed; see :meth:`clean_temp`).
        """
        if self._local:
            return self._put_local(fileobj)
        return self._put_remote(fileobj)

    def _put_local(self, fileobj: IO[bytes]) -> StoredObject:
        temp_dir = self._path(TEMP_DIR)
        os.makedirs(temp_dir, exist_ok=True)
        # Same file system as the final location, so os.replace is an atomic rename.
        temp = os.path.join(temp_dir, _temp_name("put"))
        try:
            with open(temp, "xb") as out:
                digest, size = _copy_hashing(fileobj, out)
                out.flush()
                os.fsync(out.fileno())
            key = object_key(digest)
            final = self._path(key)
            if os.path.isfile(final):
                return StoredObject(digest, size, key, self._fs.unstrip_protocol(final), False)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            # A concurrent put of the same content may win the race; both
            # renames install identical bytes, so either outcome is correct.
            os.replace(temp, final)
            fsync_dir(os.path.dirname(final))
            return StoredObject(digest, size, key, self._fs.unstrip_protocol(final), True)
        finally:
            remove_if_present(temp)

    def _put_remote(self, fileobj: IO[bytes]) -> StoredObject:
        # Spool locally first: the digest (and so the key) is only known at the
        # end, and an upload of finished content is the only way to make the
        # object appear whole or not at all.
        spool = tempfile.NamedTemporaryFile(
            prefix="radcommons-spool-", suffix=TEMP_SUFFIX, delete=False
        )
        try:
            with spool:
                digest, size = _copy_hashing(fileobj, spool)
            key = object_key(digest)
            final = self._path(key)
            url = self._fs.unstrip_protocol(final)
            self._fresh(final)
            if self._fs.exists(final):
                return StoredObject(digest, size, key, url, False)
            self._fs.put_file(spool.name, final, **self._upload_options(size))
            self._fresh(final)
            stored_size = self._fs.size(final)
            if stored_size != size:
                raise ObjectStoreError(
                    f"upload of {digest} to {url} stored {stored_size} bytes instead of {size}",
                    hint="the object store is misbehaving; check it, delete the object and retry",
                )
            return StoredObject(digest, size, key, url, True)
        finally:
            remove_if_present(spool.name)

    def _upload_options(self, size: int) -> dict[str, Any]:
        protocols = self._fs.protocol
        protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
        if "s3" not in protocols:
            return {}
        part = max(_S3_PART_SIZE, math.ceil(size / _S3_MAX_PARTS))
        return {"chunksize": part, "max_concurrency": _S3_MAX_CONCURRENCY}

    # -- reading

    def exists(self, digest: str) -> bool:
        """Whether an object with this digest is stored (validates ``digest``)."""
        path = self._path(object_key(digest))
        self._fresh(path)
        return bool(self._fs.isfile(path))

    def size(self, digest: str) -> int:
        """Size in bytes of a stored object; :class:`ObjectNotFoundError` if absent."""
        path = self._path(object_key(digest))
        self._fresh(path)
        try:
            return int(self._fs.size(path))
        except FileNotFoundError as error:
            raise ObjectNotFoundError(digest, self._fs.unstrip_protocol(path)) from error

    def open(self, digest: str) -> VerifyingReader:
        """Open a stored object for reading; its digest is checked when read to the end.

        Use it as a context manager. Raises :class:`ObjectNotFoundError` if absent,
        and :class:`CorruptObjectError` from the read that reaches the end if the
        content does not match.
        """
        path = self._path(object_key(digest))
        url = self._fs.unstrip_protocol(path)
        self._fresh(path)
        try:
            if not self._fs.isfile(path):
                raise FileNotFoundError(path)
            raw = self._fs.open(path, "rb")
        except FileNotFoundError as error:
            raise ObjectNotFoundError(digest, url) from error
        return VerifyingReader(raw, digest, url)

    def open_unverified(self, digest: str) -> IO[bytes]:
        """A seekable reader of a stored object, without the digest check.

        For reading a DICOM header (which needs seeking) of content whose digest was checked
        when it was put. Raises :class:`ObjectNotFoundError` if absent.
        """
        path = self._path(object_key(digest))
        self._fresh(path)
        try:
            if not self._fs.isfile(path):
                raise FileNotFoundError(path)
            return self._fs.open(path, "rb")
        except FileNotFoundError as error:
            raise ObjectNotFoundError(digest, self._fs.unstrip_protocol(path)) from error

    def get_bytes(self, digest: str) -> bytes:
        """The verified content of a stored object (for small objects; see :meth:`open`)."""
        with self.open(digest) as reader:
            return reader.read()

    def copy_to(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        """Write a stored object to a local file, atomically and verified.

        The content goes to a temporary file beside ``dest``, is fsynced and
        checked against the digest, and only then renamed to ``dest``, so
        ``dest`` is either the complete, correct content or untouched. If
        ``dest`` is an existing directory the file is named after the digest.
        Missing parent folders are created. Returns the path written.
        """
        target = Path(dest)
        if target.is_dir():
            target = target / digest
        with self.open(digest) as reader:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.parent / f".{target.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
            try:
                with open(temp, "xb") as out:
                    # The reader raises CorruptObjectError at the end, before the rename.
                    shutil.copyfileobj(reader, out, CHUNK_SIZE)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, target)
                fsync_dir(str(target.parent))
            finally:
                remove_if_present(temp)
        return target

    def verify(self, digest: str) -> bool:
        """Whether a stored object's content matches its digest (reads it all).

        Raises :class:`ObjectNotFoundError` if it is absent.
        """
        try:
            with self.open(digest) as reader:
                while reader.read(CHUNK_SIZE):
                    pass
        except CorruptObjectError:
            return False
        return True

    # -- listing and removal

    def iter_objects(self) -> Iterator[ObjectInfo]:
        """Every stored object with its size, in digest order (one listing, no per-object calls).

        Files under the objects folder whose name or place is not that of an
        object (stray files, temporary files) are skipped.
        """
        base = self._path(OBJECTS_DIR)
        self._fs.invalidate_cache(base)
        try:
            found = self._fs.find(base, detail=True)
        except FileNotFoundError:
            return
        prefix = base.rstrip("/") + "/"
        objects: list[ObjectInfo] = []
        for path, info in found.items():
            rel = path[len(prefix):] if path.startswith(prefix) else None
            if rel is None:
                continue
            parts = rel.split("/")
            if len(parts) != 3:
                continue
            first, second, name = parts
            if not _DIGEST_RE.fullmatch(name) or first != name[0:2] or second != name[2:4]:
                continue
            if info.get("type", "file") != "file":
                continue
            key = f"{OBJECTS_DIR}/{rel}"
            objects.append(ObjectInfo(name, int(info.get("size") or 0), key, self._fs.unstrip_protocol(path),
                                      _modified(info)))
        objects.sort(key=lambda item: item.digest)
        yield from objects

    def iter_digests(self) -> Iterator[str]:
        """The digest of every stored object, in sorted order."""
        for item in self.iter_objects():
            yield item.digest

    def delete(self, digest: str) -> bool:
        """Remove a stored object; return whether it was there."""
        path = self._path(object_key(digest))
        self._fresh(path)
        try:
            if not self._fs.isfile(path):
                return False
            self._fs.rm_file(path)
        except FileNotFoundError:
            return False
        self._fresh(path)
        return True

    def clean_temp(self, older_than: float = 3600.0) -> int:
        """Remove temporary files left by interrupted writes; return how many.

        Only local stores have them (``<root>/tmp/*.partial``). A file of a process of this machine
        that no longer runs (its name says which) goes at once; any other only once older than
        ``older_than`` seconds, since it may belong to a put still running elsewhere (a Dask
        worker on another machine, on a shared file system).
        """
        if not self._local:
            return 0
        temp_dir = Path(self._path(TEMP_DIR))
        if not temp_dir.is_dir():
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for entry in temp_dir.glob(f"*{TEMP_SUFFIX}"):
            try:
                if _writer_gone(entry.name) or entry.stat().st_mtime <= cutoff:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
