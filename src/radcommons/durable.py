"""Writing files safely: atomic replacement, fsync, and one ``syncfs`` for many files.

One way for every writer that must not lose what it acknowledged (the object store, the
de-identifier's output batches): a file's bytes reach the disk before it gets its final
name, so a power cut leaves either the whole file or none.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import mmap
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO

from radcommons.errors import UserError


def fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.cache
def _syncfs_function() -> Any:
    """libc's ``syncfs`` (Linux), or None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    return function


#: Below this many files a batch is synced file by file; above it, one ``syncfs`` is cheaper.
_SYNCFS_MIN_FILES = 8


def sync_paths(files: Sequence[str], folders: Sequence[str], *, each: bool = False) -> None:
    """Make the contents of ``files`` and the entries of ``folders`` durable.

    Many files: one ``syncfs`` of their file system (it flushes everything dirty there, which
    costs one journal commit instead of one per file); few files or no ``syncfs``: fsync each.
    ``each``: fsync each file whatever their number, for a caller that syncs on a thread of
    its own while others keep writing (a ``syncfs`` would wait for their writes too).
    """
    if not files and not folders:
        return
    syncfs = _syncfs_function()
    anchor = files[0] if files else folders[0]
    if not each and syncfs is not None and len(files) + len(folders) >= _SYNCFS_MIN_FILES:
        fd = os.open(anchor, os.O_RDONLY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in folders:
        fsync_dir(folder)


def drop_cached(paths: Iterable[str]) -> None:
    """Let the kernel drop the cached pages of files that were written once and made durable, and
    that will not be read again soon (``posix_fadvise`` ``DONTNEED``; a no-op where there is none).

    A bulk load writes gigabytes it does not read back: left in the page cache they push out what
    the machine does use (the index's pages), and the kernel must find new pages for every further
    write instead of reusing these. Pages still dirty are not dropped: call it after the sync.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


@contextlib.contextmanager
def folder_held(folder: str | os.PathLike[str], *, user: str = "another run", hint: str = "wait for it to finish",
                wait: bool = False) -> Iterator[None]:
    """Hold ``folder`` for the block, or refuse at once (:class:`UserError`) when another run holds it.

    For a folder whose files one run at a time may write and remove (a de-identification
    destination, a gateway's spool): a second run at the same time would take the first one's
    unfinished files for a killed run's leftovers. The lock is an advisory ``flock`` on the folder
    itself, so it leaves no file behind and ends with the process that held it, killed or not.
    Where the file system has no ``flock`` the block runs unguarded. ``user`` says what holds the
    folder (``another gateway``) and ``hint`` what to do, in the refusal's message; ``wait``:
    wait for the holder instead (for a short read-change-write of a file in the folder).
    """
    os.makedirs(folder, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{os.fspath(folder)} is in use by {user} that has not finished", hint) from None
        except OSError:  # no flock on this file system
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def process_ended(pid: int) -> bool:
    """Whether no process of this machine runs under ``pid`` (the writer of a leftover named for it
    was killed); False when one runs, another user's included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def private_opener(path: str | os.PathLike[str], flags: int) -> int:
    """``open(..., opener=private_opener)``: a file created readable by its owner only (0600)."""
    return os.open(path, flags, 0o600)


def owner_only_file(path: str | os.PathLike[str]) -> None:
    """Create ``path`` readable by its owner only, or make an existing file so (a site's private
    state: SQLite gives its journal files the same mode)."""
    os.close(private_opener(path, os.O_RDWR | os.O_CREAT))
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)


def remove_partials(root: str | os.PathLike[str]) -> int:
    """Delete the temporary files (``.NAME...partial``: :func:`write_atomic`, the de-identifier's and the
    object store's copies) a killed run left anywhere under ``root``; returns how many."""
    count = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".partial") and name.startswith("."):
                remove_if_present(os.path.join(dirpath, name))
                count += 1
    return count


