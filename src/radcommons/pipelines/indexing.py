"""The one place that turns verified instances and clinical records into index records.

Used by ``radcommons ingest`` (:mod:`radcommons.pipelines.ingest`) and by the submission
commit (:mod:`radcommons.pipelines.submission`):

* :func:`read_header` / :func:`examine`: read a header (never the pixels) and run the
  verification gate (:func:`radcommons.deid.check_deidentified`), as plain data;
* :class:`IndexWriter`: writes project, dataset, case, imaging_study, series and instance
  records (looked up by submitter_id within the project, so reruns add nothing twice),
  clinical records, quarantine entries and study versions, inside the caller's transaction;
* :func:`index_transaction`: the transaction every index writer runs in; it takes the index's
  write lock first (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL transaction-level advisory lock),
  so concurrent writers (STOW-RS requests, commits, ingests) queue instead of racing their
  check-then-insert of the same project, dataset, case, study or series into a UNIQUE error;
* :meth:`IndexWriter.finish`: the derived fields of every study it touched (instance counts,
  modalities, age at imaging, days from study to positive / negative COVID tests);
* :meth:`IndexWriter.mark_pending` / :func:`finish_abandoned`: an ingest commits batch by batch
  and derives at its end, so each batch also names its studies in ``ingest_pending``; what a
  killed ingest left there is derived by the next ingest or server start.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from radcommons.deid.check import Finding
from radcommons.durable import process_ended
from radcommons.dicom.index_fields import InstanceFields
from radcommons.pipelines.examine import (  # noqa: F401 - re-exported: callers know them from here
    Examined,
    Gate,
    deid_gate,
    examine,
    findings_reason,
    read_header,
)
from radcommons.dictionary import LINK_COLUMN_SUFFIX, load_dictionary
from radcommons.harmonize.enumerations import BODY_PART, BODY_PART_TERM_LENGTH, body_part_term
from radcommons.roles import check_availability, check_project_name
from radcommons.harmonize.study_codes import CODE_FIELDS
from radcommons.store.index.harmonization import StoredDecisions, image_modality  # decisions win over the matcher
from radcommons.store.index import node_tables
from radcommons.store.index.facts import refresh_series_facts
from radcommons.store.index.schema import system_table
from radcommons.store.index.system import QUARANTINE_HELD

#: Age above which the dictionary records only the ``gt89`` flag (HIPAA Safe Harbor).
MAX_REPORTED_AGE = 89
#: Clinical node types a submission may carry, in the order they are written.
CLINICAL_NODES = ("case", "imaging_study", "measurement", "visit", "condition", "medication", "procedure",
                  "observation")
_DAYS_PER_YEAR = 365.25
#: Key of the PostgreSQL advisory lock that index writers hold for their transaction ("RCIX").
INDEX_WRITE_LOCK = 0x52434958
#: Values per SQL ``IN (...)`` list (SQLite allows 32,766 parameters, PostgreSQL 65,535).
_IN_LIST = 500


@contextmanager
def index_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that writes the index, holding the index's write lock from its start.

    Writers look rows up before inserting them (a project, dataset, case, study, series or
    instance is found by its submitter_id, or created), number study versions from the highest
    one, and check that UIDs are in no other project; all of that holds only if no other writer
    changes the index in between. SQLite has one writer at a time anyway: ``BEGIN IMMEDIATE``
    takes its write lock now, waiting up to the connection's busy timeout, instead of at the
    first INSERT after reads that another writer has since made stale (pysqlite would otherwise
    begin lazily, before the first INSERT). PostgreSQL: a transaction-level advisory lock, so
    each writer reads what the previous one committed (READ COMMITTED); readers never wait.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(INDEX_WRITE_LOCK)))
        yield conn


def _insert_skipping_existing(conn: Connection, table: Any, keys: tuple[str, ...]) -> Any:
    """An INSERT into ``table`` that skips a row whose ``keys`` exist (ON CONFLICT DO NOTHING)."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(conn.dialect.name)
    if dialect is None:  # pragma: no cover - the index is SQLite or PostgreSQL
        return insert(table)
    return dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys))


def _insert_new(conn: Connection, table: Any, row: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    """Insert ``row`` unless a row with the same ``keys`` exists: its id or None.

    A writer outside :func:`index_transaction` that loses a race then finds the winner's row
    instead of failing on the UNIQUE constraint.
    """
    return conn.execute(_insert_skipping_existing(conn, table, keys).values(row).returning(table.c.id)).scalar()


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, (_dt.datetime, _dt.date)):
            value = value.isoformat()
        out[key] = value
    return out


#: The column keeping DICOM Body Part Examined as sent, next to its normalised term.
BODY_PART_RAW = f"{BODY_PART}_raw"


