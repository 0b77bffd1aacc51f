"""A case ingested from its images alone in several runs is counted from one day 0 (``case_day0``)."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pydicom
from sqlalchemy import select

from radcommons.pipelines.ingest import ingest_tree
from radcommons.store.index import make_engine
from radcommons.store.index.schema import get_metadata
from radcommons.store.objects import ObjectStore


def _patient_with_studies_on_two_days(deid_tree: Path) -> tuple[Path, Path, int]:
    """The folders of a patient's earliest and latest study, and the days between them."""
    days: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in sorted(deid_tree.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        days[str(ds.PatientID)].setdefault(str(ds.StudyDate), path.parent.parent)  # <study>/<series>/<file>
    dated = next(sorted(studies.items()) for studies in days.values() if len(studies) >= 2)
    (first_day, first), (last_day, last) = dated[0], dated[-1]
    apart = (pydicom.valuerep.DA(last_day) - pydicom.valuerep.DA(first_day)).days
    return first, last, apart


def test_a_study_ingested_by_a_later_run_counts_from_the_case_s_day0(
        deid_tree: Path, migrated_url: str, tmp_path: Path) -> None:
    """Each run counted a case from its own first study: the earlier study, ingested after the later one, got
    days_to_study 0 as well, and the interval between the two was lost."""
    earliest, latest, apart = _patient_with_studies_on_two_days(deid_tree)
    assert apart > 0
    engine = make_engine(migrated_url)
    store = ObjectStore(str(tmp_path / "objects"))
    try:
        for study in (latest, earliest):  # the later study first: its run makes day 0
            run = tmp_path / f"run-{study.name}"
            shutil.copytree(study, run / study.name)
            report = ingest_tree(run, engine=engine, store=store, project="Open-A1", site_id="SITE_A", workers=1)
            assert report.ok, report.outcomes
        table = get_metadata().tables["imaging_study"]
        with engine.connect() as conn:
            days = dict(conn.execute(select(table.c.study_uid, table.c.days_to_study)).all())
    finally:
        engine.dispose()
    uid = {study: str(pydicom.dcmread(next(study.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)
           for study in (earliest, latest)}
    assert days[uid[latest]] == 0
    assert days[uid[earliest]] == -apart
