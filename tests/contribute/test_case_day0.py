"""A case's day 0 does not move between contributions: through ``radcommons contribute`` against a real
``radcommons serve``, a patient's later study sent first, then an earlier one."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
import pytest
from contribute_support import RealCommons

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow
DAY0_FILE = "case-days.sqlite"


def _radiograph_studies(corpus: Path) -> tuple[str, list[tuple[dt.date, Path]]]:
    """A site_b patient with radiograph studies (no pixel review, no OCR) on two days at least, by date."""
    by_patient: dict[str, dict[dt.date, Path]] = {}
    for study in sorted({p.parent.parent for p in (corpus / "site_b").rglob("*.dcm") if "CDROM" not in p.parts}):
        try:
            headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(study.rglob("*.dcm"))]
        except InvalidDicomError:
            continue  # one of the corpus' defects: not what this test is about
        one_day = len({ds.StudyDate for ds in headers}) == 1
        if {str(ds.get("Modality", "")) for ds in headers} <= {"CR", "DX"} and one_day:
            day = dt.datetime.strptime(str(headers[0].StudyDate), "%Y%m%d").date()
            by_patient.setdefault(str(headers[0].PatientID), {})[day] = study
    mrn, studies = next((m, s) for m, s in sorted(by_patient.items()) if len(s) >= 2)
    return mrn, sorted(studies.items())


def _setup(corpus: Path, tmp_path: Path) -> tuple[str, dt.date, dt.date, Path, Path, Path, Path]:
    """The patient, its earliest and latest study days, a source holding each study, the clinical folder and
    a key of the test's own (a UID belongs to one project, and the tests share one commons)."""
    mrn, studies = _radiograph_studies(corpus)
    (early, early_study), (late, late_study) = studies[0], studies[-1]
    sources = []
    for name, study in (("early", early_study), ("late", late_study)):
        shutil.copytree(study, tmp_path / name / study.name)
        sources.append(tmp_path / name)
    clinical = tmp_path / "clinical"
    clinical.mkdir()
    (clinical / "demographics.csv").write_text(f"MRN,Sex\n{mrn},F\n")
    (clinical / "visits.csv").write_text(f"MRN,visit_type,admission_date\n{mrn},Emergency,"
                                         f"{(late + dt.timedelta(days=5)).isoformat()}\n")
    key = tmp_path / "deid.key"
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    return mrn, early, late, sources[0], sources[1], clinical, key


def _contribute(commons: RealCommons, src: Path, clinical: Path, key: Path, state: Path, project: str,
                dataset: str, *extra: str, killed_after: int | None = None) -> subprocess.CompletedProcess[str]:
    args = ["contribute", str(src), "--clinical", str(clinical), "--site", "SITE_B", "--project", project,
            "--server", commons.url, "--token-file", str(commons.token_files["SITE_B"]), "--key-file", str(key),
            "--state-dir", str(state), "--workers", "1", "--dataset", dataset, *extra]
    launcher = [str(HERE / "kill_after.py"), str(killed_after)] if killed_after else ["-m", "radcommons"]
    return subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "250"})


def _at_commons(commons: RealCommons, project: str) -> tuple[dict[str, int], list[int], list[str]]:
    """days_to_study per study, days_to_visit of the visits and the cases' index events, as the index holds them."""
    with sqlite3.connect(commons.root / "index.db") as db:
        studies = dict(db.execute("SELECT study_uid, days_to_study FROM imaging_study WHERE project_id = ?",
                                  (project,)).fetchall())
        visits = [v for (v,) in db.execute("SELECT days_to_visit FROM visit WHERE project_id = ?", (project,))]
        events = [e for (e,) in db.execute('SELECT index_event FROM "case" WHERE project_id = ?', (project,))]
    return studies, visits, events