def with_body_part(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (a study's or series' header fields) with Body Part Examined normalised and the
    raw value kept in ``body_part_examined_raw``: one facet value for CHEST, whatever a site wrote."""
    out = dict(values)
    raw = out.get(BODY_PART)
    if isinstance(raw, str) and raw.strip():
        out[BODY_PART] = body_part_term(raw)
        out[BODY_PART_RAW] = raw[:BODY_PART_TERM_LENGTH]
    return out


@dataclass
class IndexWriter:
    """Writes records of one project and dataset inside the caller's transactions.

    It remembers the ids it looked up or created, and which studies and cases it touched, so
    :meth:`finish` recomputes derived fields only where something changed.
    """

    project: str
    dataset: str
    created_by: str
    tables: dict[str, Any] = field(default_factory=node_tables)
    ids: dict[tuple[str, str], int] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    touched_studies: set[int] = field(default_factory=set)
    touched_cases: set[int] = field(default_factory=set)
    #: series id -> the values this writer last gave it (the instances of a series repeat them)
    series_written: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Harmonization: curators' stored decisions, re-read once per transaction by write_instance().
    decisions: StoredDecisions = field(default_factory=StoredDecisions)

    # ------------------------------------------------------------------ generic records

    def lookup(self, conn: Connection, node: str, submitter_id: str) -> int | None:
        key = (node, submitter_id)
        if key in self.ids:
            return self.ids[key]
        table = self.tables[node]
        found = conn.execute(
            select(table.c.id).where(table.c.project_id == self.project, table.c.submitter_id == submitter_id)
        ).scalar()
        if found is not None:
            self.ids[key] = found
        return found

    def get_or_create(self, conn: Connection, node: str, submitter_id: str, values: dict[str, Any]) -> int:
        """The id of the record, inserted with ``values`` when missing (existing values are kept)."""
        found = self.lookup(conn, node, submitter_id)
        if found is None:
            table = self.tables[node]
            row = {"project_id": self.project, "submitter_id": submitter_id, "created_by": self.created_by, **values}
            found = _insert_new(conn, table, row, ("project_id", "submitter_id"))
            if found is None:  # another writer inserted it since the lookup
                found = self.lookup(conn, node, submitter_id)
                assert found is not None
            else:
                self.added[node] += 1
            self.ids[(node, submitter_id)] = found
        return found

    def upsert(self, conn: Connection, node: str, submitter_id: str, values: dict[str, Any]) -> int:
        """Insert the record, or update the given ``values`` of the existing one."""
        found = self.lookup(conn, node, submitter_id)
        if found is None:
            return self.get_or_create(conn, node, submitter_id, values)
        if values:
            table = self.tables[node]
            conn.execute(update(table).where(table.c.id == found).values(updated_at=func.now(), **values))
        return found

    def ensure_project(self, conn: Connection, program: str = "RadCommons", availability: str = "open") -> None:
        table = self.tables["project"]
        if conn.execute(select(table.c.id).where(table.c.submitter_id == self.project)).scalar() is not None:
            return
        availability = check_availability(availability)  # a value the access rule does not know never lands
        check_project_name(self.project)
        programs = self.tables["program"]
        program_id = conn.execute(select(programs.c.id).where(programs.c.submitter_id == program)).scalar()
        if program_id is None:
            program_id = _insert_new(conn, programs, {"submitter_id": program, "name": program,
                                                      "created_by": self.created_by}, ("submitter_id",))
            if program_id is None:  # another writer created it since
                program_id = conn.execute(select(programs.c.id).where(programs.c.submitter_id == program)).scalar_one()
            else:
                self.added["program"] += 1
        if _insert_new(conn, table, {"project_id": self.project, "submitter_id": self.project, "name": self.project,
                                     "availability": availability, "program_id": program_id,
                                     "created_by": self.created_by}, ("submitter_id",)) is not None:
            self.added["project"] += 1

    def dataset_id(self, conn: Connection, site_id: str) -> int:
        return self.get_or_create(conn, "dataset", self.dataset, {"site_id": site_id})

    # ------------------------------------------------------------------ images

    def case_for(self, conn: Connection, fields: InstanceFields, site_id: str) -> int:
        """The case of an instance's patient; created from the header when no clinical record made it."""
        age = fields.patient_age_years
        values: dict[str, Any] = {
            "dataset_id": self.dataset_id(conn, site_id),
            "index_event": "First Imaging Study",
            "age_at_index": age if age is not None and age <= MAX_REPORTED_AGE else None,
            "age_at_index_gt89": "Yes" if age is not None and age > MAX_REPORTED_AGE else "No",
            "sex": fields.sex,
            "race": "Not Reported",
            "ethnicity": "Not Reported",
            "covid19_positive": "Not Reported",
            "site_id": site_id,
        }
        case_id = self.get_or_create(conn, "case", fields.patient_id, values)
        self.touched_cases.add(case_id)
        return case_id

    def study_values(self, fields: InstanceFields) -> dict[str, Any]:
        values = with_body_part(fields.study)
        # Harmonized once, when the study is first recorded (PS3.3 Study Description -> LOINC);
        # a curator's stored decision for the pair wins over the matcher (store.index.harmonization).
        values.update(self.decisions.study_code_fields(fields.series.get("modality", ""),
                                                       values.get("study_description", "")))
        age = fields.patient_age_years
        if age is not None and age <= MAX_REPORTED_AGE:
            values["age_at_imaging"] = age  # Patient's Age is the age on the day of the study
        return values

    def study_id(self, conn: Connection, study_uid: str) -> int | None:
        """The imaging_study with this Study Instance UID in the project (whatever its submitter_id)."""
        key = ("imaging_study", study_uid)
        if key in self.ids:
            return self.ids[key]
        table = self.tables["imaging_study"]
        found = conn.execute(
            select(table.c.id).where(table.c.project_id == self.project, table.c.study_uid == study_uid)
        ).scalar()
        if found is not None:
            self.ids[key] = found
        return found

    def case_of_study(self, conn: Connection, study_id: int) -> int:
        """The case a study belongs to (series carry it too, for facets without a join)."""
        key = ("case_of_study", str(study_id))
        if key not in self.ids:
            study = self.tables["imaging_study"]
            self.ids[key] = conn.execute(select(study.c.case_id).where(study.c.id == study_id)).scalar_one()
        return self.ids[key]

    def write_instance(self, conn: Connection, fields: InstanceFields, site_id: str) -> str:
        """Record one instance with its parents: ``indexed``, ``unchanged`` (same content) or ``updated``."""
        return self.write_instances(conn, [fields], site_id)[0]

    def indexed_objects(self, conn: Connection, batch: Sequence[InstanceFields]) -> dict[str, tuple[int, str]]:
        """SOP Instance UID -> (instance id, object id) of the instances of ``batch`` already indexed
        in the project (one query per :data:`_IN_LIST` UIDs)."""
        table = self.tables["instance"]
        uids = sorted({fields.instance["sop_instance_uid"] for fields in batch})
        existing: dict[str, tuple[int, str]] = {}
        for start in range(0, len(uids), _IN_LIST):
            existing.update((row.submitter_id, (row.id, row.object_id)) for row in conn.execute(
                select(table.c.submitter_id, table.c.id, table.c.object_id)
                .where(table.c.project_id == self.project, table.c.submitter_id.in_(uids[start:start + _IN_LIST]))))
        return existing

    def write_instances(self, conn: Connection, batch: Sequence[InstanceFields], site_id: str,
                        existing: Mapping[str, tuple[int, str]] | None = None) -> list[str]:
        """:meth:`write_instance` for many instances: one query finds those already indexed (or
        ``existing``, :meth:`indexed_objects` of the same batch, when the caller asked first), one
        multi-row INSERT adds the new ones (an instance listed twice counts as indexed, then unchanged
        or updated)."""
        self.decisions.use(conn)  # harmonization: this transaction's curator decisions (see study_values)
        table = self.tables["instance"]
        uids = [fields.instance["sop_instance_uid"] for fields in batch]
        if existing is None:
            existing = self.indexed_objects(conn, batch)
        statuses: list[str] = []
        new: dict[str, dict[str, Any]] = {}
        for fields, uid in zip(batch, uids):
            series_id = self._parents(conn, fields, site_id)
            if uid in new:  # listed twice in this batch: the last content wins
                same = new[uid]["object_id"] == fields.instance["object_id"]
                new[uid].update(series_id=series_id, **fields.instance)
                statuses.append("unchanged" if same else "updated")
            elif uid not in existing:
                new[uid] = {"project_id": self.project, "submitter_id": uid, "series_id": series_id,
                            "created_by": self.created_by, **fields.instance}
                statuses.append("indexed")
            elif existing[uid][1] == fields.instance["object_id"]:
                statuses.append("unchanged")
            else:
                conn.execute(update(table).where(table.c.id == existing[uid][0])
                             .values(series_id=series_id, updated_at=func.now(), **fields.instance))
                statuses.append("updated")
        if new:
            columns = list(dict.fromkeys(key for row in new.values() for key in row))
            conn.execute(insert(table), [{key: row.get(key) for key in columns} for row in new.values()])
            self.added["instance"] += len(new)
        return statuses

    def held_elsewhere(self, conn: Connection, batch: Sequence[InstanceFields]) -> dict[str, str]:
        """The Study, Series and SOP Instance UIDs of ``batch`` that another project holds, with that
        project (one query per table and :data:`_IN_LIST` UIDs): a UID belongs to one project only."""
        found: dict[str, str] = {}
        for node, column, uids in (
            ("imaging_study", "study_uid", sorted({f.study["study_uid"] for f in batch})),
            ("series", "series_uid", sorted({f.series["series_uid"] for f in batch})),
            ("instance", "sop_instance_uid", sorted({f.instance["sop_instance_uid"] for f in batch})),
        ):
            table = self.tables[node]
            for start in range(0, len(uids), _IN_LIST):
                found.update((row[0], row[1]) for row in conn.execute(
                    select(table.c[column], table.c.project_id)
                    .where(table.c[column].in_(uids[start:start + _IN_LIST]), table.c.project_id != self.project)))
        return found

    def held_by_other_site(self, conn: Connection, study_uids: Sequence[str], site_id: str) -> dict[str, str]:
        """The studies of this project among ``study_uids`` whose case belongs to another site, with
        that site: a study belongs to the site that sent it, and another site's copy (the same UIDs:
        the same export de-identified with the same key) would otherwise replace it as a new version
        and move it to that site's patient."""
        study, case = self.tables["imaging_study"], self.tables["case"]
        uids = sorted(set(study_uids))
        found: dict[str, str] = {}
        for start in range(0, len(uids), _IN_LIST):
            found.update((row[0], row[1]) for row in conn.execute(
                select(study.c.study_uid, case.c.site_id).join(case, case.c.id == study.c.case_id)
                .where(study.c.study_uid.in_(uids[start:start + _IN_LIST]), study.c.project_id == self.project,
                       case.c.site_id.is_not(None), case.c.site_id != site_id)))
        return found

    def _parents(self, conn: Connection, fields: InstanceFields, site_id: str) -> int:
        """The series of an instance, with its case and study, found or created; returns the series id."""
        case_id = self.case_for(conn, fields, site_id)
        study_uid = fields.study["study_uid"]
        study_id = self.study_id(conn, study_uid)
        if study_id is None:
            study_id = self.get_or_create(conn, "imaging_study", study_uid,
                                          {"case_id": case_id, **self.study_values(fields)})
            self.ids[("imaging_study", study_uid)] = study_id
        self.touched_studies.add(study_id)
        series_values = {"imaging_study_id": study_id, "case_id": self.case_of_study(conn, study_id),
                         **with_body_part(fields.series)}
        series_id = self.lookup(conn, "series", fields.series["series_uid"])
        if series_id is None or self.series_written.get(series_id) != series_values:
            series_id = self.upsert(conn, "series", fields.series["series_uid"], series_values)
            self.series_written[series_id] = series_values
        return series_id

    def study_instances(self, conn: Connection, study_id: int) -> dict[str, dict[str, Any]]:
        """SOP Instance UID -> {object_id, size, series_uid} of a study as indexed now."""
        instance, series = self.tables["instance"], self.tables["series"]
        rows = conn.execute(
            select(instance.c.sop_instance_uid, instance.c.object_id, instance.c.size, series.c.series_uid)
            .join(series, series.c.id == instance.c.series_id).where(series.c.imaging_study_id == study_id)
        ).all()
        return {r.sop_instance_uid: {"object_id": r.object_id, "size": r.size, "series_uid": r.series_uid}
                for r in rows}

    def remove_instances(self, conn: Connection, study_id: int, keep: set[str]) -> int:
        """Delete the study's instances not in ``keep`` (a resubmission replaced them); then empty series."""
        instance, series = self.tables["instance"], self.tables["series"]
        series_ids = list(conn.execute(select(series.c.id).where(series.c.imaging_study_id == study_id)).scalars())
        if not series_ids:
            return 0
        result = conn.execute(delete(instance).where(instance.c.series_id.in_(series_ids),
                                                     instance.c.sop_instance_uid.not_in(list(keep) or [""])))
        return int(result.rowcount or 0)

    def study_snapshot(self, conn: Connection, study_id: int) -> dict[str, Any]:
        table = self.tables["imaging_study"]
        row = conn.execute(select(table).where(table.c.id == study_id)).mappings().first()
        return _jsonable(row or {})

    def record_version(self, conn: Connection, study_uid: str, study_id: int, *, change: str,
                       submission_id: int | None) -> int:
        """Append the study's current state to its history; returns the version number."""
        versions = system_table("study_version")
        last = conn.execute(select(func.max(versions.c.version)).where(
            versions.c.project_id == self.project, versions.c.study_uid == study_uid)).scalar()
        number = int(last or 0) + 1
        instances = [{"sop_instance_uid": uid, **values}
                     for uid, values in sorted(self.study_instances(conn, study_id).items())]
        conn.execute(insert(versions).values(
            project_id=self.project, study_uid=study_uid, version=number, submission_id=submission_id,
            change=change, instances=instances, study=self.study_snapshot(conn, study_id),
            created_at=_dt.datetime.now(_dt.timezone.utc),
        ))
        return number

    def latest_version(self, conn: Connection, study_uid: str) -> int:
        return self.latest_versions(conn, [study_uid]).get(study_uid, 0)

    def latest_versions(self, conn: Connection, study_uids: Iterable[str]) -> dict[str, int]:
        """Study UID -> its latest version number, for those of ``study_uids`` that have one
        (one query per :data:`_IN_LIST` UIDs)."""
        versions = system_table("study_version")
        uids = sorted(set(study_uids))
        found: dict[str, int] = {}
        for start in range(0, len(uids), _IN_LIST):
            found.update((row[0], int(row[1])) for row in conn.execute(
                select(versions.c.study_uid, func.max(versions.c.version))
                .where(versions.c.project_id == self.project, versions.c.study_uid.in_(uids[start:start + _IN_LIST]))
                .group_by(versions.c.study_uid)))
        return found

    def keep_baselines(self, conn: Connection, studies: Mapping[str, int]) -> dict[str, int]:
        """Before indexed studies change: record a ``created`` version of each of ``studies``
        (study UID -> id) that has none (indexed before versions were kept, or by an ingest), so
        its history names the content about to be replaced. Returns each one's latest version."""
        latest = self.latest_versions(conn, studies)
        for study_uid, study_id in sorted(studies.items()):
            if not latest.get(study_uid):
                latest[study_uid] = self.record_version(conn, study_uid, study_id, change="created",
                                                        submission_id=None)
        return latest

    def refresh_studies(self, conn: Connection, studies: Mapping[int, InstanceFields]) -> None:
        """A new version of each study (id -> the fields of one of its instances as sent now):
        its header values (description, body part, age at imaging...) are the new ones, harmonized
        again (:meth:`study_values`), as at a study's first indexing."""
        study = self.tables["imaging_study"]
        self.decisions.use(conn)
        for study_id, fields in sorted(studies.items()):
            values = self.study_values(fields)
            values.pop("study_uid", None)
            conn.execute(update(study).where(study.c.id == study_id).values(updated_at=func.now(), **values))
            self.touched_studies.add(study_id)

    # ------------------------------------------------------------------ quarantine

    def quarantine(self, conn: Connection, *, sha256: str, size: int | None, reason: str,
                   findings: Iterable[Finding] = (), source: str, site_id: str | None,
                   submission_id: int | None = None, sop_instance_uid: str = "", study_uid: str = "",
                   path_in_package: str | None = None) -> int:
        """Hold an instance for a curator; an entry already held for the same content is reused."""
        table = system_table("quarantine")
        found = conn.execute(select(table.c.id).where(
            table.c.project_id == self.project, table.c.sha256 == sha256, table.c.status == QUARANTINE_HELD,
        )).scalar()
        if found is not None:
            return int(found)
        return int(conn.execute(insert(table).values(
            project_id=self.project, submission_id=submission_id, source=source, dataset=self.dataset,
            site_id=site_id, sha256=sha256, size=size, sop_instance_uid=sop_instance_uid or None,
            study_uid=study_uid or None, path_in_package=path_in_package, reason=reason,
            findings=[{"code": f.code, "path": f.path, "message": f.message} for f in findings],
            status=QUARANTINE_HELD, created_at=_dt.datetime.now(_dt.timezone.utc),
        ).returning(table.c.id)).scalar_one())

    # ------------------------------------------------------------------ clinical records

    def write_clinical(self, conn: Connection, node: str, record: Mapping[str, Any], site_id: str) -> str:
        """Write one validated clinical record; returns "" or why it cannot be linked."""
        node_type = load_dictionary()[node]
        values = with_body_part({k: v for k, v in record.items()
                                 if k in node_type.property_names and k not in ("submitter_id", "project_id")})
        submitter_id = str(record["submitter_id"])
        if node == "case":
            values["dataset_id"] = self.dataset_id(conn, site_id)
            values.setdefault("site_id", site_id)
            self.touched_cases.add(self.upsert(conn, "case", submitter_id, values))
            return ""
        case_name = record.get(f"case{LINK_COLUMN_SUFFIX}")
        case_id = self.lookup(conn, "case", str(case_name)) if case_name else None
        if node == "imaging_study":
            study_uid = str(record["study_uid"])
            held = self._study_held_by_another(conn, study_uid, site_id)
            if held:
                return held
            study_id = self.study_id(conn, study_uid)
            if study_id is not None:
                table = self.tables["imaging_study"]
                if case_id is not None:
                    values["case_id"] = case_id
                    series = self.tables["series"]
                    conn.execute(update(series).where(series.c.imaging_study_id == study_id).values(case_id=case_id))
                    self.ids[("case_of_study", str(study_id))] = case_id
                conn.execute(update(table).where(table.c.id == study_id).values(updated_at=func.now(), **values))
                self.touched_studies.add(study_id)
                return ""
        if case_id is None:
            return f"case {case_name!r} is not in project {self.project}: send its case record first"
        values["case_id"] = case_id
        record_id = self.upsert(conn, node, submitter_id, values)
        if node == "imaging_study":
            self.ids[("imaging_study", str(record["study_uid"]))] = record_id
            self.touched_studies.add(record_id)
        self.touched_cases.add(case_id)
        return ""

    def _study_held_by_another(self, conn: Connection, study_uid: str, site_id: str) -> str:
        """Why a record of ``study_uid`` sent by ``site_id`` cannot be written ("" when it can): the
        study is in another project (a UID belongs to one project), or in this one for another site
        (only that site may describe it; the record would move the study to the sender's patient).
        The holder is not named: the sender may not be allowed to know it (the study's images get
        the reason that names it to those who may)."""
        study = self.tables["imaging_study"]
        holder = conn.execute(select(study.c.project_id).where(study.c.study_uid == study_uid,
                                                               study.c.project_id != self.project).limit(1)).first()
        if holder is not None:
            return f"study {study_uid} is held by another project: a study belongs to one project"
        if self.held_by_other_site(conn, [study_uid], site_id):
            return f"study {study_uid} belongs to another site: only that site may send its imaging_study record"
        return ""

    # ------------------------------------------------------------------ derived fields

    def finish(self, conn: Connection) -> None:
        """Derived fields of every touched study (and every study of a touched case).

        Set-based: a few statements for all the studies, whatever their number (one per study
        and series cost PostgreSQL a round trip each, at the end of every ingest and commit).
        """
        study, series, instance = self.tables["imaging_study"], self.tables["series"], self.tables["instance"]
        case, measurement = self.tables["case"], self.tables["measurement"]
        study_ids = set(self.touched_studies)
        if self.touched_cases:
            study_ids |= set(conn.execute(
                select(study.c.id).where(study.c.case_id.in_(sorted(self.touched_cases)))).scalars())
        ids = sorted(study_ids)
        if ids:
            self._derive_study_fields(conn, ids, study, series, instance, case, measurement)
            self._code_under_image_modality(conn, ids, study)
        # Facet table (radcommons.store.index.facts): rewrite the touched studies' series_facts rows
        # in this same transaction, so facet counts are never stale.
        refresh_series_facts(conn, study_ids)

    @staticmethod
    def _derive_study_fields(conn: Connection, ids: list[int], study: Any, series: Any, instance: Any, case: Any,
                             measurement: Any) -> None:
        """Series instance counts (empty series removed), study modalities, age at imaging and
        days to COVID-19 tests, for the studies ``ids``."""
        counted = conn.execute(
            select(series.c.id, series.c.imaging_study_id, series.c.modality, series.c.number_of_instances,
                   func.count(instance.c.id).label("count"))
            .select_from(series.outerjoin(instance, instance.c.series_id == series.c.id))
            .where(series.c.imaging_study_id.in_(ids))
            .group_by(series.c.id, series.c.imaging_study_id, series.c.modality, series.c.number_of_instances)
        ).all()
        empty = sorted(row.id for row in counted if row.count == 0)
        if empty:
            conn.execute(delete(series).where(series.c.id.in_(empty)))
        recount = [{"b_id": row.id, "b_count": row.count} for row in counted
                   if row.count and row.number_of_instances != row.count]
        if recount:
            conn.execute(update(series).where(series.c.id == bindparam("b_id"))
                         .values(number_of_instances=bindparam("b_count")), recount)
        has_series: set[int] = set()
        modalities: dict[int, set[str]] = defaultdict(set)
        for row in counted:
            has_series.add(row.imaging_study_id)
            if row.count and row.modality:
                modalities[row.imaging_study_id].add(row.modality)
        studies = conn.execute(select(study.c.id, study.c.case_id, study.c.days_to_study, study.c.age_at_imaging)
                               .where(study.c.id.in_(ids))).all()
        case_ids = sorted({row.case_id for row in studies if row.case_id is not None})
        cases = {row.id: row for row in conn.execute(
            select(case.c.id, case.c.age_at_index, case.c.age_at_index_gt89).where(case.c.id.in_(case_ids)))}
        tested = sorted({row.case_id for row in studies if row.case_id is not None and row.days_to_study is not None})
        tests: dict[int, list[Any]] = defaultdict(list)
        for row in conn.execute(select(measurement.c.case_id, measurement.c.test_result_text,
                                       measurement.c.days_to_test).where(measurement.c.case_id.in_(tested))):
            tests[row.case_id].append(row)
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in studies:
            values: dict[str, Any] = {}
            if row.id in has_series:
                values["study_modality"] = sorted(modalities[row.id])
            case_row = cases.get(row.case_id)
            if row.age_at_imaging is None and case_row is not None and row.days_to_study is not None \
                    and case_row.age_at_index is not None and case_row.age_at_index_gt89 != "Yes":
                age = case_row.age_at_index + int(row.days_to_study // _DAYS_PER_YEAR)
                if 0 <= age <= MAX_REPORTED_AGE:
                    values["age_at_imaging"] = age
            if row.days_to_study is not None:
                mine = tests.get(row.case_id, [])
                values["days_from_study_to_pos_covid_test"] = sorted(
                    t.days_to_test - row.days_to_study for t in mine
                    if t.test_result_text == "Positive" and t.days_to_test is not None)
                values["days_from_study_to_neg_covid_test"] = sorted(
                    t.days_to_test - row.days_to_study for t in mine
                    if t.test_result_text == "Negative" and t.days_to_test is not None)
            if values:
                updates[tuple(sorted(values))].append({"b_id": row.id, **{f"b_{k}": v for k, v in values.items()}})
        for keys, rows in updates.items():  # one executemany per set of columns
            conn.execute(update(study).where(study.c.id == bindparam("b_id"))
                         .values({key: bindparam(f"b_{key}") for key in keys}), rows)

    def _code_under_image_modality(self, conn: Connection, ids: list[int], study: Any) -> None:
        """The LOINC fields of the studies ``ids`` from their image modality (:func:`image_modality`
        of ``study_modality``, as the review queue and curator decisions read a study), not from the
        instance :meth:`study_values` happened to see first: a CT study whose dose report (SR) came
        first was looked up as an SR and left without a code that no decision could reach."""
        self.decisions.use(conn)
        rows = conn.execute(select(study.c.id, study.c.study_modality, study.c.study_description,
                                   *(study.c[name] for name in CODE_FIELDS)).where(study.c.id.in_(ids))).all()
        answers: dict[tuple[str, str], Mapping[str, str | None]] = {}
        changed = []
        for row in rows:
            if not row.study_modality:  # no instance (a clinical record alone): nothing was coded from images
                continue
            pair = (image_modality(row.study_modality), row.study_description or "")
            if pair not in answers:
                answers[pair] = self.decisions.study_code_fields(*pair)
            wanted = {name: answers[pair].get(name) for name in CODE_FIELDS}
            if any(getattr(row, name) != value for name, value in wanted.items()):
                changed.append({"b_id": row.id, **{f"b_{name}": value for name, value in wanted.items()}})
        if changed:
            conn.execute(update(study).where(study.c.id == bindparam("b_id"))
                         .values({name: bindparam(f"b_{name}") for name in CODE_FIELDS}), changed)

    def days_to_study_from_dates(self, conn: Connection, study_dates: Mapping[str, tuple[str, str]]) -> None:
        """Images only (ingest): a case's index event is its first imaging study, day 0.

        ``study_dates`` maps Study Instance UID -> (patient id, shifted StudyDate YYYYMMDD). Studies
        that already have ``days_to_study`` (from a clinical record) are left alone.
        """
        by_id = {study_id: dated for study_uid, dated in study_dates.items()
                 if (study_id := self.study_id(conn, study_uid)) is not None}
        self._days_to_study(conn, by_id)

    def _days_to_study(self, conn: Connection, study_dates: Mapping[int, tuple[str | None, str | None]]) -> None:
        """:meth:`days_to_study_from_dates` for studies given by id.

        A case's day 0 is the one recorded in ``case_day0`` by an earlier run, else this run's first study
        of the case, then recorded: a case ingested in several runs is counted from one day (a study of a
        later run that is earlier than day 0 gets a negative ``days_to_study``)."""
        study = self.tables["imaging_study"]
        parsed: dict[int, tuple[str, _dt.date]] = {}
        for study_id, (patient, date_text) in study_dates.items():
            try:
                day = _dt.datetime.strptime(date_text or "", "%Y%m%d").date()
            except ValueError:
                continue
            parsed[study_id] = (patient or "", day)
        if not parsed:
            return
        case_of = dict(conn.execute(select(study.c.id, study.c.case_id).where(study.c.id.in_(sorted(parsed)))).all())
        # a study with no case (none in the index) is counted by its Patient ID, within this run only
        owner: dict[int, int | str] = {study_id: case_of.get(study_id) or patient
                                       for study_id, (patient, _) in parsed.items()}
        first: dict[int | str, _dt.date] = {}
        for study_id, (_, day) in parsed.items():
            first[owner[study_id]] = min(first.get(owner[study_id], day), day)
        day0 = self._case_day0(conn, {case: day for case, day in first.items() if isinstance(case, int)})
        rows = [{"b_id": study_id, "b_days": (day - day0.get(owner[study_id], first[owner[study_id]])).days}
                for study_id, (_, day) in parsed.items()]
        if rows:  # one executemany, not a round trip per study
            conn.execute(update(study).where(study.c.id == bindparam("b_id"), study.c.days_to_study.is_(None))
                         .values(days_to_study=bindparam("b_days")), rows)

    @staticmethod
    def _case_day0(conn: Connection, first: Mapping[int, _dt.date]) -> dict[int, _dt.date]:
        """Each case's recorded day 0, ``first`` recorded for the cases that have none (a concurrent run's
        record wins: ON CONFLICT DO NOTHING, then read back)."""
        if not first:
            return {}
        table = system_table("case_day0")

        def recorded() -> dict[int, _dt.date]:
            rows = conn.execute(select(table.c.case_id, table.c.study_date).where(table.c.case_id.in_(sorted(first))))
            return {case: _dt.datetime.strptime(date, "%Y%m%d").date() for case, date in rows}

        known = recorded()
        new = [{"case_id": case, "study_date": f"{day:%Y%m%d}"} for case, day in first.items() if case not in known]
        if not new:
            return known
        conn.execute(_insert_skipping_existing(conn, table, ("case_id",)), new)
        return recorded()

    # ------------------------------------------------------------------ ingests killed half way

    def mark_pending(self, conn: Connection, run: str, study_dates: Mapping[str, tuple[str, str]]) -> None:
        """Name the studies of a batch in ``ingest_pending`` for ``run``, in the batch's transaction.

        ``study_dates`` as for :meth:`days_to_study_from_dates`. A study already named (by this
        run's earlier batch, or by another run) keeps its row.
        """
        pending = system_table("ingest_pending")
        ids = {study_id: dated for study_uid, dated in study_dates.items()
               if (study_id := self.study_id(conn, study_uid)) is not None}
        if not ids:
            return
        named = set(conn.execute(select(pending.c.study_id).where(pending.c.study_id.in_(sorted(ids)))).scalars())
        rows = [{"study_id": study_id, "run": run, "patient_id": patient, "study_date": date[:8] or None}
                for study_id, (patient, date) in ids.items() if study_id not in named]
        if rows:
            conn.execute(insert(pending), rows)

    def finish_pending(self, conn: Connection, runs: Iterable[str]) -> int:
        """Derive what ``runs`` left in ``ingest_pending`` (days to study, then :meth:`finish`) and
        remove their rows; the number of studies."""
        pending = system_table("ingest_pending")
        names = sorted(set(runs))
        if not names:
            return 0
        rows = conn.execute(select(pending.c.study_id, pending.c.patient_id, pending.c.study_date)
                            .where(pending.c.run.in_(names))).all()
        self._days_to_study(conn, {row.study_id: (row.patient_id, row.study_date) for row in rows})
        self.touched_studies.update(row.study_id for row in rows)
        self.finish(conn)
        self.forget_pending(conn, names)
        return len(rows)

    @staticmethod
    def forget_pending(conn: Connection, runs: Iterable[str]) -> None:
        """Remove the ``ingest_pending`` rows of ``runs`` (their studies are derived)."""
        pending = system_table("ingest_pending")
        conn.execute(delete(pending).where(pending.c.run.in_(sorted(set(runs)))))


#: How long another machine's pending ingest rows wait before they count as abandoned (an
#: ingest on another machine cannot be asked whether it still runs).
ABANDONED_ELSEWHERE_AFTER = _dt.timedelta(days=1)


def ingest_run_name() -> str:
    """This process's name in ``ingest_pending``: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(run: str, created_at: _dt.datetime | None, now: _dt.datetime) -> bool:
    host, _, pid = run.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) != os.getpid() and process_ended(int(pid))
    if created_at is None:
        return False
    if created_at.tzinfo is None:  # SQLite hands back naive UTC
        created_at = created_at.replace(tzinfo=_dt.timezone.utc)
    return now - created_at > ABANDONED_ELSEWHERE_AFTER


def finish_abandoned(engine: Engine) -> int:
    """Derive the studies that killed ingests indexed but never finished; the number of studies.

    A run of this machine is abandoned when its process has ended; one of another machine after
    :data:`ABANDONED_ELSEWHERE_AFTER`. Called when an ingest or the server starts.
    """
    pending = system_table("ingest_pending")
    with engine.connect() as conn:  # a read first: most starts find nothing, and take no write lock
        runs = conn.execute(select(pending.c.run, func.min(pending.c.created_at)).group_by(pending.c.run)).all()
    now = _dt.datetime.now(_dt.timezone.utc)
    abandoned = [run for run, created_at in runs if _abandoned(run, created_at, now)]
    if not abandoned:
        return 0
    with index_transaction(engine) as conn:
        return IndexWriter("", "", "ingest").finish_pending(conn, abandoned)
