"""De-identifying a whole folder tree, in parallel with Dask.

Every regular file under the source, and every member of a zip archive in it
(:mod:`radcommons.deid.archives`), is an input and ends in the report with an
outcome. Outputs go to ``DST/<study uid>/<series uid>/<sop uid>.dcm``, paths built only
from new identifiers. Work is split into batches of files; batches run inline
(``workers=1``) or on worker processes through :mod:`radcommons.parallel` (Dask). A
batch's outputs are written to temporary names; the parent syncs them to disk together
and only then renames them into place (one flush per batch, not per file), on a thread
of its own while the next batches are de-identified (:class:`_Publisher`). Workers return
their mappings; the parent alone writes the pseudonym registry (after every group of
published batches, so a killed run loses at most one group of registry rows, and a rerun
recomputes them: they are pure functions of key and input).

A rerun keeps an output only when its source is unchanged: the size, modification and change
times of every source whose output was written are recorded per destination
(:class:`_Sources`, ``deid-sources.sqlite`` in the state directory, private: it names the
source files). A source that differs (a corrected file keeps its SOP Instance UID, so its
output has the same name) is de-identified again and its new output replaces the old one.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Collection

from radcommons.deid.archives import (
    MemberRefused,
    archive_members,
    extracted_member,
    is_archive,
    run_scratch,
)
from radcommons.deid.engine import DEIDENTIFIED, REJECTED, WITHHELD, DeidContext
from radcommons.deid.fileio import OutputWriteError, PendingWrites
from radcommons.durable import folder_held, private_opener, remove_partials, write_atomic
from radcommons.deid.files import deidentify_file
from radcommons.deid.outcome import FileOutcome
from radcommons.deid.keys import key_fingerprint
from radcommons.deid.registry import Registry, make_state_dir
from radcommons.deid.report import RunReport, report_stamp
from radcommons.errors import UserError
from radcommons.inputs import stat_input, walk_files
from radcommons.parallel import map_unordered

BATCH_SIZE = 16


def default_state_dir(site: str) -> Path:
    """``./var/deid-state/<site>``: the site's private state (registry, reports)."""
    return Path("var") / "deid-state" / site


def _inside(path: Path, root: Path) -> bool:
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents


def check_paths(src: Path, dst: Path, state_dir: Path, report_path: Path | None) -> None:
    """Refuse unusable or dangerous combinations of paths (raises UserError)."""
    if not src.exists():
        raise UserError(f"the source {src} does not exist")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"the destination {dst} exists and is not a folder")
    if src.is_dir() and _inside(dst, src):
        raise UserError(
            f"the destination {dst} is inside the source {src}",
            "a rerun would read its own output; choose a destination outside the source",
        )
    if _inside(src, dst):
        raise UserError(f"the source {src} is inside the destination {dst}")
    if _inside(state_dir, dst):
        raise UserError(
            f"the state directory {state_dir} is inside the destination {dst}",
            "the registry holds original identifiers and must never travel with the output",
        )
    if report_path is not None and _inside(report_path, dst):
        raise UserError(
            f"the report {report_path} is inside the destination {dst}",
            "the report names original files and identifiers; write it to the state directory",
        )


@dataclass(frozen=True)
class Input:
    """One entry to de-identify: a file of the tree, or a member of a zip archive in it."""

    path: Path
    label: str  #: the name in the report: relative to the source, ``ARCHIVE.zip/MEMBER`` for a member
    member: str | None = None  #: the member's name in the archive ``path``
    problem: str = ""  #: why it cannot be read at all (a damaged archive): reported as rejected
    #: its source is as it was when its output was written: an output already there is kept
    keep_existing: bool = False


def list_inputs(src: Path, exclude: Collection[Path] = (), skip: Collection[Path] = ()) -> list[Input]:
    """Every file under ``src`` (sorted), with its label relative to ``src``; the members of
    every zip archive in place of the archive (:mod:`radcommons.deid.archives`).

    Files in or under an ``exclude`` path are left out (for example the clinical
    spreadsheets of an export, which are not images and go their own way). The folders
    ``skip`` (the run's destination and state directory) are not entered even where a link
    in the source leads to them: a run must not read its own outputs or its registry.
    """
    if not src.is_dir():  # a file, or something else that then gets its reason (a FIFO ...)
        found = [(src, src.name)]
    else:
        excluded = [path.resolve() for path in exclude]
        found = [(path, path.relative_to(src).as_posix()) for path in walk_files(src, skip)
                 if not (excluded and any(_inside(path, root) for root in excluded))]
    inputs: list[Input] = []
    for path, label in found:
        if not is_archive(path) or isinstance(stat_input(path), str):
            inputs.append(Input(path, label))
            continue
        members = archive_members(path)
        if isinstance(members, str):
            inputs.append(Input(path, label, problem=members))
            continue
        inputs.extend(Input(path, f"{label}/{member}", member) for member in members)
    return inputs


