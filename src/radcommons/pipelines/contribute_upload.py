"""Sending packaged studies and clinical records to the commons, resumably (contribute and gateway).

One way to deliver, used by ``radcommons contribute`` and ``radcommons gateway``:

1. open (or find again) the submission of the dataset: the journal remembers which
   dataset this state directory was sending, so a restarted run continues the same
   submission (the server returns the open one for the same project and dataset). When the
   journal's last submission is committed and already holds everything of this run (an earlier
   run ended between its commit and recording it), that submission and its receipt are the
   answer and nothing is sent or opened;
2. upload every file not yet confirmed, in parallel threads: small files that the server
   holds nothing of several to a request (a batch, mostly of one study), the others one by
   one in chunks; the client retries with backoff and resumes a partial file from the
   offset the server holds. A file is written to the journal as confirmed only when the
   server said its content is complete, so after a kill nothing confirmed is sent again
   and anything unconfirmed is first asked about (``files/states``);
3. declare each study's manifest (sha256, size, path of every file), then post the
   clinical records per node type (skipped when the same content was already posted);
4. commit, and fetch the receipt.

The journal (``upload-journal.sqlite`` in the site's state directory) holds only
digests, study UIDs and submission ids: nothing identifying.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radcommons.client import (
    BATCH_FILES,
    ClinicalResult,
    CommonsClient,
    ManifestEntry,
    NotFoundError,
    Receipt,
    Submission,
    UploadResult,
)

JOURNAL = "upload-journal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    target TEXT PRIMARY KEY,          -- server|project|site|stream
    dataset TEXT NOT NULL,
    submission_id INTEGER,
    status TEXT NOT NULL DEFAULT 'open'
);
CREATE TABLE IF NOT EXISTS files (
    submission_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (submission_id, sha256)
);
CREATE TABLE IF NOT EXISTS sent (
    submission_id INTEGER NOT NULL,
    kind TEXT NOT NULL,               -- manifest:<study uid> or clinical:<node>
    digest TEXT NOT NULL,
    PRIMARY KEY (submission_id, kind)
);
"""


@dataclass(frozen=True)
class PackagedFile:
    """One file of a study package: where it is here, and what the server will know of it."""

    path: Path
    sha256: str
    size: int
    path_in_package: str


@dataclass(frozen=True)
class StudyPackage:
    """One study, the unit of upload: its files and their manifest."""

    study_uid: str
    files: tuple[PackagedFile, ...]
    #: The study version at the commons the manifest was built on (0: none), declared with it so
    #: that the commit refuses the study if another has been made since; None (contribute): no check.
    base_version: int | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def manifest(self) -> list[ManifestEntry]:
        return [ManifestEntry(f.sha256, f.size, f.path_in_package) for f in self.files]


@dataclass
class UploadStats:
    """What one run did (so a resumed run can show that nothing was sent twice)."""

    files: int = 0  #: files in the packages
    sent: int = 0  #: files whose bytes were (at least partly) sent by this run
    confirmed_before: int = 0  #: skipped: the journal says the server confirmed them
    already_on_server: int = 0  #: skipped: HEAD said the server has the content
    bytes_sent: int = 0
    manifests_sent: int = 0
    clinical_posts: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Delivery:
    """The outcome of :func:`deliver`."""

    submission: Submission
    receipt: Receipt
    stats: UploadStats
    clinical: Mapping[str, ClinicalResult] = field(default_factory=dict)
    #: An earlier run sent all of it and its commit went through, but the run ended (killed, or the
    #: answer lost) before it recorded that: this is that submission and its receipt, nothing was sent.
    committed_before: bool = False


