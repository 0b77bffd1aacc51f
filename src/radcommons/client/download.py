"""Resumable, verified, parallel downloads of the files of a manifest or a frozen cohort.

Each file goes to ``DEST/<case>/<study uid>/<series uid>/<sop uid>.dcm``. Bytes are written
to ``<name>.dcm.part`` and renamed when complete and verified (sha256 = the object id), so a
file with the final name is always whole. A rerun after any interruption (network, Ctrl-C,
an expired token, a killed process):

* skips a final file whose size and sha256 match (``skipped``);
* continues a ``.part`` file from its size with an HTTP ``Range`` request (``resumed``);
* fetches the rest (``downloaded``).

Transient failures (connection errors, 5xx) are retried from where the file stopped. An
authentication failure (401: expired or revoked token) stops every transfer at once with a
message that says how to continue: get a new token and run the same command again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radcommons.digests import file_sha256
from radcommons.durable import folder_held
from radcommons.errors import UserError
from radcommons.inputs import MAX_FILE_SIZE, read_input_bytes

#: ``progress(entry, new_bytes)``: called as bytes arrive (and with the size of skipped files).
ProgressCallback = Callable[["FileEntry", int], None]
#: Opens a byte stream of a file (``FileEntry.source``: its object id, or its path in an export)
#: from ``offset``: returns (offset the stream starts at, chunks).
Opener = Callable[[str, int], "tuple[int, Iterable[bytes]]"]

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _part(name: str) -> str:
    """A path component safe on every file system (no separators, no '..')."""
    cleaned = "".join(c if c in _SAFE else "_" for c in str(name)).strip(".")
    return cleaned or "_"


@dataclass(frozen=True)
class FileEntry:
    """One file of a manifest: its object id (sha256), size and place in the tree.

    A file of a server-made export (``Client.export_cohort``) has a ``relative`` path instead of
    a place in the case/study/series tree: it lands at ``DEST/relative`` and is asked for by that path.
    """

    object_id: str
    size: int
    case: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    relative: str = ""

    @property
    def source(self) -> str:
        """What the opener is asked for: the relative path of an export file, else the object id."""
        return self.relative or self.object_id

    @classmethod
    def from_row(cls, row: Mapping[str, Any], number: int | None = None) -> FileEntry:
        """The file of one manifest row (``number``: its place in the manifest, for messages)."""
        where = f"manifest row {number}" if number is not None else "a manifest row"
        try:
            if not isinstance(row, Mapping):
                raise TypeError(f"a row must be a mapping of columns, not {type(row).__name__}")
            if "object_id" not in row or "size" not in row:
                missing = [name for name in ("object_id", "size") if name not in row]
                raise ValueError(f"no {' or '.join(missing)} column (columns: {', '.join(map(str, row)) or 'none'})")
            digest = str(row["object_id"]).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"object_id {digest!r} is not a sha256")
            try:
                size = int(row["size"])
            except (TypeError, ValueError):
                raise ValueError(f"size {row['size']!r} is not a whole number of bytes") from None
            if not 0 <= size <= MAX_FILE_SIZE:
                raise ValueError(f"size {size} is negative or over the commons' limit of {MAX_FILE_SIZE} bytes")
            return cls(digest, size, str(row.get("case_submitter_id") or "unknown-case"),
                       str(row.get("study_uid") or "unknown-study"), str(row.get("series_uid") or "unknown-series"),
                       str(row.get("sop_instance_uid") or digest))
        except (TypeError, ValueError) as error:
            raise UserError(f"{where}: {error}",
                            "a manifest needs object_id, size, case_submitter_id, study_uid, series_uid, "
                            "sop_instance_uid (POST /api/v1/manifest writes one)") from None

    def path(self, dest: Path) -> Path:
        if self.relative:
            parts = self.relative.split("/")
            if self.relative.startswith("/") or any(p in ("", ".", "..") or "\\" in p for p in parts):
                raise UserError(f"refusing the path {self.relative!r}: not a plain relative path",
                                "the server sent a bad file list; report it to the commons operator")
            return dest.joinpath(*parts)
        return dest / _part(self.case) / _part(self.study_uid) / _part(self.series_uid) / (
            _part(self.sop_instance_uid) + ".dcm")


@dataclass
class DownloadReport:
    """What a download did; ``failed`` maps relative paths to error messages."""

    downloaded: int = 0
    resumed: int = 0
    skipped: int = 0
    bytes: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, outcome: str, nbytes: int) -> None:
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            self.bytes += nbytes

    def as_dict(self) -> dict[str, Any]:
        return {"downloaded": self.downloaded, "resumed": self.resumed, "skipped": self.skipped,
                "bytes": self.bytes, "failed": dict(self.failed)}


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a manifest file: JSON (a list), JSON lines, CSV, TSV or Parquet (by extension or content)."""
    source = Path(path)
    if not source.is_file():
        raise UserError(f"no manifest file at {source}", "write one with Client.manifest(...) or the API")
    rows = _manifest_rows(source)
    if not rows:
        raise UserError(f"{source}: the manifest lists no files",
                        "write one with Client.manifest(...) or the API (a header alone lists nothing)")
    return rows


