"""Resumable uploads: chunks appended to a spool file, moved into the object store when complete.

A spool file is ``<state>/uploads/<submission>/<sha256>.<length>.part``. Its length IS the
upload offset: nothing else is recorded. A chunk is written through to the page cache before
the answer, so the server process dying (even ``kill -9``) loses nothing acknowledged; chunks
are not fsynced one by one (that was an eighth of the server's time), so after a machine crash
the spool may be shorter than acknowledged and HEAD tells the client where to resume. When
the last byte arrives the content is checked against its name (hashed as it arrived when one
request carried it whole, else the spool is read again); content whose SHA-256 differs is
discarded (the client must start again), otherwise the spool is made durable and renamed into
the content-addressed object store (copied when the store is elsewhere: another file system,
S3) before the upload is acknowledged as stored: a stored file is never lost. The complete
files of one batch request are synced together, with one ``syncfs``.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from radcommons.digests import file_sha256
from radcommons.store.objects import ObjectStore, StoredObject

#: The largest chunk accepted in one request.
MAX_CHUNK = 64 * 1024 * 1024
SPOOL_SUFFIX = ".part"


@dataclass(frozen=True)
class UploadState:
    """How much of a file the server holds: ``offset`` of ``length`` bytes; ``complete`` when stored."""

    offset: int
    length: int | None
    complete: bool


class Busy(Exception):
    """Another request is writing this spool file."""


def _locked(path: Path) -> BinaryIO:
    """``path`` opened for appending (created if need be) and locked; :class:`Busy` when another
    request holds it, or finished it between the open and the lock (then the handle would be the
    object it became in the store, and writing to it would change a stored object)."""
    handle = open(path, "ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        opened, named = os.fstat(handle.fileno()), os.stat(path)
        if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino):
            raise Busy
    except (BlockingIOError, FileNotFoundError, Busy):
        handle.close()
        raise Busy from None
    return handle


class UploadSpool:
    """Spool files of in-progress uploads under ``root`` (the server's state folder)."""

    def __init__(self, root: Path, store: ObjectStore | None = None) -> None:
        """``store``: where complete uploads go; None for an operator's command that only reads and
        removes spools (:meth:`usage`, :meth:`discard`), which must not need the store reachable."""
        self.root = Path(root)
        self._store = store

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            raise AssertionError("this upload spool was opened without its object store")
        return self._store

    def _folder(self, submission_id: int) -> Path:
        return self.root / str(submission_id)

    def find(self, submission_id: int, sha256: str) -> tuple[Path, int] | None:
        """The spool file of an upload and its declared length, if one was started."""
        folder = self._folder(submission_id)
        for path in folder.glob(f"{sha256}.*{SPOOL_SUFFIX}"):
            length = path.name[len(sha256) + 1: -len(SPOOL_SUFFIX)]
            if length.isdigit():
                return path, int(length)
        return None

    def state(self, submission_id: int, sha256: str, uploaded: bool) -> UploadState | None:
        """What the server holds of ``sha256`` for this submission; None when nothing at all.

        ``uploaded``: the index records the file as uploaded to this submission
        (:func:`radcommons.pipelines.submission.uploaded_files`). Only then is the stored object
        complete here: one that another submission uploaded is neither told of (its existence
        and size are not another site's to learn) nor counted; the client uploads it, and the
        store keeps one copy.
        """
        if uploaded and self.store.exists(sha256):
            size = self.store.size(sha256)
            return UploadState(size, size, True)
        found = self.find(submission_id, sha256)
        if found is None:
            return None
        path, length = found
        return UploadState(path.stat().st_size, length, False)

    def open_for_append(self, submission_id: int, sha256: str, length: int, offset: int, *,
                        restart: bool = False) -> tuple[BinaryIO, Path]:
        """Open (creating) the spool for appending, locked; raises :class:`ValueError` on length mismatch
        and :class:`Busy` when another request holds it.

        A different declared length is accepted only at offset 0 (the client restarts);
        ``restart``: the file is sent whole, so what an earlier request left is cut away. The
        caller keeps the handle open, and so the lock, until the file is in the store or discarded.
        """
        found = self.find(submission_id, sha256)
        if found is not None and found[1] != length:
            if offset != 0:
                raise ValueError(found[1])
            with _locked(found[0]):  # not under the feet of a request still writing it
                found[0].unlink(missing_ok=True)
            found = None
        path = found[0] if found else self._folder(submission_id) / f"{sha256}.{length}{SPOOL_SUFFIX}"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = _locked(path)
        if restart:
            handle.truncate(0)
            handle.seek(0)
        return handle, path

    def finish(self, path: Path, sha256: str, received_digest: str | None = None) -> StoredObject | None:
        """Check a complete spool; move it into the store, or discard it (None) on a mismatch.

        ``received_digest``: the SHA-256 computed while the whole content arrived (then the
        spool is not read again).
        """
        return self.finish_many([(path, sha256, received_digest)])[0]

    def finish_many(self, files: Sequence[tuple[Path, str, str | None]]) -> list[StoredObject | None]:
        """:meth:`finish` of many complete spools (``(path, sha256, received digest or None)``):
        those whose content hashes to their name are made durable and moved into the store
        together (one sync for all); the others are discarded (None)."""
        matching = []
        for path, sha256, received in files:
            if (received or file_sha256(path)) == sha256:
                matching.append((path, sha256))
            else:
                path.unlink(missing_ok=True)
        # Dropped from the page cache once durable: the commit reads only the headers back.
        stored = iter(self.store.move_in_many(matching, keep_cached=False))
        kept = {path for path, _ in matching}
        return [next(stored) if path in kept else None for path, _, _ in files]

    def discard(self, submission_id: int) -> None:
        """Remove every spool of a submission (after its commit, or once abandoned).

        A request still writing one keeps its handle to a file no folder names
        (:func:`discarded`): it finds the submission committed and stores nothing.
        """
        folder = self._folder(submission_id)
        if folder.is_dir():
            self.remove(submission_id, list(folder.glob(f"*{SPOOL_SUFFIX}")))

    def usage(self, submission_id: int) -> tuple[int, _dt.datetime | None]:
        """The bytes a submission's spool files hold and when the newest was last written (UTC),
        or None without any: what an operator reads before abandoning it (a partial upload is
        recorded nowhere else)."""
        size, newest = 0, None
        for path in self._folder(submission_id).glob(f"*{SPOOL_SUFFIX}"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # stored or discarded meanwhile
                continue
            size += stat.st_size
            newest = max(newest or 0.0, stat.st_mtime)
        return size, None if newest is None else _dt.datetime.fromtimestamp(newest, _dt.timezone.utc)

    def remove(self, submission_id: int, paths: Sequence[Path]) -> None:
        """Remove spools one request wrote and may not keep (its submission was committed while
        they arrived), and the submission's folder once empty: a committed submission's folder
        is never read again."""
        for path in paths:
            path.unlink(missing_ok=True)
        try:
            self._folder(submission_id).rmdir()
        except OSError:  # another upload's spool is in it, or it is gone already
            pass


def discarded(handle: BinaryIO) -> bool:
    """Whether the spool open as ``handle`` was removed while it was written (its submission was
    committed: :meth:`UploadSpool.discard`): its bytes then have no name to be stored from."""
    return os.fstat(handle.fileno()).st_nlink == 0

