"""Bulk ingest of an already de-identified DICOM tree: gate, store, index.

For every file: read the header (never the pixels), re-run the de-identification checker
(the verification gate: whoever sent a file, the commons checks it again), store the bytes
in the object store under their sha256, and record the instance with its series, study and
case in the index. Files are read and stored in parallel (:mod:`radcommons.parallel`); the
index is written by this process in batches, each batch one transaction, so an interrupted
run leaves whole batches and a rerun adds only what is missing (instances are keyed by
their SOP Instance UID).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.engine import Connection

from radcommons.dicom.index_fields import InstanceFields, instance_fields
from radcommons.errors import UserError
from radcommons.parallel import map_unordered
from radcommons.store.index import node_tables
from radcommons.store.objects import ObjectStore

#: Instances written per index transaction.
BATCH_SIZE = 500
#: Age above which the dictionary records only the ``gt89`` flag (HIPAA Safe Harbor).
MAX_REPORTED_AGE = 89

#: A gate takes a header and returns the reasons it must not be published (empty: it passes).
Gate = Callable[[pydicom.Dataset], list[str]]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one input file."""

    path: str
    status: str  # indexed | duplicate | rejected | quarantined
    reason: str = ""
    sop_instance_uid: str = ""
    object_id: str = ""


@dataclass
class IngestReport:
    """Every file's outcome, and the records added to the index."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    added: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def ok(self) -> bool:
        return not any(o.status in ("rejected", "quarantined") for o in self.outcomes)


@dataclass(frozen=True)
class _Read:
    outcome: FileOutcome
    fields: InstanceFields | None = None


def default_gate(ds: pydicom.Dataset) -> list[str]:
    """The minimum a published instance must show: PS3.15 Patient Identity Removed = YES."""
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        return ["Patient Identity Removed (0012,0062) is not YES: de-identify it first (radcommons deid)"]
    return []


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` (or ``root`` itself), in a stable order."""
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


def _read_and_store(path: Path, *, store_url: str, store_options: dict[str, Any], gate: Gate) -> _Read:
    """Worker job: header, gate, object store. Returns plain data; never raises for bad files."""
    name = str(path)
    try:
        if path.stat().st_size == 0:
            return _Read(FileOutcome(name, "rejected", "empty file (0 bytes)"))
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return _Read(FileOutcome(name, "rejected", "not a DICOM Part 10 file (no DICM preamble)"))
    except (OSError, EOFError, ValueError, TypeError, KeyError) as error:
        return _Read(FileOutcome(name, "rejected", f"unreadable or truncated DICOM: {error}"))
    if "DirectoryRecordSequence" in ds:
        return _Read(FileOutcome(name, "rejected", "a DICOMDIR index, not an image: skipped"))
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID"):
        if not str(ds.get(keyword, "")).strip():
            return _Read(FileOutcome(name, "rejected", f"{keyword} is missing or empty"))
    reasons = gate(ds)
    uid = str(ds.SOPInstanceUID)
    if reasons:
        return _Read(FileOutcome(name, "quarantined", "; ".join(reasons), uid))
    stored = ObjectStore(store_url, **store_options).put_file(path)
    fields = instance_fields(ds, object_id=stored.digest, size=stored.size)
    return _Read(FileOutcome(name, "indexed", "", uid, stored.digest), fields)