def _manifest_rows(source: Path) -> list[Any]:
    hint = "give the manifest as the commons wrote it (JSON, JSON lines, CSV, TSV or Parquet)"
    if source.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet as pq

        try:
            return pq.read_table(source).to_pylist()
        except (OSError, pyarrow.ArrowException) as error:
            raise UserError(f"{source}: not a readable Parquet file ({error})", hint) from None
    try:
        text = read_input_bytes(source).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{source}: not UTF-8 text (byte {error.start})", "save it as UTF-8") from None
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            return list(json.loads(text))
        if stripped.startswith("{"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise UserError(f"{source}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})",
                        hint) from None
    except RecursionError:
        raise UserError(f"{source}: JSON nested too deeply to be a manifest", hint) from None
    delimiter = "\t" if source.suffix == ".tsv" or "\t" in text.partition("\n")[0] else ","
    try:
        return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as error:
        raise UserError(f"{source}: cannot parse ({error})", hint) from None


def entries_of(rows: Iterable[Mapping[str, Any] | FileEntry]) -> list[FileEntry]:
    """The distinct files of manifest rows (a file listed twice is fetched once). Two different
    files that would land on the same path are refused: one would overwrite the other."""
    distinct: dict[str, FileEntry] = {}
    places: dict[Path, tuple[int, FileEntry]] = {}
    for number, row in enumerate(rows, start=1):
        entry = row if isinstance(row, FileEntry) else FileEntry.from_row(row, number)
        distinct.setdefault(entry.object_id + entry.sop_instance_uid, entry)
        place = entry.path(Path("."))
        first = places.setdefault(place, (number, entry))
        if first[1].object_id != entry.object_id:
            raise UserError(f"manifest rows {first[0]} and {number} are different files (object_id "
                            f"{first[1].object_id[:12]}... and {entry.object_id[:12]}...) with one path, {place}",
                            "one would overwrite the other: fix or remove one of the rows")
    return list(distinct.values())


def strays(dest: str | os.PathLike[str], entries: Iterable[FileEntry], keep: Iterable[str] = ()) -> list[str]:
    """Files under ``dest`` (relative paths, sorted) that are none of ``entries``, nor their
    partial ``.part`` files, nor the bookkeeping files ``keep``: what an earlier download put there
    that this one does not hold (files of a project the user may no longer read, for one)."""
    root = Path(dest)
    wanted = {entry.path(root) for entry in entries}
    wanted |= {path.with_name(path.name + ".part") for path in set(wanted)}
    wanted |= {root / name for name in keep}
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                  if path.is_file() and path not in wanted) if root.is_dir() else []


def _complete(path: Path, entry: FileEntry) -> bool:
    return path.is_file() and path.stat().st_size == entry.size and file_sha256(path) == entry.object_id


def fetch_one(entry: FileEntry, dest: Path, opener: Opener, *, retries: int = 5,
              progress: ProgressCallback | None = None, stop: threading.Event | None = None,
              is_fatal: Callable[[BaseException], bool] = lambda e: False) -> str:
    """Download one file; returns ``skipped``, ``resumed`` or ``downloaded``."""
    target = entry.path(dest)
    if target.exists():
        if _complete(target, entry):
            if progress:
                progress(entry, entry.size)
            return "skipped"
        target.unlink()  # wrong size or content: fetch again
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    outcome = "resumed" if part.exists() and part.stat().st_size > 0 else "downloaded"
    for attempt in range(retries):
        try:
            _transfer(entry, part, opener, progress, stop)
            break
        except BaseException as error:  # noqa: BLE001 - classified below, re-raised when not transient
            if is_fatal(error) or isinstance(error, (KeyboardInterrupt, _Stopped)) or attempt + 1 == retries:
                raise
            time.sleep(min(10.0, 0.2 * 2**attempt))
    if file_sha256(part) != entry.object_id:
        part.unlink()
        raise UserError(f"{target.relative_to(dest)}: the downloaded bytes do not match sha256 {entry.object_id}",
                        "run the download again (the file is fetched anew)")
    os.replace(part, target)  # atomic: a final name always holds a whole, verified file
    return outcome


