"""Zip archives in a site's export: every member is an input of its own.

PACS and viewer exports often arrive zipped. A ``.zip`` file under the source of
``radcommons deid`` or ``radcommons contribute`` is opened and each member de-identified like
a file of the tree, reported as ``ARCHIVE.zip/MEMBER``. Nothing is unpacked under a member's
name: a member is copied, while it is de-identified, to a temporary file with a generated name
in the site's private scratch folder (it still holds identifiers) and removed after, so names
such as ``../../etc/passwd`` or absolute paths in an archive reach no file system path. A member
that decompresses beyond :data:`MAX_MEMBER_BYTES` (a zip bomb), an encrypted member, a symbolic
link, a zip inside the zip and an archive that cannot be read are rejected with the reason.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from radcommons.durable import process_ended

#: The largest member accepted, decompressed (the largest DICOM objects, multi-frame
#: angiography or whole-slide images, stay well below it).
MAX_MEMBER_BYTES = 16 * 1024**3

#: The suffix of the files opened as archives (compared without case).
ARCHIVE_SUFFIX = ".zip"


class MemberRefused(Exception):
    """A member that is not de-identified; the message says why."""


def is_archive(path: Path) -> bool:
    """Whether ``path`` is treated as a zip archive (by its name: ``*.zip``)."""
    return path.name.lower().endswith(ARCHIVE_SUFFIX)


def archive_members(path: Path) -> list[str] | str:
    """The names of the file members of the archive ``path``, in archive order, or why it
    cannot be read (folders are not members)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        return f"a zip archive that cannot be read ({reason}): nothing in it was de-identified"


def _size(count: int) -> str:
    return f"{count / 1024**3:g} GiB" if count >= 1024**3 else f"{count / 1024**2:g} MiB"


def _refusal(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & 0x1:
        return "an encrypted member: not de-identified; give the archive without a password"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link inside the archive: not followed"
    if is_archive(Path(info.filename)):
        return "a zip archive inside the zip archive: extract the outer archive first"
    if info.file_size > MAX_MEMBER_BYTES:
        return f"larger than {_size(MAX_MEMBER_BYTES)} when decompressed: not extracted"
    return ""


#: The archive this process read last, kept open: reading its central directory again for every
#: member would make an archive of n members cost n squared (24 ms per opening of a 5,000-member
#: archive on the benchmark machine). Keyed by path, size and modification time.
_OPEN: dict[tuple[str, int, int], tuple[zipfile.ZipFile, dict[str, int]]] = {}


def _opened(path: Path) -> tuple[zipfile.ZipFile, dict[str, int]]:
    """The archive, open, and the names that more than one of its members carry (with how many)."""
    status = os.stat(path)
    key = (os.fspath(path), status.st_size, status.st_mtime_ns)
    opened = _OPEN.get(key)
    if opened is None:
        close_archives()
        archive = zipfile.ZipFile(path)
        counts = Counter(info.filename for info in archive.infolist())
        opened = _OPEN[key] = (archive, {name: n for name, n in counts.items() if n > 1})
    return opened


def close_archives() -> None:
    """Close the archive this process keeps open (at the end of a run)."""
    for archive, _ in _OPEN.values():
        archive.close()
    _OPEN.clear()


@contextmanager
def extracted_member(path: Path, member: str, scratch: Path) -> Iterator[Path]:
    """The member ``member`` of the archive ``path`` as a temporary file in ``scratch`` (mode
    0600, a generated name), removed on exit; raises :class:`MemberRefused` with the reason.

    The decompressed length is counted as it is written, whatever the archive declares.
    """
    temp = scratch / f"member-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        try:
            archive, repeated = _opened(path)
            if member in repeated:
                # a name finds only the last of them: the others would be reported as done, unread
                raise MemberRefused(f"{repeated[member]} members of the archive are named {member!r}: they "
                                    "cannot be told apart, and none was de-identified; give them distinct names")
            info = archive.getinfo(member)
            refusal = _refusal(info)
            if refusal:
                raise MemberRefused(refusal)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with archive.open(info) as source, os.fdopen(fd, "wb") as out:
                written = 0
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > MAX_MEMBER_BYTES:
                        raise MemberRefused(f"larger than {_size(MAX_MEMBER_BYTES)} when decompressed "
                                            "(more than the archive declares): not extracted")
                    out.write(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, NotImplementedError) as error:
            reason = getattr(error, "strerror", None) or error
            raise MemberRefused(f"cannot be extracted from the archive ({reason})") from error
        yield temp
    finally:
        try:
            temp.unlink()
        except FileNotFoundError:
            pass


@contextmanager
def run_scratch(root: Path) -> Iterator[Path]:
    """A private scratch folder for one run under ``root`` (mode 0700), removed at the end, when
    the archive this process kept open is closed too.

    Folders that killed runs left (named for a process that no longer runs) are removed first:
    they may hold copies of members, with identifiers.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in root.glob("run-*"):
        pid = folder.name.split("-")[1]
        if not pid.isdigit() or process_ended(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    scratch = root / f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(mode=0o700)
    try:
        yield scratch
    finally:
        close_archives()
        shutil.rmtree(scratch, ignore_errors=True)


__all__ = ["ARCHIVE_SUFFIX", "MAX_MEMBER_BYTES", "MemberRefused", "archive_members", "close_archives",
           "extracted_member", "is_archive", "run_scratch"]
