"""A study is harmonized under its image modality, whatever instance of it is indexed first.

Before: ``IndexWriter.study_values`` coded a new study with the modality of the first instance it
saw, so a CT study whose dose report (SR) came first was looked up as (SR, description): no code,
and no curator decision, which is keyed on the image modality, applied to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select

from radcommons.harmonize.study_codes import study_code_fields
from radcommons.pipelines.ingest import ingest_tree
from radcommons.store.index import make_engine, node_tables, upgrade
from radcommons.store.objects import ObjectStore


def test_a_study_whose_report_is_indexed_first_is_coded_under_its_image_modality(deid_tree: Path,
                                                                                 tmp_path: Path) -> None:
    ct = [p for p in sorted(deid_tree.rglob("*.dcm"))
          if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT"]
    header = pydicom.dcmread(ct[0], stop_before_pixels=True)
    description = str(header.StudyDescription)
    assert study_code_fields("CT", description).get("loinc_code")  # else this test could not fail
    assert not study_code_fields("SR", description).get("loinc_code")
    tree = tmp_path / "tree"
    study = [p for p in ct if pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == header.StudyInstanceUID]
    for index, path in enumerate(study):
        (tree / "b").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tree / "b" / f"{index:03}.dcm")
    report = pydicom.dcmread(study[0])  # a dose report of the study, read first ("a" < "b")
    report.Modality = "SR"
    report.SeriesInstanceUID = generate_uid(prefix=None)  # 2.25.<integer>, as de-identification makes them
    report.SOPInstanceUID = report.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=None)
    (tree / "a").mkdir()
    report.save_as(tree / "a" / "report.dcm")

    url = f"sqlite:///{tmp_path / 'index.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        outcome = ingest_tree(tree, engine=engine, store=ObjectStore(str(tmp_path / "objects")), project="Open-A1",
                              site_id="SITE_A", workers=1)
        assert outcome.count("indexed") == len(study) + 1, outcome.outcomes
        table = node_tables()["imaging_study"]
        with engine.connect() as conn:
            row = conn.execute(select(table.c.study_modality, table.c.loinc_code)
                               .where(table.c.study_uid == header.StudyInstanceUID)).one()
    finally:
        engine.dispose()
    assert sorted(row.study_modality) == ["CT", "SR"]
    assert row.loinc_code == study_code_fields("CT", description)["loinc_code"]
