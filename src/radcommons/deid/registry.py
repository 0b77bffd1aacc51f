"""The site's pseudonym registry: a private SQLite file in the site's state directory.

It answers "which of my patients is this pseudonym" and "which study became which",
and keeps each patient's date offset. It holds original identifiers, so it lives in the
site's private state directory, never with the output.

A recorded offset is the patient's for good: a patient already in the registry keeps it
(one recorded before offsets had a minimum may be under 30 days), and only a patient not
yet recorded gets the derived one (:mod:`radcommons.deid.dates`). A run binds its
context to the registry (:meth:`Registry.bind`) before it de-identifies anything, so the
engine shifts the images by the recorded offset; the outcomes carry it on to the
contribution pathway, which shifts the clinical study year with it.

Schema (``registry.sqlite``)::

    meta(key TEXT PRIMARY KEY, value TEXT)            -- schema_version, key_fingerprint
    patients(site, patient_id, pseudonym, date_offset_days)   PK (site, patient_id)
    studies(site, study_uid, new_study_uid, accession_number, patient_id, pseudonym)
                                                              PK (site, study_uid)

Concurrency: WAL journal and a 60 s busy timeout, plus retries; within one run the
workers return their mappings and only the parent process writes. The key fingerprint
is recorded on first use: opening the registry with another key is refused, so two
keys can never be mixed in one site's state.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from radcommons.deid.dates import date_offset_days
from radcommons.deid.engine import DeidContext, PatientRecord, StudyRecord
from radcommons.durable import owner_only_file
from radcommons.errors import UserError

SCHEMA_VERSION = "1"
FILENAME = "registry.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patients (
    site TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    date_offset_days INTEGER NOT NULL,
    PRIMARY KEY (site, patient_id)
);
CREATE INDEX IF NOT EXISTS patients_by_pseudonym ON patients (pseudonym);
CREATE TABLE IF NOT EXISTS studies (
    site TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    new_study_uid TEXT NOT NULL,
    accession_number TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    PRIMARY KEY (site, study_uid)
);
CREATE INDEX IF NOT EXISTS studies_by_new_uid ON studies (new_study_uid);
"""


def _retry(operation, attempts: int = 20):
    for attempt in range(attempts):
        try:
            return operation()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(min(0.05 * 2**attempt, 2.0))
    return None  # pragma: no cover


def make_state_dir(state_dir: Path) -> Path:
    """Create a site's state directory readable by its owner only (the registry, reports and scratch
    copies in it name patients); an existing one is left as it is."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return state_dir


class Registry:
    """The pseudonym registry of one site's state directory."""

    def __init__(self, state_dir: Path, key_fingerprint: str) -> None:
        self.path = make_state_dir(Path(state_dir)) / FILENAME
        owner_only_file(self.path)  # it maps pseudonyms back to MRNs
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        _retry(lambda: self._db.executescript(_SCHEMA))
        self._check_key(key_fingerprint)

    def _check_key(self, fingerprint: str) -> None:
        def run() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
                if not rows:
                    self._db.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [("schema_version", SCHEMA_VERSION), ("key_fingerprint", fingerprint)],
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            stored = rows.get("key_fingerprint", fingerprint)
            if stored != fingerprint:
                raise UserError(
                    f"the registry {self.path} was made with another key "
                    f"(fingerprint {stored}, this key {fingerprint})",
                    "use the site's original key file, or a separate --state-dir for a new key",
                )

        _retry(run)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, patients: Iterable[PatientRecord], studies: Iterable[StudyRecord]) -> None:
        """Add mappings (idempotent: a mapping is a pure function of key and input)."""
        patient_rows = sorted({(p.site, p.patient_id, p.pseudonym, p.date_offset_days) for p in patients})
        study_rows = sorted(
            {(s.site, s.study_uid, s.new_study_uid, s.accession_number, s.patient_id, s.pseudonym) for s in studies}
        )
        if not patient_rows and not study_rows:
            return

        def run() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO patients VALUES (?, ?, ?, ?)", patient_rows
                )
                self._db.executemany("INSERT OR IGNORE INTO studies VALUES (?, ?, ?, ?, ?, ?)", study_rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

        _retry(run)

    def recorded_offsets(self, key: bytes, site: str) -> dict[str, int]:
        """The patients of ``site`` whose recorded date offset is not the one the derivation
        gives now (:func:`~radcommons.deid.dates.date_offset_days`), with that offset.

        Only patients first recorded with an offset under 30 days differ (the derivation keeps
        every earlier offset of 30 days or more), and no patient recorded since is added: the
        mapping stays small and a run can carry it to every worker."""
        rows = self._db.execute(
            "SELECT patient_id, date_offset_days FROM patients WHERE site = ?", (site,)
        ).fetchall()
        return {patient: offset for patient, offset in rows if offset != date_offset_days(key, site, patient)}

    def bind(self, context: DeidContext) -> DeidContext:
        """``context`` keeping the offsets recorded for its site (:meth:`recorded_offsets`): the
        engine shifts a recorded patient's dates by the recorded offset, a new one's by the derived."""
        return replace(context, recorded_offsets=self.recorded_offsets(context.key, context.site))

    def patient_by_pseudonym(self, pseudonym: str) -> PatientRecord | None:
        """Which of the site's patients a pseudonym stands for."""
        row = self._db.execute(
            "SELECT site, patient_id, pseudonym, date_offset_days FROM patients WHERE pseudonym = ?",
            (pseudonym,),
        ).fetchone()
        return PatientRecord(*row) if row else None

    def patient(self, site: str, patient_id: str) -> PatientRecord | None:
        row = self._db.execute(
            "SELECT site, patient_id, pseudonym, date_offset_days FROM patients "
            "WHERE site = ? AND patient_id = ?",
            (site, patient_id),
        ).fetchone()
        return PatientRecord(*row) if row else None

    def study_by_new_uid(self, new_study_uid: str) -> StudyRecord | None:
        row = self._db.execute(
            "SELECT site, study_uid, new_study_uid, accession_number, patient_id, pseudonym "
            "FROM studies WHERE new_study_uid = ?",
            (new_study_uid,),
        ).fetchone()
        return StudyRecord(*row) if row else None

    def counts(self) -> dict[str, int]:
        return {
            "patients": self._db.execute("SELECT count(*) FROM patients").fetchone()[0],
            "studies": self._db.execute("SELECT count(*) FROM studies").fetchone()[0],
        }
