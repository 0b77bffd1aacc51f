"""A study a curator's decision missed stays in the review queue, on SQLite and PostgreSQL.

Indexing harmonized a study under the modality of the first instance it recorded. A CT study
whose dose report (an SR instance) came first was looked up as an SR pair: the decision for the
CT pair was not applied and the study got no code. Indexing now codes a study under its image
modality (``IndexWriter.finish``), so such a study gets the decision; one indexed before that (an
uncoded study of a decided pair) is listed by the queue, and deciding the pair again codes it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select, update

from radcommons.harmonize.study_codes import CODE_FIELDS
from radcommons.store.index import make_engine, node_tables

CT_PAIR = ("CT", "CT CHEST ABDOMEN PELVIS W CONTRAST (ROUTINE)")


@pytest.fixture
def dose_report_first(deid_tree: Path, tmp_path: Path) -> Path:
    """The site, with an SR instance of its CT study in a folder that sorts first."""
    tree = tmp_path / "site"
    shutil.copytree(deid_tree, tree)
    ct = next(p for p in sorted(tree.rglob("*.dcm"))
              if (ds := pydicom.dcmread(p, stop_before_pixels=True)).Modality == "CT"
              and ds.StudyDescription == CT_PAIR[1])
    ds = pydicom.dcmread(ct)
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid(prefix="2.25.")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix="2.25.")
    (tree / "0000").mkdir()
    ds.save_as(tree / "0000" / "0000.dcm")
    return tree


def test_a_study_the_decision_missed_is_listed(migrated_url: str, dose_report_first: Path, tmp_path: Path,
                                               forked_cli: Callable[..., Any]) -> None:
    def ok(*args: str) -> str:
        result = forked_cli(*args, "--url", migrated_url)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    ok("harmonize", "decide", *CT_PAIR, "36813-4")
    result = forked_cli("ingest", str(dose_report_first), "--project", "Open-A1", "--site", "SITE_A", "--workers", "1",
                     "--url", migrated_url, "--store", str(tmp_path / "objects"))
    assert result.returncode == 0, result.stderr
    study = node_tables()["imaging_study"]
    engine = make_engine(migrated_url)
    try:
        with engine.begin() as conn:
            coded = conn.execute(select(study.c.loinc_code, study.c.study_modality)
                                 .where(study.c.study_description == CT_PAIR[1])).all()
            # the decision reached it, though its report (folder 0000: before every 2.25.<uid> one) came first
            assert [(code, sorted(modalities)) for code, modalities in coded] == [("36813-4", ["CT", "SR"])]
            # As a study indexed before indexing read the image modality was left: no code.
            conn.execute(update(study).where(study.c.study_description == CT_PAIR[1])
                         .values({name: None for name in CODE_FIELDS}))
    finally:
        engine.dispose()
    queue = ok("harmonize", "queue")
    assert "CT CHEST ABDOMEN PELVIS W CONTRAST (ROUTINE)" in queue, queue  # was not listed: "0 pair(s)"
    assert "review queue of the index: 1 pair(s), 1 studies" in queue, queue
    assert "1 indexed study(ies) updated" in ok("harmonize", "decide", *CT_PAIR, "36813-4")
    assert "CT CHEST ABDOMEN" not in ok("harmonize", "queue")
