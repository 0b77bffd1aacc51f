"""``radcommons ingest`` uses the same verification gate and quarantine table as the submission commit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
from sqlalchemy import select

from radcommons.pipelines.ingest import ingest_tree
from radcommons.store.index import counts, make_engine, node_tables, upgrade
from radcommons.store.index.schema import system_table
from radcommons.store.objects import ObjectStore


def test_ingest_quarantines_what_fails_the_gate(deid_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(deid_tree, tree)
    victim = sorted(tree.rglob("*.dcm"))[0]
    ds = pydicom.dcmread(victim)
    ds.PatientIdentityRemoved = "NO"
    ds.save_as(victim)
    url = f"sqlite:///{tmp_path / 'index.db'}"
    upgrade(url)
    engine = make_engine(url)
    store = ObjectStore(str(tmp_path / "objects"))
    try:
        report = ingest_tree(tree, engine=engine, store=store, project="Open-A1", site_id="SITE_A", workers=1)
        total = len(list(tree.rglob("*.dcm")))
        assert report.count("quarantined") == 1 and report.count("indexed") == total - 1
        quarantine = system_table("quarantine")
        with engine.connect() as conn:
            held = conn.execute(select(quarantine)).all()
        assert len(held) == 1 and held[0].source == "ingest" and "identity-not-removed" in held[0].reason
        assert store.exists(held[0].sha256)  # kept for the curator
        assert counts(engine)["instance"] == total - 1
        study = node_tables()["imaging_study"]
        with engine.connect() as conn:
            assert all(m for m in conn.execute(select(study.c.study_modality)).scalars())
            harmonized = conn.execute(
                select(study.c.study_description, study.c.loinc_code, study.c.loinc_long_common_name)
            ).all()
        # Synthetic descriptions come from MIDRC's real long tail: most map to a LOINC code.
        mapped = [row for row in harmonized if row.loinc_code]
        assert len(mapped) >= len(harmonized) // 2, harmonized
        assert all(row.loinc_long_common_name for row in mapped)
        again = ingest_tree(tree, engine=engine, store=store, project="Open-A1", site_id="SITE_A", workers=1)
        assert again.count("duplicate") == total - 1 and again.count("indexed") == 0
        with engine.connect() as conn:
            assert len(conn.execute(select(quarantine)).all()) == 1  # not held twice
    finally:
        engine.dispose()
