"""Releasing a quarantined instance follows the rules of a commit: it never replaces content indexed
after it was quarantined, never puts a study into a second project (this was a 500) and never puts
one site's instance under another site's patient. Through a real ``radcommons serve``, both backends."""

from __future__ import annotations

from pathlib import Path

import pydicom
from commons_fixtures import PROJECT, Commons, instances_of
from pydicom.uid import generate_uid
from sqlalchemy import select
from test_quarantine_versions import _study, variant

from radcommons.client import CommonsClient, ManifestEntry
from radcommons.store.index import make_engine, node_tables


def submit(client: CommonsClient, dataset: str, files: list[Path], study_uid: str, project: str = PROJECT,
           site_id: str | None = None):
    submission = client.create_submission(project, dataset, site_id=site_id)
    entries = []
    for path in files:
        result = client.upload_file(submission.id, path)
        entries.append(ManifestEntry(result.sha256, result.size, path.name))
    client.put_study_manifest(submission.id, study_uid, entries)
    return client.commit(submission.id)


def _indexed(commons: Commons, sop_uid: str) -> str | None:
    instance = node_tables()["instance"]
    engine = make_engine(commons.db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(instance.c.object_id).where(instance.c.sop_instance_uid == sop_uid)).scalar()
    finally:
        engine.dispose()


def _no_flag(ds: pydicom.Dataset) -> None:
    del ds.PatientIdentityRemoved


def test_release_never_undoes_a_correction(commons: Commons, deid_tree: Path, tmp_path: Path) -> None:
    a, b = _study(instances_of(deid_tree))[:2]
    bad = variant(a.path, tmp_path / "1" / "a.dcm", _no_flag)
    first = submit(commons.client(), "R-1", [bad, b.path], a.study_uid).studies[0]
    assert first["status"] == "partial"
    held = first["files"][0]["quarantine_id"]
    fixed = variant(a.path, tmp_path / "2" / "a.dcm", lambda ds: setattr(ds, "InstanceNumber", 7))
    second = submit(commons.client(), "R-2", [fixed, b.path], a.study_uid).studies[0]
    assert second["status"] == "new_version" and second["version"] == 2
    corrected = _indexed(commons, a.sop_uid)
    with commons.http("curator") as http:
        answer = http.post(f"/quarantine/{held}/release")
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "superseded" and "version 2" in error["message"], error
        assert "delete the entry" in error["hint"]
        assert http.get("/quarantine", params={"project": PROJECT}).json()[0]["status"] == "held"
    assert _indexed(commons, a.sop_uid) == corrected  # the correction stays

    # A bad resend of an indexed instance is released over the content it was quarantined against.
    worse = variant(b.path, tmp_path / "3" / "b.dcm", lambda ds: (_no_flag(ds), setattr(ds, "InstanceNumber", 9)))
    third = submit(commons.client(), "R-3", [fixed, worse], a.study_uid).studies[0]
    assert third["quarantined"] == 1
    with commons.http("curator") as http:
        answer = http.post(f"/quarantine/{third['files'][0]['quarantine_id']}/release")
        assert answer.status_code == 200 and answer.json()["status"] == "released", answer.text
    assert _indexed(commons, b.sop_uid) == answer.json()["sha256"]


def _new_study(source: Path, target: Path, study_uid: str, **values: object) -> Path:
    def change(ds: pydicom.Dataset) -> None:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid(prefix="2.25.")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix="2.25.")
        for keyword, value in values.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    return variant(source, target, change)


def test_release_keeps_a_study_in_one_project_and_one_site(commons: Commons, deid_tree: Path, tmp_path: Path) -> None:
    a, b = _study(instances_of(deid_tree))[:2]
    for mode in ("project", "site"):
        study_uid = generate_uid(prefix="2.25.")
        bad = _new_study(a.path, tmp_path / mode / "bad.dcm", study_uid, PatientIdentityRemoved=None)
        held = submit(commons.client(), f"X-{mode}", [bad], study_uid).studies[0]["files"][0]["quarantine_id"]
        other = _new_study(b.path, tmp_path / mode / "other.dcm", study_uid, PatientID="RCOTHERSITEPATIENT0001",
                           PatientName="RCOTHERSITEPATIENT0001")
        if mode == "project":
            receipt = submit(commons.client("other-site"), "Y-project", [other], study_uid, project="Open-B1")
        else:
            receipt = submit(commons.client("curator"), "Y-site", [other], study_uid, site_id="SITE_B")
        assert receipt.studies[0]["status"] == "accepted", receipt.studies
        with commons.http("curator") as http:
            answer = http.post(f"/quarantine/{held}/release")
            assert answer.status_code == 409, answer.text  # was 500 (project) and 200 (site)
            error = answer.json()["error"]
            assert error["code"] == "held_elsewhere", error
            assert ("already in project Open-B1" if mode == "project" else "belongs to site SITE_B") \
                in error["message"], error
            assert http.get("/health").status_code in (200, 404)  # the connection and server still answer
        assert _indexed(commons, str(pydicom.dcmread(bad).SOPInstanceUID)) is None