def _deidentify_batch(
    batch: list[Input], *, dst: str, context: DeidContext, scratch: str
) -> tuple[list[FileOutcome], list[tuple[str, str]]]:
    """De-identify one batch of files into finished temporary files, not yet published.

    Returns the outcomes and the ``(temporary, final)`` paths of the outputs: the parent
    makes them durable and moves them into place (:class:`_Publisher`), then reports the
    outcomes. A run killed before that leaves ``*.partial`` files only, removed and redone
    by the next run. Members of archives are copied to ``scratch`` while they are read.
    """
    pending = PendingWrites()
    root = Path(dst)
    try:
        outcomes = [_deidentify_input(item, root, context, pending, Path(scratch)) for item in batch]
    except BaseException:
        pending.discard()
        raise
    return outcomes, pending.paths()


def _deidentify_input(item: Input, root: Path, context: DeidContext, pending: PendingWrites,
                      scratch: Path) -> FileOutcome:
    if item.problem:
        return FileOutcome(item.label, REJECTED, item.problem)
    if item.member is None:
        return deidentify_file(item.path, root, context, label=item.label, pending=pending,
                               keep_existing=item.keep_existing)
    try:
        with extracted_member(item.path, item.member, scratch) as copy:
            return deidentify_file(copy, root, context, label=item.label, pending=pending,
                                   keep_existing=item.keep_existing)
    except MemberRefused as refusal:
        return FileOutcome(item.label, REJECTED, str(refusal))


class _Publisher:
    """Makes batches durable and publishes them on a thread of its own, in order, while
    the next batches are being de-identified: the wait for the disk overlaps the work
    instead of adding to it. A file still appears under its final name only once its
    bytes are on disk (:meth:`PendingWrites.commit`), and a batch's outcomes are handed
    on only after that.

    An output that a batch writes where one is already (its source changed since an earlier
    run) replaces it, unless this run claimed that output first (an input of the same SOP
    Instance UID: the first one stays, as :func:`_mark_duplicates` reports)."""

    MAX_WAITING = 4  #: batches written but not yet published (bounds temporary files)

    def __init__(self, dst: Path, sources: _Sources, identities: dict[str, tuple[str, str]]) -> None:
        self._dst = dst
        self._sources = sources
        self._identities = identities
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deid-publish")
        self._waiting: deque[tuple[Future, list[FileOutcome]]] = deque()
        self._claimed: set[str] = set()  #: outputs this run wrote or kept
        #: outcomes of published batches taken off the queue and not yet returned: kept here, not in a
        #: local list, so that a later batch's failure does not lose them for the stopped run's report
        self._collected: list[FileOutcome] = []

    def __enter__(self) -> "_Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(wait=True)  # a batch being published is finished, not cut

    def submit(self, outcomes: list[FileOutcome], paths: list[tuple[str, str]]) -> list[FileOutcome]:
        """Queue one batch; returns the outcomes of the batches published meanwhile."""
        stale = {target for _, target in paths if target not in self._claimed}
        self._claimed.update(target for _, target in paths)
        self._claimed.update(str(self._dst / o.output) for o in outcomes if o.output and o.status == DEIDENTIFIED)
        made = [self._identities[o.input] for o in outcomes if o.status == DEIDENTIFIED and o.output
                and not o.skipped_existing and o.input in self._identities]
        future = self._executor.submit(self._publish, stale, made, paths)
        self._waiting.append((future, outcomes))
        return self._collect(block=len(self._waiting) > self.MAX_WAITING)

    def _publish(self, stale: set[str], made: list[tuple[str, str]], paths: list[tuple[str, str]]) -> None:
        """Remove the outputs of changed sources, record the sources of the new ones, then publish
        these: a kill in between leaves no output (the next run writes it), never an old output
        recorded as made from the new source. A destination that refuses them (a full disk) raises
        :class:`OutputWriteError`, which stops the run (a source recorded and its output not there
        is written by the next run)."""
        for target in stale:
            try:
                os.unlink(target)
            except FileNotFoundError:
                pass
        self._sources.record(made)
        try:
            PendingWrites.from_paths(paths).commit()
        except OutputWriteError as error:
            raise error.within(self._dst) from error.error

    def settle(self) -> list[FileOutcome]:
        """After the run stopped: wait for every queued batch (the publishing thread finishes them
        anyway); the outcomes of those published, whatever stopped the others, with those taken off
        the queue before the stop and not yet returned."""
        done = self._take()
        while self._waiting:
            future, outcomes = self._waiting.popleft()
            if future.exception() is None:
                done.extend(outcomes)
        return done

    def drain(self) -> list[FileOutcome]:
        """Wait for every queued batch; their outcomes."""
        while self._waiting:
            self._gather(block=True)
        return self._take()

    def _collect(self, block: bool) -> list[FileOutcome]:
        self._gather(block)
        return self._take()

    def _gather(self, block: bool) -> None:
        """Move the outcomes of the published batches at the head of the queue to ``_collected``
        (``block``: wait for the first one); raises what stopped a batch's publishing
        (:class:`OutputWriteError`), which stays queued for :meth:`settle`."""
        while self._waiting and (block or self._waiting[0][0].done()):
            future, outcomes = self._waiting[0]
            future.result()
            self._waiting.popleft()
            block = False
            self._collected.extend(outcomes)

    def _take(self) -> list[FileOutcome]:
        """The outcomes gathered and not yet returned, handed over once."""
        done, self._collected = self._collected, []
        return done


