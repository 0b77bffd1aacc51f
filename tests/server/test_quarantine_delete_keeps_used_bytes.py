"""Deleting a quarantine entry keeps the bytes that a study version or a frozen cohort still names;
a pinned file that has gone all the same is 409 files_gone at GET /objects, as at the cohort manifest,
without the server's store path. Through a real ``radcommons serve``, both backends."""

from __future__ import annotations

from pathlib import Path

import pydicom
from commons_fixtures import PROJECT, Commons, instances_of
from pydicom.uid import generate_uid
from test_quarantine_release_rules import submit
from test_quarantine_versions import variant

from radcommons.client import ManifestEntry, file_sha256
from radcommons.store.objects import ObjectStore


def _one_instance(source: Path, folder: Path, study: str):
    """``make(name, **values)``: ``source`` as the one instance of ``study``, with ``values`` set (None: removed)."""
    series, sop = generate_uid(prefix="2.25."), generate_uid(prefix="2.25.")

    def make(name: str, **values: object) -> Path:
        def change(ds: pydicom.Dataset) -> None:
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
            for keyword, value in values.items():
                if value is None:
                    delattr(ds, keyword)
                else:
                    setattr(ds, keyword, value)
        return variant(source, folder / f"{name}.dcm", change)
    return make


def test_deleting_an_entry_keeps_bytes_a_version_and_a_cohort_name(commons: Commons, deid_tree: Path,
                                                                    tmp_path: Path) -> None:
    study = generate_uid(prefix="2.25.")
    make = _one_instance(instances_of(deid_tree)[0].path, tmp_path, study)

    bad = make("bad", PatientIdentityRemoved=None)
    sha = file_sha256(bad)
    first = submit(commons.client(), "D-1", [bad], study).studies[0]
    curator = commons.client("curator")
    assert curator.release(first["files"][0]["quarantine_id"])["status"] == "released"
    with commons.http("reader") as http:
        assert http.post("/dua/accept").status_code == 200
        cohort = http.post("/cohorts", json={"name": "pinned", "node": "imaging_study",
                                             "filter": {"=": {"study_uid": study}}, "freeze": True}).json()
    assert submit(commons.client(), "D-2", [make("fixed", InstanceNumber=5)], study).studies[0]["version"] == 2
    again = submit(commons.client(), "D-3", [bad], study).studies[0]  # an old export sent again
    assert again["quarantined"] == 1
    assert curator.delete_quarantined(again["files"][0]["quarantine_id"])["status"] == "deleted"

    store = ObjectStore(str(commons.store_dir))
    assert store.exists(sha)  # version 1 and the frozen cohort name it
    assert [i["object_id"] for i in curator.study_versions(study, PROJECT)[0]["instances"]] == [sha]
    with commons.http("reader") as http:
        manifest = http.get(f"/cohorts/{cohort['identifier']}/manifest", params={"format": "json"})
        assert manifest.status_code == 200, manifest.text
        assert http.get(f"/objects/{sha}").content == bad.read_bytes()

        store.delete(sha)  # gone all the same (an operator's mistake, a lost disk)
        gone = http.get(f"/objects/{sha}")
        assert gone.status_code == 409 and gone.json()["error"]["code"] == "files_gone", gone.text
        assert str(commons.store_dir) not in gone.text and "file://" not in gone.text, gone.text
        manifest = http.get(f"/cohorts/{cohort['identifier']}/manifest", params={"format": "json"})
        assert manifest.status_code == 409 and manifest.json()["error"]["code"] == "files_gone"


def test_curators_download_old_versions_and_quarantined_files_researchers_never(commons: Commons, deid_tree: Path,
                                                                                 tmp_path: Path) -> None:
    study = generate_uid(prefix="2.25.")
    make = _one_instance(instances_of(deid_tree)[0].path, tmp_path, study)

    old, new, bad = make("old", InstanceNumber=1), make("new", InstanceNumber=2), make("bad", PatientIdentityRemoved=None)
    assert submit(commons.client(), "H-1", [old], study).studies[0]["version"] == 1
    assert submit(commons.client(), "H-2", [new], study).studies[0]["version"] == 2
    assert submit(commons.client(), "H-3", [bad], study).studies[0]["quarantined"] == 1
    with commons.http("reader") as http:
        assert http.post("/dua/accept").status_code == 200
        for path in (old, bad):
            assert http.get(f"/objects/{file_sha256(path)}").status_code == 404  # researchers never
    for user in ("curator", "admin"):
        with commons.http(user) as http:
            for path in (old, bad):
                answer = http.get(f"/objects/{file_sha256(path)}")
                assert answer.status_code == 200 and answer.content == path.read_bytes(), (user, answer.text)
    with commons.http("admin") as http:
        events = http.get("/admin/audit", params={"action": "research.object"}).json()
        events = events["events"] if isinstance(events, dict) else events
        assert {(e["actor"], e["target"]) for e in events} >= {(u, file_sha256(p)) for u in ("curator", "admin")
                                                                for p in (old, bad)}


def test_deleting_an_entry_keeps_bytes_an_open_submission_uploaded(commons: Commons, deid_tree: Path,
                                                                   tmp_path: Path) -> None:
    """Another site's open submission uploaded the same content: a curator's delete must not take
    its bytes (its commit would report the file missing); once committed, its file rows keep nothing."""
    study = generate_uid(prefix="2.25.")
    bad = _one_instance(instances_of(deid_tree)[0].path, tmp_path, study)("bad", PatientIdentityRemoved=None)
    sha, store = file_sha256(bad), ObjectStore(str(commons.store_dir))
    held = submit(commons.client(), "O-1", [bad], study).studies[0]
    assert held["quarantined"] == 1

    other = commons.client("other-site")
    pending = other.create_submission("Open-B1", "O-2")
    uploaded = other.upload_file(pending.id, bad)
    curator = commons.client("curator")
    assert curator.delete_quarantined(held["files"][0]["quarantine_id"])["status"] == "deleted"
    assert store.exists(sha)  # the open submission's upload names it

    other.put_study_manifest(pending.id, study, [ManifestEntry(uploaded.sha256, uploaded.size, bad.name)])
    again = other.commit(pending.id).studies[0]
    assert again["quarantined"] == 1, again  # read and gated, not missing
    assert curator.delete_quarantined(again["files"][0]["quarantine_id"])["status"] == "deleted"
    assert not store.exists(sha)  # the two committed submissions' file rows name nothing
