"""Bulk ingest of an already de-identified DICOM tree: gate, store, index.

For every file: read the header (never the pixels), re-run the de-identification checker
(the verification gate, :func:`radcommons.pipelines.indexing.deid_gate`: whoever sent a file,
the commons checks it again), store the bytes in the object store under their sha256, and
record the instance with its series, study and case in the index
(:class:`~radcommons.pipelines.indexing.IndexWriter`, shared with the submission commit).
Files that fail the gate are stored too and held in the ``quarantine`` table for a curator.
Files are read and staged in the object store in parallel (:mod:`radcommons.parallel`); this
process then publishes each batch's objects (one sync for the batch,
:meth:`~radcommons.store.objects.ObjectStore.publish`) and writes the batch's index records in one
transaction, so an interrupted run leaves whole batches, no index record ever names an object
that is not durably stored, and a rerun adds only what is missing (instances are keyed by their
SOP Instance UID). Derived fields and facet rows are written once, at the end of the run, for
the studies the batches named in ``ingest_pending``; what a killed run named is derived by the
next ingest or server start (:func:`radcommons.pipelines.indexing.finish_abandoned`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sqlalchemy import Engine

from radcommons.dicom.index_fields import InstanceFields
from radcommons.errors import UserError
from radcommons.inputs import walk_files
from radcommons.parallel import map_unordered
from radcommons.pipelines.examine import Gate, ReadFile, deid_gate, read_and_stage
from radcommons.pipelines.indexing import IndexWriter, finish_abandoned, index_transaction, ingest_run_name
from radcommons.roles import check_availability, check_project_name
from radcommons.store.index.accounts import record_audit
from radcommons.store.objects import ObjectStore

#: Instances written per index transaction.
BATCH_SIZE = 500


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one input file."""

    path: str
    status: str  # indexed | updated | duplicate | rejected | quarantined
    reason: str = ""
    sop_instance_uid: str = ""
    object_id: str = ""
    quarantine_id: int | None = None