def _recorded(state: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(state / DAY0_FILE) as db:
        return db.execute("SELECT patient_id, event, day0, dataset FROM case_days").fetchall()


def _receipt(state: Path, dataset: str) -> dict:
    return json.loads(next((state / "receipts").glob(f"receipt-{dataset}-*.json")).read_text())


def test_an_earlier_study_sent_later_is_counted_from_the_first_contributions_day0(
        commons: RealCommons, corpus: Path, tmp_path: Path) -> None:
    project, state = "Send-11", tmp_path / "state"
    mrn, early, late, src_early, src_late, clinical, key = _setup(corpus, tmp_path)
    first = _contribute(commons, src_late, clinical, key, state, project, "SITE_B_DAY0_1")
    assert first.returncode == 0, first.stdout + first.stderr
    studies, visits, _ = _at_commons(commons, project)
    assert list(studies.values()) == [0] and visits == [5]

    # The dry run of the earlier study says day 0 stays (a note, not an error), and writes nothing.
    dry = _contribute(commons, src_early, clinical, key, state, project, "SITE_B_DAY0_2", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    shown = " ".join(dry.stdout.split())
    assert "day 0 stays at the first imaging study of " + late.isoformat() in shown, dry.stdout
    assert f'"days_to_study": {(early - late).days}' in shown, dry.stdout

    second = _contribute(commons, src_early, clinical, key, state, project, "SITE_B_DAY0_2")
    assert second.returncode == 0, second.stdout + second.stderr
    studies, visits, events = _at_commons(commons, project)
    # Both studies and the visit counted from the first day 0: the earlier study before it, negative.
    assert sorted(studies.values()) == [(early - late).days, 0] and (early - late).days < 0
    assert visits == [5] and events == ["First Imaging Study"]
    # recorded by the first commit, kept by the second; private (it names MRNs and real dates)
    assert _recorded(state) == [(mrn, "first_imaging_study", late.isoformat(), "SITE_B_DAY0_1")]
    assert stat.S_IMODE((state / DAY0_FILE).stat().st_mode) == 0o600
    receipt = _receipt(state, "SITE_B_DAY0_2")
    assert [(d["patient_id"], d["date"], d["recorded_by"]) for d in receipt["day0"]] == \
        [(mrn, late.isoformat(), "SITE_B_DAY0_1")]
    report = json.loads(Path(receipt["report"]).with_suffix(".json").read_text())
    [note] = [i for i in report["clinical"]["issues"] if i["code"] == "day0_recorded"]
    assert note["severity"] == "note" and early.isoformat() in note["message"]


def test_a_dry_run_or_a_contribution_killed_before_its_commit_records_no_day0(
        commons: RealCommons, corpus: Path, tmp_path: Path) -> None:
    project, state = "Send-12", tmp_path / "state"
    mrn, early, late, src_early, src_late, clinical, key = _setup(corpus, tmp_path)
    dry = _contribute(commons, src_late, clinical, key, state, project, "SITE_B_DAY0_DRY", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert not (state / DAY0_FILE).exists()
    killed = _contribute(commons, src_early, clinical, key, state, project, "SITE_B_DAY0_K", killed_after=1)
    assert killed.returncode == -9 and "killed after 1 files" in killed.stderr, killed.stdout + killed.stderr
    assert not (state / DAY0_FILE).exists() and not list((state / "receipts").glob("*"))

    # Another dataset would resume the killed run's submission, whose dataset its case rows would not name
    # (the commons refused the cases, took the studies, and the run ended 0): refused before any work.
    other = _contribute(commons, src_early, clinical, key, state, project, "SITE_B_DAY0_OTHER")
    assert other.returncode == 2, other.stdout + other.stderr
    assert "dataset SITE_B_DAY0_K" in other.stderr and "--dataset SITE_B_DAY0_K" in other.stderr, other.stderr

    # The same command again commits it: now, and only now, its day 0 is recorded; the dry run of the later
    # study recorded nothing (else the earlier study were counted from it, negative).
    resumed = _contribute(commons, src_early, clinical, key, state, project, "SITE_B_DAY0_K")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    studies, visits, _ = _at_commons(commons, project)
    assert list(studies.values()) == [0] and visits == [(late - early).days + 5]
    assert _recorded(state) == [(mrn, "first_imaging_study", early.isoformat(), "SITE_B_DAY0_K")]
