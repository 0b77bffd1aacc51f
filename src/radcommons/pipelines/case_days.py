"""Each case's day 0, kept by the site once the commons committed a contribution carrying the case.

Every time the commons holds of a case is a day offset from the case's index event (its day
0). :func:`radcommons.clinical.convert_clinical` chooses day 0 from what a contribution
holds (the first study of the batch, the first positive test of the clinical file); a later
contribution with an earlier study of the same patient, or a positive test the first one did
not hold, would count the case from another day, and the commons would hold its records
counted from two days. So the day 0 a committed contribution used is recorded here, and every
later contribution of the case counts from it (:func:`known`).

Private state, like the pseudonym registry beside it (it names original MRNs and real dates):
``<state dir>/case-days.sqlite``, readable by its owner only, never sent. Schema::

    case_days(site, project, patient_id, event, day0, case_id, dataset, submission_id, recorded_at)
        PK (site, project, patient_id)

A day 0 once recorded is the case's for good: recording again (a resumed or repeated
contribution) keeps the first, in one transaction (all of a commit's cases or none).
Reading never creates the file: a dry run writes nothing.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from radcommons.clinical import Day0
from radcommons.deid import make_state_dir
from radcommons.durable import owner_only_file
from radcommons.errors import UserError

FILENAME = "case-days.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS case_days (
    site TEXT NOT NULL,
    project TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    event TEXT NOT NULL,
    day0 TEXT NOT NULL,
    case_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    submission_id INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (site, project, patient_id)
);
"""


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / FILENAME


def _unreadable(path: Path, error: Exception) -> UserError:
    return UserError(f"the record of the cases' day 0 {path} cannot be read ({error})",
                     "restore it from the state directory's backup: without it, cases sent before would be counted "
                     "from another day 0")


def known(state_dir: Path, site: str, project: str) -> dict[str, Day0]:
    """By MRN, the day 0 of each case of ``site`` the commons holds in ``project`` (none recorded: empty)."""
    path = _path(state_dir)
    if not path.exists():
        return {}
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)) as db:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'case_days'").fetchone():
                return {}  # created by a run stopped before it wrote anything
            rows = db.execute("SELECT patient_id, event, day0, dataset FROM case_days WHERE site = ? AND project = ?",
                              (site, project)).fetchall()
        return {mrn: Day0(event, _dt.date.fromisoformat(day), dataset) for mrn, event, day, dataset in rows}
    except (sqlite3.Error, ValueError) as error:
        raise _unreadable(path, error) from None


def record(state_dir: Path, site: str, project: str, cases: Mapping[str, tuple[str, Day0]], *,
           dataset: str, submission_id: int) -> int:
    """Record, for good, the day 0 of ``cases`` (MRN -> (case submitter_id, day 0)) the commons committed in
    ``submission_id``; one already recorded is kept. Returns how many were new."""
    if not cases:
        return 0
    path = make_state_dir(Path(state_dir)) / FILENAME
    owner_only_file(path)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    rows = [(site, project, mrn, day0.event, day0.date.isoformat(), case_id, dataset, submission_id, now)
            for mrn, (case_id, day0) in sorted(cases.items())]
    try:
        with closing(sqlite3.connect(path, timeout=60)) as db:
            db.executescript(_SCHEMA)
            with db:  # one transaction: all of them or none
                before = db.total_changes
                db.executemany("INSERT OR IGNORE INTO case_days VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                return db.total_changes - before
    except sqlite3.Error as error:
        raise UserError(f"the cases' day 0 could not be recorded in {path} ({error})",
                        "free the disk or fix the state directory's permissions, then run the same command again "
                        "(the commons has the data: nothing is sent twice)") from None