@dataclass
class IngestReport:
    """Every file's outcome, and the records added to the index."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    added: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def ok(self) -> bool:
        return not any(o.status in ("rejected", "quarantined") for o in self.outcomes)


def iter_files(root: Path) -> Iterator[Path]:
    """Every entry under ``root`` that is not a folder (or ``root`` itself), in a stable order
    (:func:`radcommons.inputs.walk_files`: links to folders followed, each folder once)."""
    if not root.is_dir():  # a file, or something else that then gets its reason (a FIFO ...)
        yield root
        return
    yield from walk_files(root)


def ingest_tree(
    root: Path,
    *,
    engine: Engine,
    store: ObjectStore,
    project: str,
    site_id: str,
    dataset: str | None = None,
    program: str = "RadCommons",
    availability: str = "open",
    created_by: str = "ingest",
    workers: int = 0,
    scheduler: str = "",
    gate: Gate = deid_gate,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> IngestReport:
    """Ingest every file under ``root`` into ``project``; see the module docstring."""
    if not root.exists():
        raise UserError(f"{root}: no such file or folder", "give the folder of a de-identified export")
    dataset = dataset or f"{site_id}_{_dt.date.today():%Y%m%d}"
    store.clean_temp()  # what killed ingests and uploads staged (never published, never listed)
    finish_abandoned(engine)  # what killed ingests indexed but never derived
    run = ingest_run_name()
    job = partial(read_and_stage, store_url=store.url, store_options=store.storage_options, gate=gate)
    writer = IndexWriter(project, dataset, created_by)
    report = IngestReport()
    study_dates: dict[str, tuple[str, str]] = {}
    # Checked before anything is read; the project itself is created with the first batch that
    # holds something to index, so a run that indexes nothing leaves no empty project behind.
    availability = check_availability(availability)
    check_project_name(project)

    def flush(batch: list[ReadFile]) -> list[FileOutcome]:
        """Publish one batch's objects (one sync), then index it in one transaction."""
        # the headers were read before staging: nothing reads these objects back here
        store.publish([read.staged for read in batch if read.staged is not None], keep_cached=False)
        outcomes: list[FileOutcome] = []
        with index_transaction(engine) as conn:
            # A study, series or instance UID belongs to one project (as at a submission commit).
            elsewhere = writer.held_elsewhere(conn, [read.examined.fields for read in batch if read.examined.fields])
            other_site = writer.held_by_other_site(conn, [read.examined.study_uid for read in batch], site_id)
            passing: list[ReadFile] = []
            indexable: list[ReadFile] = []
            for read in batch:
                fields = read.examined.fields
                assert fields is not None
                other = (elsewhere.get(fields.study["study_uid"]) or elsewhere.get(fields.series["series_uid"])
                         or elsewhere.get(read.examined.sop_instance_uid))
                if other:
                    outcomes.append(FileOutcome(read.path, "rejected", f"its study or UIDs are already in project "
                                                f"{other}: a UID belongs to one project; nothing indexed"))
                elif read.examined.study_uid in other_site:
                    outcomes.append(FileOutcome(read.path, "rejected", f"its study belongs to site "
                                                f"{other_site[read.examined.study_uid]}: nothing indexed"))
                else:
                    indexable.append(read)
            if indexable:
                writer.ensure_project(conn, program, availability)
            for read in indexable:
                fields = read.examined.fields
                assert fields is not None
                if read.examined.status != "quarantine":
                    passing.append(read)
                    continue
                object_id, uid = fields.instance["object_id"], read.examined.sop_instance_uid
                qid = writer.quarantine(
                    conn, sha256=object_id, size=read.size, reason=read.examined.reason,
                    findings=read.examined.findings, source="ingest", site_id=site_id,
                    sop_instance_uid=uid, study_uid=read.examined.study_uid, path_in_package=read.path,
                )
                outcomes.append(FileOutcome(read.path, "quarantined", read.examined.reason, uid, object_id, qid))
            all_fields = [read.examined.fields for read in passing if read.examined.fields is not None]
            batch_dates: dict[str, tuple[str, str]] = {}
            # An indexed instance sent with other content (a corrected export) makes a new version of
            # its study, as a resubmission or a STOW-RS resend does: the history keeps what it replaces.
            existing = writer.indexed_objects(conn, all_fields)
            corrected: dict[str, InstanceFields] = {}  # study uid -> an instance of it as sent now
            for fields in all_fields:
                before = existing.get(fields.instance["sop_instance_uid"])
                if before is not None and before[1] != fields.instance["object_id"]:
                    corrected[fields.study["study_uid"]] = fields
            changed = {study_uid: study_id for study_uid in corrected
                       if (study_id := writer.study_id(conn, study_uid)) is not None}
            writer.keep_baselines(conn, changed)
            statuses = writer.write_instances(conn, all_fields, site_id, existing)
            writer.refresh_studies(conn, {study_id: corrected[study_uid] for study_uid, study_id in changed.items()})
            versions = {study_uid: writer.record_version(conn, study_uid, study_id, change="ingest", submission_id=None)
                        for study_uid, study_id in sorted(changed.items())}
            for read, fields, status in zip(passing, all_fields, statuses):
                uid, object_id = read.examined.sop_instance_uid, fields.instance["object_id"]
                if status == "indexed":
                    outcome = FileOutcome(read.path, "indexed", "", uid, object_id)
                elif status == "updated":
                    version = versions.get(fields.study["study_uid"])
                    outcome = FileOutcome(read.path, "updated", "replaced the indexed content of its SOP Instance UID"
                                          + (f" (study version {version}; the previous one stays in its history)"
                                             if version else ""), uid, object_id)
                else:
                    outcome = FileOutcome(read.path, "duplicate", "already indexed (same SOP Instance UID)",
                                          uid, object_id)
                study_dates[fields.study["study_uid"]] = batch_dates[fields.study["study_uid"]] = (
                    fields.patient_id, fields.study_date)
                outcomes.append(outcome)
            # derived at the end of the run; named now, so that a kill before then loses nothing
            writer.mark_pending(conn, run, batch_dates)
            record_audit(conn, actor=created_by, action="ingest.batch", target=str(root), project=project,
                         records=len(batch))
        return outcomes

    # Batches are published and indexed on a thread of their own, one at a time and in
    # order, while the next batch is read and staged: the sync and the index transaction
    # overlap the reading instead of stopping it.
    batch: list[ReadFile] = []
    flushing: Future[list[FileOutcome]] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-flush") as flusher:

        def collect() -> None:
            nonlocal flushing
            if flushing is not None:
                done, flushing = flushing, None
                for outcome in done.result():
                    _record(report, outcome, on_file)

        for read in map_unordered(job, iter_files(root), workers=workers, scheduler=scheduler):
            if read.examined.status == "rejected":
                _record(report, FileOutcome(read.path, "rejected", read.examined.reason), on_file)
                continue
            batch.append(read)
            if len(batch) >= BATCH_SIZE:
                collect()
                flushing = flusher.submit(flush, batch)
                batch = []
        collect()
        if batch:
            for outcome in flush(batch):
                _record(report, outcome, on_file)
    with index_transaction(engine) as conn:
        writer.days_to_study_from_dates(conn, study_dates)
        writer.finish(conn)
        writer.forget_pending(conn, [run])
    report.added = dict(writer.added)
    return report


def _record(report: IngestReport, outcome: FileOutcome, on_file: Callable[[FileOutcome], None] | None) -> None:
    report.outcomes.append(outcome)
    if on_file is not None:
        on_file(outcome)


def iter_outcomes(report: IngestReport, statuses: Iterable[str]) -> Iterator[FileOutcome]:
    """The outcomes with one of ``statuses``."""
    wanted = set(statuses)
    return (outcome for outcome in report.outcomes if outcome.status in wanted)