class UploadJournal:
    """What this state directory has confirmed with the server (thread-safe)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / JOURNAL
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Each confirmation must survive a kill -9 right after it: synchronous writes.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> UploadJournal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def last_submission(self, target: str) -> tuple[str, int | None, str] | None:
        """The submission last opened for ``target``: (dataset, id once known, open or committed)."""
        with self._lock:
            row = self._db.execute("SELECT dataset, submission_id, status FROM submissions WHERE target = ?",
                                   (target,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def dataset_for(self, target: str) -> tuple[str, int | None] | None:
        """The open dataset (and its submission id, once known) being sent to ``target``."""
        with self._lock:
            row = self._db.execute(
                "SELECT dataset, submission_id FROM submissions WHERE target = ? AND status = 'open'", (target,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def start(self, target: str, dataset: str, submission_id: int | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO submissions (target, dataset, submission_id, status) VALUES (?, ?, ?, 'open') "
                "ON CONFLICT (target) DO UPDATE SET dataset = excluded.dataset, "
                "submission_id = excluded.submission_id, status = 'open'",
                (target, dataset, submission_id),
            )

    def finish(self, target: str) -> None:
        """The submission was committed: the next run starts a new dataset."""
        with self._lock:
            self._db.execute("UPDATE submissions SET status = 'committed' WHERE target = ?", (target,))

    def confirmed(self, submission_id: int) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT sha256 FROM files WHERE submission_id = ?", (submission_id,)).fetchall()
        return {r[0] for r in rows}

    def confirm(self, submission_id: int, sha256: str, size: int) -> None:
        self.confirm_many(submission_id, [(sha256, size)])

    def confirm_many(self, submission_id: int, files: Sequence[tuple[str, int]]) -> None:
        """Files (``(sha256, size)``) the server stored, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR IGNORE INTO files VALUES (?, ?, ?)",
                                     [(submission_id, sha256, size) for sha256, size in files])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def was_sent(self, submission_id: int, kind: str, digest: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT digest FROM sent WHERE submission_id = ? AND kind = ?", (submission_id, kind)
            ).fetchone()
        return bool(row and row[0] == digest)

    def mark_sent(self, submission_id: int, kind: str, digest: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", (submission_id, kind, digest))


def content_digest(value: Any) -> str:
    """A stable digest of JSON-able content (to skip re-posting what the server has)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def target_key(server: str, project: str, site: str, stream: str = "contribute") -> str:
    """The journal key of one sending stream (contribute and the gateway keep apart)."""
    return "|".join((server.rstrip("/"), project, site, stream))


def open_submission(
    client: CommonsClient, journal: UploadJournal, *, target: str, project: str, site: str, dataset: str
) -> Submission:
    """The open submission of this stream: the journal's dataset if one is open, else ``dataset``
    (the server answers with the open submission of that name, or a new one)."""
    remembered = journal.dataset_for(target)
    name = remembered[0] if remembered else dataset
    submission = client.create_submission(project, name, site_id=site)
    journal.start(target, name, submission.id)
    return submission


def _manifest_mark(package: StudyPackage) -> tuple[str, str]:
    """The journal's record (kind, digest) of ``package``'s manifest as declared: its files.

    The base version is a record of its own (:func:`_manifest_marks`): a run that follows one whose
    commit went through unrecorded reads the version that commit made, so its base differs while
    its files are the same, and it is that committed delivery (:func:`_all_sent`), not a new one."""
    return f"manifest:{package.study_uid}", content_digest([m.to_json() for m in package.manifest()])


def _manifest_marks(package: StudyPackage) -> list[tuple[str, str]]:
    """The journal's records of ``package``'s manifest as declared: its files and its base version."""
    marks = [_manifest_mark(package)]
    if package.base_version is not None:
        marks.append((f"base:{package.study_uid}", str(package.base_version)))
    return marks


def _clinical_mark(node: str, rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The journal's record (kind, digest) of ``node``'s records as posted."""
    return f"clinical:{node}", content_digest(list(rows))


def _all_sent(journal: UploadJournal, submission_id: int, packages: Sequence[StudyPackage],
              clinical: Mapping[str, Sequence[Mapping[str, Any]]]) -> bool:
    """Whether the journal has every file, manifest and clinical post of this delivery as sent
    to ``submission_id``, unchanged; a manifest by its files, not by its base version, which a
    sender reading the study after that submission's commit finds moved by that very commit."""
    confirmed = journal.confirmed(submission_id)
    marks = [*map(_manifest_mark, packages), *(_clinical_mark(node, rows) for node, rows in clinical.items() if rows)]
    return (all(item.sha256 in confirmed for item in iter_files(packages))
            and all(journal.was_sent(submission_id, kind, digest) for kind, digest in marks))


def _committed_before(client: CommonsClient, journal: UploadJournal, *, target: str, dataset: str,
                      packages: Sequence[StudyPackage], clinical: Mapping[str, Sequence[Mapping[str, Any]]]
                      ) -> Delivery | None:
    """The delivery an earlier run of this stream made, when its submission was committed and it
    held all of this one: that run ended between the commit and recording it (killed, or the
    commit's answer lost), or this is the same dataset sent again. The server would otherwise open
    a second submission of the dataset and receive nothing new, and the site kept no receipt of
    the first."""
    last = journal.last_submission(target)
    if last is None or last[1] is None or (last[2] != "open" and last[0] != dataset):
        return None
    submission_id = last[1]
    try:
        submission = client.get_submission(submission_id)
    except NotFoundError:  # not on this server (a fresh index): start again
        return None
    if submission.status == "open":
        return None
    journal.finish(target)
    # An abandoned one (radcommons admin submission abandon) kept nothing: everything goes to a new one.
    if submission.status != "committed" or not _all_sent(journal, submission_id, packages, clinical):
        return None  # something new to send: a new submission
    files = len({item.sha256 for item in iter_files(packages)})
    stats = UploadStats(files=files, confirmed_before=files)
    return Delivery(submission, client.receipt(submission_id), stats, committed_before=True)


#: ``on_file(file, outcome)`` after each file: outcome is sent / confirmed_before / already_on_server.
FileCallback = Callable[[PackagedFile, str], None]
#: ``on_bytes(n)`` for every chunk sent (for a bytes progress bar).
BytesCallback = Callable[[int], None]


def upload_packages(
    client: CommonsClient,
    journal: UploadJournal,
    submission_id: int,
    packages: Sequence[StudyPackage],
    *,
    workers: int = 4,
    on_file: FileCallback | None = None,
    on_bytes: BytesCallback | None = None,
) -> UploadStats:
    """Upload every file of ``packages`` not yet confirmed, then declare each study's manifest."""
    stats = UploadStats()
    confirmed = journal.confirmed(submission_id)
    unique: dict[str, PackagedFile] = {}
    for package in packages:
        for item in package.files:
            unique.setdefault(item.sha256, item)
    stats.files = len(unique)
    lock = threading.Lock()

    def confirm(items: Sequence[PackagedFile], results: Sequence[UploadResult]) -> list[tuple[PackagedFile, str]]:
        journal.confirm_many(submission_id, [(item.sha256, item.size) for item in items])
        with lock:
            stats.bytes_sent += sum(result.sent for result in results)
        return [(item, "already_on_server" if result.already_present else "sent")
                for item, result in zip(items, results)]

    def one(item: PackagedFile) -> list[tuple[PackagedFile, str]]:
        done = 0

        def progress(offset: int, total: int) -> None:
            nonlocal done
            if on_bytes and offset > done:
                on_bytes(offset - done)
            done = max(done, offset)

        result = client.upload_file(submission_id, item.path, sha256=item.sha256, progress=progress,
                                    state=held.get(item.sha256, (0, False)))
        return confirm([item], [result])

    def batch(items: list[PackagedFile]) -> list[tuple[PackagedFile, str]]:
        results = client.upload_batch(submission_id, [(item.path, item.sha256) for item in items])
        if on_bytes:
            on_bytes(sum(item.size for item in items))
        return confirm(items, results)

    todo = []
    for digest, item in unique.items():
        if digest in confirmed:
            stats.confirmed_before += 1
            if on_bytes:
                on_bytes(item.size)
            if on_file:
                on_file(item, "confirmed_before")
        else:
            todo.append(item)
    # what the server already holds of them, asked once instead of once per file
    held = client.upload_states(submission_id, (item.sha256 for item in todo)) if todo else {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="upload") as pool:
        futures = [pool.submit(one, job[0]) if len(job) == 1 else pool.submit(batch, job)
                   for job in upload_jobs(todo, held, client.chunk_size)]
        try:
            for future in as_completed(futures):
                for item, outcome in future.result():
                    if outcome == "sent":
                        stats.sent += 1
                    else:
                        stats.already_on_server += 1
                    if on_file:
                        on_file(item, outcome)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    for package in packages:
        marks = _manifest_marks(package)  # declared again when its files or its base version changed
        if all(journal.was_sent(submission_id, kind, digest) for kind, digest in marks):
            continue
        client.put_study_manifest(submission_id, package.study_uid, package.manifest(),
                                  base_version=package.base_version)
        for kind, digest in marks:
            journal.mark_sent(submission_id, kind, digest)
        stats.manifests_sent += 1
    return stats


def upload_jobs(items: Sequence[PackagedFile], held: Mapping[str, tuple[int, bool]],
                batch_bytes: int) -> list[list[PackagedFile]]:
    """The requests that send ``items``: small files the server holds nothing of go together, in
    their order (so mostly a study's files), up to ``batch_bytes`` and :data:`BATCH_FILES` files
    per batch; every other file (large, or partly on the server already) alone."""
    jobs: list[list[PackagedFile]] = []
    batch: list[PackagedFile] = []
    size = 0
    for item in items:
        if item.sha256 in held or item.size > batch_bytes:
            jobs.append([item])
            continue
        if batch and (size + item.size > batch_bytes or len(batch) == BATCH_FILES):
            jobs.append(batch)
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        jobs.append(batch)
    return jobs


def post_clinical(
    client: CommonsClient,
    journal: UploadJournal,
    submission_id: int,
    records: Mapping[str, Sequence[Mapping[str, Any]]],
    stats: UploadStats | None = None,
) -> dict[str, ClinicalResult]:
    """Post the records of each node type (parents first); a node already posted unchanged is skipped."""
    results: dict[str, ClinicalResult] = {}
    for node, rows in records.items():
        if not rows:
            continue
        kind, digest = _clinical_mark(node, rows)
        if journal.was_sent(submission_id, kind, digest):
            continue
        results[node] = client.post_clinical(submission_id, node, rows)
        journal.mark_sent(submission_id, kind, digest)
        if stats is not None:
            stats.clinical_posts += 1
    return results


def deliver(
    client: CommonsClient,
    journal: UploadJournal,
    *,
    target: str,
    project: str,
    site: str,
    dataset: str,
    packages: Sequence[StudyPackage],
    clinical: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    workers: int = 4,
    on_file: FileCallback | None = None,
    on_bytes: BytesCallback | None = None,
) -> Delivery:
    """Open the submission, upload, declare, post, commit; return the receipt (see the module doc)."""
    earlier = _committed_before(client, journal, target=target, dataset=dataset, packages=packages,
                                clinical=clinical or {})
    if earlier is not None:
        return earlier
    submission = open_submission(client, journal, target=target, project=project, site=site, dataset=dataset)
    stats = upload_packages(client, journal, submission.id, packages, workers=workers, on_file=on_file,
                            on_bytes=on_bytes)
    results = post_clinical(client, journal, submission.id, clinical or {}, stats)
    receipt = client.commit(submission.id)
    journal.finish(target)
    return Delivery(submission, receipt, stats, results)


def iter_files(packages: Iterable[StudyPackage]) -> Iterable[PackagedFile]:
    for package in packages:
        yield from package.files