class _IndexWriter:
    """Writes instances and their parents, remembering ids so each parent is looked up once."""

    def __init__(self, project: str, dataset: str, created_by: str) -> None:
        self.tables = node_tables()
        self.project = project
        self.dataset = dataset
        self.created_by = created_by
        self.ids: dict[tuple[str, str], int] = {}
        self.added: dict[str, int] = defaultdict(int)

    def _get_or_create(self, conn: Connection, node: str, submitter_id: str, values: dict[str, Any]) -> int:
        key = (node, submitter_id)
        if key in self.ids:
            return self.ids[key]
        table = self.tables[node]
        found = conn.execute(
            select(table.c.id).where(table.c.project_id == self.project, table.c.submitter_id == submitter_id)
        ).scalar()
        if found is None:
            row = {"project_id": self.project, "submitter_id": submitter_id, "created_by": self.created_by, **values}
            found = conn.execute(insert(table).values(row).returning(table.c.id)).scalar_one()
            self.added[node] += 1
        self.ids[key] = found
        return found

    def ensure_project(self, conn: Connection, program: str, availability: str) -> None:
        table = self.tables["project"]
        exists = conn.execute(select(table.c.id).where(table.c.submitter_id == self.project)).scalar()
        if exists is not None:
            return
        program_id = self._get_or_create_program(conn, program)
        conn.execute(
            insert(table).values(
                project_id=self.project, submitter_id=self.project, name=self.project,
                availability=availability, program_id=program_id, created_by=self.created_by,
            )
        )
        self.added["project"] += 1

    def _get_or_create_program(self, conn: Connection, program: str) -> int:
        table = self.tables["program"]
        found = conn.execute(select(table.c.id).where(table.c.submitter_id == program)).scalar()
        if found is None:
            found = conn.execute(
                insert(table).values(submitter_id=program, name=program, created_by=self.created_by)
                .returning(table.c.id)
            ).scalar_one()
            self.added["program"] += 1
        return found

    def write(self, conn: Connection, fields: InstanceFields, site_id: str) -> bool:
        """Record one instance; False when it was already indexed (a duplicate)."""
        dataset_id = self._get_or_create(conn, "dataset", self.dataset, {"site_id": site_id})
        age = fields.patient_age_years
        case_values: dict[str, Any] = {
            "dataset_id": dataset_id,
            "index_event": "First Imaging Study",
            "age_at_index": age if age is not None and age <= MAX_REPORTED_AGE else None,
            "age_at_index_gt89": "Yes" if age is not None and age > MAX_REPORTED_AGE else "No",
            "sex": fields.sex,
            "race": "Not Reported",
            "ethnicity": "Not Reported",
            "covid19_positive": "Not Reported",
            "site_id": site_id,
        }
        case_id = self._get_or_create(conn, "case", fields.patient_id, case_values)
        study_id = self._get_or_create(
            conn, "imaging_study", fields.study["study_uid"], {"case_id": case_id, **fields.study}
        )
        series_id = self._get_or_create(
            conn, "series", fields.series["series_uid"], {"imaging_study_id": study_id, **fields.series}
        )
        table = self.tables["instance"]
        uid = fields.instance["sop_instance_uid"]
        exists = conn.execute(
            select(table.c.id).where(table.c.project_id == self.project, table.c.submitter_id == uid)
        ).scalar()
        if exists is not None:
            return False
        conn.execute(
            insert(table).values(
                project_id=self.project, submitter_id=uid, series_id=series_id,
                created_by=self.created_by, **fields.instance,
            )
        )
        self.added["instance"] += 1
        return True

    def finish(self, conn: Connection, study_dates: dict[str, tuple[str, str]]) -> None:
        """Derived fields: series instance counts, study modalities and days from the first study."""
        series, instance, study = self.tables["series"], self.tables["instance"], self.tables["imaging_study"]
        series_ids = [i for (node, _), i in self.ids.items() if node == "series"]
        for series_id in series_ids:
            count = conn.execute(select(func.count()).where(instance.c.series_id == series_id)).scalar_one()
            conn.execute(update(series).where(series.c.id == series_id).values(number_of_instances=count))
        study_ids = {sid: i for (node, sid), i in self.ids.items() if node == "imaging_study"}
        for study_id in study_ids.values():
            modalities = sorted(
                conn.execute(select(series.c.modality).where(series.c.imaging_study_id == study_id).distinct())
                .scalars()
            )
            conn.execute(update(study).where(study.c.id == study_id).values(study_modality=modalities))
        # With images only, a case's index event is its first imaging study: day 0.
        first: dict[str, _dt.date] = {}
        parsed: dict[str, tuple[str, _dt.date]] = {}
        for study_uid, (patient, date_text) in study_dates.items():
            try:
                day = _dt.datetime.strptime(date_text, "%Y%m%d").date()
            except ValueError:
                continue
            parsed[study_uid] = (patient, day)
            first[patient] = min(first.get(patient, day), day)
        for study_uid, (patient, day) in parsed.items():
            if study_uid in study_ids:
                conn.execute(
                    update(study).where(study.c.id == study_ids[study_uid])
                    .values(days_to_study=(day - first[patient]).days)
                )


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
    gate: Gate = default_gate,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> IngestReport:
    """Ingest every file under ``root`` into ``project``; see the module docstring."""
    if not root.exists():
        raise UserError(f"{root}: no such file or folder", "give the folder of a de-identified export")
    dataset = dataset or f"{site_id}_{_dt.date.today():%Y%m%d}"
    job = partial(_read_and_store, store_url=store.url, store_options=store.storage_options, gate=gate)
    writer = _IndexWriter(project, dataset, created_by)
    report = IngestReport()
    study_dates: dict[str, tuple[str, str]] = {}
    with engine.begin() as conn:
        writer.ensure_project(conn, program, availability)
    batch: list[_Read] = []

    def flush() -> None:
        with engine.begin() as conn:
            for read in batch:
                assert read.fields is not None
                new = writer.write(conn, read.fields, site_id)
                outcome = read.outcome if new else FileOutcome(
                    read.outcome.path, "duplicate", "already indexed (same SOP Instance UID)",
                    read.outcome.sop_instance_uid, read.outcome.object_id,
                )
                study_dates[read.fields.study["study_uid"]] = (read.fields.patient_id, read.fields.study_date)
                _record(report, outcome, on_file)
        batch.clear()

    for read in map_unordered(job, iter_files(root), workers=workers, scheduler=scheduler):
        if read.fields is None:
            _record(report, read.outcome, on_file)
            continue
        batch.append(read)
        if len(batch) >= BATCH_SIZE:
            flush()
    flush()
    with engine.begin() as conn:
        writer.finish(conn, study_dates)
    report.added = writer.added
    return report


def _record(report: IngestReport, outcome: FileOutcome, on_file: Callable[[FileOutcome], None] | None) -> None:
    report.outcomes.append(outcome)
    if on_file is not None:
        on_file(outcome)


def iter_outcomes(report: IngestReport, statuses: Iterable[str]) -> Iterator[FileOutcome]:
    """The outcomes with one of ``statuses``."""
    wanted = set(statuses)
    return (outcome for outcome in report.outcomes if outcome.status in wanted)