def remove_if_present(path: str | os.PathLike[str]) -> None:
    """Delete ``path``; a file already gone is no error (a temporary cleaned up twice)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so a
    reader (or a rerun after a kill) sees the old file or the new one, whole, never half of it.

    ``private``: readable by the owner only (mode 0600: reports that name original identifiers).
    The folder is created when missing; the temporary file is removed if the write fails.
    """
    with replaced_atomically(path, private=private) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike[str], mode: str = "wb", *, private: bool = False,
                        **open_args: Any) -> Iterator[Any]:
    """A file object that writes a temporary file beside ``path``, renamed to ``path`` when the block
    ends well and removed when it fails: :func:`write_atomic` for output written a piece at a time
    (``mode`` ``"w"`` and ``open_args`` such as ``encoding`` for text)."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.partial")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
        with os.fdopen(fd, mode, **open_args) as handle:
            yield handle
        os.replace(temp, path)
    except BaseException:
        remove_if_present(temp)
        raise


#: The unit of a direct write: file offsets and lengths are multiples of it (4 KiB covers the
#: logical block size of every disk in use).
_DIRECT_BLOCK = 4096
#: Bytes read and written at a time by :func:`copy_hashing_direct`.
_DIRECT_CHUNK = 1024 * 1024
_direct_buffers = threading.local()


def _direct_buffer() -> mmap.mmap:
    """This thread's page-aligned buffer for direct writes (an anonymous mapping is page-aligned)."""
    buffer = getattr(_direct_buffers, "buffer", None)
    if buffer is None:
        buffer = _direct_buffers.buffer = mmap.mmap(-1, _DIRECT_CHUNK)
    return buffer


def copy_hashing_direct(source: str | os.PathLike[str] | BinaryIO, target: str) -> tuple[str, int] | None:
    """Copy the file ``source`` (a path, or a binary file read from its position to its end) to
    the new file ``target``, writing around the page cache (``O_DIRECT``); return (SHA-256 hex of
    the bytes, their number), or None where the file system refuses direct writes (the caller
    copies as usual: ``target`` is not left behind and a file object is back at its position).

    A bulk writer that will not read its copies back gains twice: the kernel finds no page-cache
    pages for them (on the VMs measured that was most of a copy's cost) and the later sync has only
    metadata left to write. The last block is written padded with zeros and the file then cut to
    its length. Not durable by itself: the caller syncs (the file's size is metadata).
    """
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return None
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | direct, 0o644)
    except OSError as error:
        if error.errno == errno.EINVAL:
            return None
        raise
    given = not isinstance(source, (str, os.PathLike))
    start = source.tell() if given else 0  # type: ignore[union-attr]
    try:
        buffer = _direct_buffer()
        view = memoryview(buffer)
        hasher, size = hashlib.sha256(), 0
        with contextlib.nullcontext(source) if given else open(source, "rb", buffering=0) as src:  # type: ignore
            while True:
                filled = 0
                while filled < _DIRECT_CHUNK and (count := src.readinto(view[filled:])):
                    filled += count
                if not filled:
                    break
                hasher.update(view[:filled])
                size += filled
                padded = -(-filled // _DIRECT_BLOCK) * _DIRECT_BLOCK
                if padded != filled:
                    view[filled:padded] = bytes(padded - filled)
                if os.write(fd, view[:padded]) != padded:
                    raise OSError(errno.EIO, f"a short direct write to {target}")
                if filled < _DIRECT_CHUNK:
                    break
        if size % _DIRECT_BLOCK:
            os.ftruncate(fd, size)
        view.release()
    except BaseException as error:
        os.close(fd)
        remove_if_present(target)
        if isinstance(error, OSError) and error.errno == errno.EINVAL:
            if given:
                source.seek(start)  # type: ignore[union-attr]
            return None  # a file system that opens with O_DIRECT but wants other alignments
        raise
    os.close(fd)
    return hasher.hexdigest(), size


__all__ = ["copy_hashing_direct", "drop_cached", "fsync_dir", "remove_if_present", "sync_paths", "write_atomic"]