def _batches(items: list[Input], size: int) -> list[list[Input]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _mark_duplicates(outcomes: list[FileOutcome], owners: dict[str, str]) -> None:
    for outcome in outcomes:
        if outcome.status != DEIDENTIFIED or not outcome.output:
            continue
        owner = owners.setdefault(outcome.output, outcome.input)
        if owner != outcome.input:
            outcome.status = WITHHELD
            outcome.reason = f"duplicate SOP Instance UID: the same object as {owner} (written once)"
            outcome.output = None


def deidentify_tree(
    src: Path,
    dst: Path,
    context: DeidContext,
    *,
    state_dir: Path | None = None,
    workers: int | None = None,
    report_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    exclude: Collection[Path] = (),
    stopped: Callable[[RunReport], None] | None = None,
) -> RunReport:
    """De-identify every file under ``src`` into ``dst``; returns the written report.

    ``workers``: parallel worker processes (``None``/0: one per core; 1: inline).
    ``exclude``: files or folders under ``src`` that are not inputs.
    A run stopped on the way (Ctrl-C, SIGTERM, :class:`OutputWriteError`: the destination is full)
    still writes its report, of the files it finished and why it stopped (:attr:`RunReport.stopped`),
    hands it to ``stopped``, then raises what stopped it.
    """
    src, dst = Path(src), Path(dst)
    state_dir = Path(state_dir) if state_dir is not None else default_state_dir(context.site)
    check_paths(src, dst, state_dir, report_path)
    # Made before the destination (folder_held creates it, and its parents, with the umask's mode: a
    # contribution's state directory, which holds staging/, was left readable by every user).
    make_state_dir(state_dir)
    if _inside(dst, state_dir):
        dst.mkdir(mode=0o700, exist_ok=True)
    # Two runs into one destination at once took each other's unfinished files for a killed run's
    # leftovers and removed them (a contribution then sent incomplete studies).
    with folder_held(dst, user="another run de-identifying into it (deid or contribute)",
                     hint="wait for it to finish, or give this run another destination (contribute: --state-dir)"):
        return _deidentify_tree(src, dst, context, state_dir, workers, report_path, progress, exclude, stopped)


def _deidentify_tree(src: Path, dst: Path, context: DeidContext, state_dir: Path, workers: int | None,
                     report_path: Path | None, progress: Callable[[int, int], None] | None,
                     exclude: Collection[Path], stopped: Callable[[RunReport], None] | None) -> RunReport:
    inputs = list_inputs(src, exclude, skip=(dst, state_dir))
    make_state_dir(state_dir)
    remove_partials(dst)  # leftovers of a killed run; outputs themselves are complete
    # An output already there is not written again (a rerun resumes), unless other settings
    # wrote it: then it could hold what these remove, so every earlier output goes first.
    settings = context.settings_fingerprint()
    recorded = _settings_of(state_dir, dst)
    outputs_removed = 0 if recorded == settings else remove_outputs(dst)
    if recorded != settings:
        # Recorded before the first output is written, so that the record always names the settings of
        # every output in dst: it used to be written at the end, and a run with other settings that was
        # killed left its outputs under the old record, which the next run took for its own and kept
        # (an override that kept the patient's name, then the default profile: the names stayed).
        _record_settings(state_dir, dst, settings)
    if report_path is None:
        (state_dir / "reports").mkdir(mode=0o700, exist_ok=True)  # the reports name patients
        report_path = state_dir / "reports" / f"deid-{report_stamp()}.json"
    fingerprint = key_fingerprint(context.key)
    report = RunReport(str(src), str(dst), context.site, context.profile.name, fingerprint,
                       outputs_removed=outputs_removed)
    owners: dict[str, str] = {}
    with _Sources(state_dir, dst) as sources:
        if recorded != settings:
            sources.forget()  # its outputs are gone
        inputs, identities = _mark_unchanged(inputs, src, sources)
        with Registry(state_dir, fingerprint) as registry, _Publisher(dst, sources, identities) as publisher, \
                run_scratch(state_dir / "tmp") as scratch:
            # a patient the registry already holds keeps its recorded date offset (radcommons.deid.dates)
            job = partial(_deidentify_batch, dst=str(dst), context=registry.bind(context), scratch=str(scratch))
            done = 0
            group: list[FileOutcome] = []
            try:
                if progress:
                    progress(0, len(inputs))
                for outcomes, paths in map_unordered(job, _batches(inputs, BATCH_SIZE), workers=workers or 0,
                                                     chunk_size=1):
                    group.extend(publisher.submit(outcomes, paths))
                    if len(group) >= BATCH_SIZE * 4:
                        finished, group = group, []  # absorbed once, even when a stop comes in between
                        done += _absorb(finished, report, registry, owners)
                        if progress:
                            progress(done, len(inputs))
                group.extend(publisher.drain())
            except BaseException as stop:
                _stopped_run(report, report_path, stop, group + publisher.settle(), registry, owners, stopped)
                raise
            done += _absorb(group, report, registry, owners)
            if progress:
                progress(done, len(inputs))
    report.write(report_path)
    return report


def _stop_reason(stop: BaseException) -> str:
    """Why a run stopped, for its report."""
    if isinstance(stop, OutputWriteError):
        return f"{stop.message}; {stop.hint}"
    if isinstance(stop, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if not isinstance(stop, Exception):  # SIGTERM (radcommons.cli.app.Terminated), SystemExit
        return "terminated"
    return f"{type(stop).__name__}: {stop}"


def _stopped_run(report: RunReport, report_path: Path, stop: BaseException, published: list[FileOutcome],
                 registry: Registry, owners: dict[str, str], stopped: Callable[[RunReport], None] | None) -> None:
    """The report of a run that ``stop`` stopped, written with the outcomes of the files it
    ``published`` (their patients registered, as at the end of a run) and handed to ``stopped``.
    Nothing here may hide ``stop``, which the caller raises: a registry or report that cannot be
    written (its disk may be the full one) is left as it is."""
    report.stopped = _stop_reason(stop)
    try:
        _absorb(published, report, registry, owners)
    except Exception:  # noqa: BLE001 - the registry failing too; a rerun records those rows
        pass
    try:
        report.write(report_path)
    except OSError:
        return
    if stopped:
        stopped(report)


#: In the state directory: the settings fingerprint each destination's outputs were written with.
SETTINGS_FILE = "destinations.json"
_OUTPUT = re.compile(r"[0-9.]+/[0-9.]+/[0-9.]+\.dcm")


def _recorded_settings(state_dir: Path) -> dict[str, str]:
    """Destination (resolved) -> settings fingerprint; empty when none was recorded or the record
    cannot be read (then every destination's outputs are written again: the safe side)."""
    try:
        recorded = json.loads((state_dir / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _settings_of(state_dir: Path, dst: Path) -> str | None:
    return _recorded_settings(state_dir).get(str(dst.resolve()))


def _record_settings(state_dir: Path, dst: Path, settings: str) -> None:
    # Read, changed and written by one run at a time (a lock on the state directory, waited for):
    # two runs into other destinations could each drop the other's entry.
    with folder_held(state_dir, wait=True):
        recorded = {**_recorded_settings(state_dir), str(dst.resolve()): settings}
        write_atomic(state_dir / SETTINGS_FILE, json.dumps(recorded, indent=1, sort_keys=True) + "\n", private=True)


def remove_outputs(dst: Path) -> int:
    """Delete the outputs under ``dst`` (``<study uid>/<series uid>/<sop uid>.dcm``, nothing else);
    returns how many."""
    removed = 0
    for folder, _, names in os.walk(dst):  # links to folders are not followed: only what is in dst goes
        for name in names:
            path = Path(folder) / name
            if _OUTPUT.fullmatch(path.relative_to(dst).as_posix()):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _absorb(outcomes: list[FileOutcome], report: RunReport, registry: Registry, owners: dict[str, str]) -> int:
    _mark_duplicates(outcomes, owners)
    # In the report first: their outputs are published, and a registry that cannot be written (the
    # full disk that stopped a run) must not take them out of the stopped run's report too
    report.outcomes.extend(outcomes)
    registry.record(
        [o.patient for o in outcomes if o.patient is not None and o.status == DEIDENTIFIED],
        [o.study for o in outcomes if o.study is not None and o.status == DEIDENTIFIED],
    )
    return len(outcomes)


#: In the state directory: the identity of the source of every output, per destination.
SOURCES_FILE = "deid-sources.sqlite"


def _identity(path: Path) -> str | None:
    """Size, modification and change time: any write to a file changes its change time (which no
    copy that keeps times, ``cp -p`` or ``rsync -t``, can set back)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return f"{status.st_size}:{status.st_mtime_ns}:{status.st_ctime_ns}"


def _mark_unchanged(inputs: list[Input], src: Path, sources: _Sources
                    ) -> tuple[list[Input], dict[str, tuple[str, str]]]:
    """The inputs, those whose source is as recorded marked ``keep_existing``; and per label the
    ``(source, identity)`` to record once its output is written. A member of an archive is as
    its archive is."""
    root = os.path.abspath(src)
    identities: dict[str, tuple[str, str]] = {}
    seen: dict[Path, str | None] = {}
    for item in inputs:
        if item.problem:
            continue
        if item.path not in seen:
            seen[item.path] = _identity(item.path)
        identity = seen[item.path]
        if identity is not None:
            identities[item.label] = (os.path.join(root, item.label), identity)
    known = sources.known([source for source, _ in identities.values()])
    marked = [replace(item, keep_existing=True)
              if item.label in identities and known.get(identities[item.label][0]) == identities[item.label][1]
              else item for item in inputs]
    return marked, identities


class _Sources:
    """What the outputs of one destination were made from: source path -> identity (:func:`_identity`).

    A record, not a proof: when it is lost or unreadable every output is written again, which
    gives the same bytes. Written by the run that holds the destination, just before it publishes
    the outputs (:class:`_Publisher`)."""

    def __init__(self, state_dir: Path, dst: Path) -> None:
        path = state_dir / SOURCES_FILE
        os.close(private_opener(path, os.O_RDWR | os.O_CREAT))  # it names the source files
        self._dst = str(dst.resolve())
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError:  # damaged: start again (outputs are then all rewritten)
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
            os.close(private_opener(path, os.O_RDWR | os.O_CREAT))
            self._db = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        # used by the publishing thread once the run has read it
        db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a record lost in a crash only makes outputs be rewritten
        db.execute("CREATE TABLE IF NOT EXISTS sources (dst TEXT NOT NULL, source TEXT NOT NULL, "
                   "identity TEXT NOT NULL, PRIMARY KEY (dst, source)) WITHOUT ROWID")
        return db

    def __enter__(self) -> "_Sources":
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def known(self, sources: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(sources), 500):
            some = sources[start:start + 500]
            found.update(self._db.execute(
                f"SELECT source, identity FROM sources WHERE dst = ? AND source IN ({','.join('?' * len(some))})",
                [self._dst, *some]).fetchall())
        return found

    def record(self, rows: list[tuple[str, str]]) -> None:
        if not rows:
            return
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO sources VALUES (?, ?, ?)",
                                 [(self._dst, source, identity) for source, identity in rows])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def forget(self) -> None:
        self._db.execute("DELETE FROM sources WHERE dst = ?", (self._dst,))