#: After this many files in a row fail (each after its retries) the download stops.
FAILURES_IN_A_ROW = 3


class _Stopped(Exception):
    """Another transfer failed fatally; stop this one (its .part file stays for a resume)."""


def _transfer(entry: FileEntry, part: Path, opener: Opener, progress: ProgressCallback | None,
              stop: threading.Event | None) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > entry.size:
        part.unlink()
        have = 0
    if have == entry.size:
        return
    start, chunks = opener(entry.source, have)
    if start == 0 and have:  # the server sent the whole file: start over
        part.unlink()
        have = 0
    try:
        with open(part, "ab") as handle:
            for chunk in chunks:
                if stop is not None and stop.is_set():
                    raise _Stopped()
                handle.write(chunk)
                if progress:
                    progress(entry, len(chunk))
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        # Closed here, on this thread, when the transfer stops for any reason. Left to the
        # garbage collector, an abandoned stream was closed wherever a collection happened to
        # run: once inside httpx's connection pool, on a thread holding the pool's lock, which
        # closing the stream takes again (a download that hung for good).
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if part.stat().st_size != entry.size:
        raise ConnectionError(f"transfer of {entry.object_id} ended early ({part.stat().st_size} of {entry.size} bytes)")


def download_entries(entries: Sequence[FileEntry], dest: str | os.PathLike[str], opener: Opener, *,
                     workers: int = 4, progress: ProgressCallback | None = None,
                     is_fatal: Callable[[BaseException], bool] = lambda e: False,
                     claim: Callable[[Path], None] | None = None) -> DownloadReport:
    """Fetch ``entries`` into ``dest`` with ``workers`` threads; a fatal error stops all and is raised.

    ``claim(dest)`` runs first, while ``dest`` is held: it may refuse the folder (:class:`UserError`)."""
    root = Path(dest)
    # Two downloads into one folder at once wrote into each other's .part files: files of twice
    # their size were renamed into place.
    with folder_held(root, user="another download", hint="wait for it to finish, or download into another folder"):
        if claim is not None:
            claim(root)
        return _download_entries(entries, root, opener, workers, progress, is_fatal)


def _download_entries(entries: Sequence[FileEntry], root: Path, opener: Opener, workers: int,
                      progress: ProgressCallback | None, is_fatal: Callable[[BaseException], bool]) -> DownloadReport:
    report = DownloadReport()
    stop = threading.Event()
    failing = 0  # files in a row that failed after their retries
    lock = threading.Lock()

    def one(entry: FileEntry) -> None:
        nonlocal failing
        if stop.is_set():
            return
        try:
            outcome = fetch_one(entry, root, opener, progress=progress, stop=stop, is_fatal=is_fatal)
        except _Stopped:
            return
        except BaseException as error:
            if is_fatal(error) or isinstance(error, KeyboardInterrupt):
                stop.set()
                raise
            reason = str(getattr(error, "message", error))
            with lock:
                report.failed[str(entry.path(root).relative_to(root))] = reason
                failing += 1
                if failing < FAILURES_IN_A_ROW or stop.is_set():
                    return
                stop.set()
            # The commons (or the network, or the disk) is gone: every other file would wait
            # through its own retries, one after another, for many silent minutes.
            raise UserError(f"{FAILURES_IN_A_ROW} files in a row could not be fetched (the last: {reason})",
                            "check that the commons is up, the network and the disk, then run the same download "
                            "again: complete files are skipped and partial ones resume") from None
        with lock:
            failing = 0
        report.add(outcome, entry.size)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rc-download") as pool:
        futures = [pool.submit(one, entry) for entry in entries]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        except KeyboardInterrupt:
            stop.set()
            raise
        for future in futures:
            if future.done() and future.exception() is not None:
                stop.set()
                for other in futures:
                    other.cancel()
                raise future.exception()  # type: ignore[misc]
    return report
