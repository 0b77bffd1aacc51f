"""The verification gate sends failing instances to quarantine; curators release or delete them;
a corrected resubmission becomes a new version with the old one kept in the history."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from commons_fixtures import PROJECT, Commons, Instance, instances_of
from sqlalchemy import select

from radcommons.client import CommonsClient, ManifestEntry, PermissionDeniedError, file_sha256
from radcommons.client.errors import InvalidRequestError
from radcommons.store.index import make_engine, node_tables
from radcommons.store.objects import ObjectStore


def submit(client: CommonsClient, dataset: str, files: list[Instance | Path], study_uid: str):
    submission = client.create_submission(PROJECT, dataset)
    entries = []
    for item in files:
        path = item.path if isinstance(item, Instance) else item
        result = client.upload_file(submission.id, path)
        entries.append(ManifestEntry(result.sha256, result.size, path.name))
    client.put_study_manifest(submission.id, study_uid, entries)
    return submission, client.commit(submission.id)


def variant(source: Path, target: Path, change) -> Path:
    ds = pydicom.dcmread(source)
    change(ds)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


def _study(instances: list[Instance], rank: int = 0) -> list[Instance]:
    """The instances of the study with the most of them (``rank`` 1: the second largest...)."""
    by_study: dict[str, list[Instance]] = {}
    for instance in instances:
        by_study.setdefault(instance.study_uid, []).append(instance)
    return sorted(by_study.values(), key=lambda s: (-len(s), s[0].study_uid))[rank]


def test_quarantine_release_and_delete(sqlite_commons: Commons, deid_tree: Path, tmp_path: Path) -> None:
    c = sqlite_commons
    study = _study(instances_of(deid_tree))
    assert len(study) >= 3
    no_flag = variant(study[0].path, tmp_path / "a.dcm", lambda ds: delattr(ds, "PatientIdentityRemoved"))
    name = variant(study[1].path, tmp_path / "b.dcm", lambda ds: setattr(ds, "ReferringPhysicianName", "SMITH^JOHN"))
    _, receipt = submit(c.client(), "Q-1", [no_flag, name, *study[2:]], study[0].study_uid)
    entry = receipt.studies[0]
    assert entry["status"] == "partial" and entry["quarantined"] == 2 and entry["indexed"] == len(study) - 2
    reasons = {f["path_in_package"]: f["reason"] for f in entry["files"]}
    assert "identity-not-removed" in reasons["a.dcm"] and "person-name" in reasons["b.dcm"]

    with pytest.raises(PermissionDeniedError):
        c.client().quarantine()
    curator = c.client("curator")
    held = [h for h in curator.quarantine(project=PROJECT) if h["study_uid"] == study[0].study_uid]
    assert len(held) == 2 and all(h["status"] == "held" and h["findings"] for h in held)
    by_path = {h["path_in_package"]: h for h in held}
    engine = make_engine(c.db_url)
    instance = node_tables()["instance"]
    try:
        with engine.connect() as conn:
            visible = set(conn.execute(select(instance.c.sop_instance_uid)).scalars())
        assert study[0].sop_uid not in visible  # quarantined: invisible to researchers

        released = curator.release(by_path["b.dcm"]["id"])
        assert released["status"] == "released" and released["resolved_by"] == "curator"
        with engine.connect() as conn:
            visible = set(conn.execute(select(instance.c.sop_instance_uid)).scalars())
        assert study[1].sop_uid in visible
        store = ObjectStore(str(c.store_dir))
        doomed = by_path["a.dcm"]["sha256"]
        assert store.exists(doomed)
        assert curator.delete_quarantined(by_path["a.dcm"]["id"])["status"] == "deleted"
        assert not store.exists(doomed)
        mine = [h for h in curator.quarantine(status="all") if h["study_uid"] == study[0].study_uid]
        assert sorted(h["status"] for h in mine) == ["deleted", "released"]
        with c.http("curator") as http:
            again = http.post(f"/quarantine/{by_path['a.dcm']['id']}/release")
            assert again.status_code == 409 and again.json()["error"]["code"] == "not_held"
    finally:
        engine.dispose()


def test_resubmission_is_a_new_version(sqlite_commons: Commons, deid_tree: Path, tmp_path: Path) -> None:
    commons = sqlite_commons
    study = _study(instances_of(deid_tree), rank=1)
    assert len(study) >= 2
    client = commons.client()
    _, first = submit(client, "V-1", study, study[0].study_uid)
    assert first.studies[0]["status"] == "accepted" and first.studies[0]["version"] == 1
    _, same = submit(client, "V-2", study, study[0].study_uid)
    assert same.studies[0]["status"] == "unchanged" and same.counts["instances"]["unchanged"] == len(study)

    old_digest = file_sha256(study[0].path)
    corrected = variant(study[0].path, tmp_path / "fixed.dcm", lambda ds: setattr(ds, "InstanceNumber", 99))
    _, second = submit(client, "V-3", [corrected, *study[1:]], study[0].study_uid)
    assert second.studies[0]["status"] == "new_version" and second.studies[0]["version"] == 2
    assert second.counts["instances"]["indexed"] == 1 and second.counts["instances"]["unchanged"] == len(study) - 1

    history = client.study_versions(study[0].study_uid, PROJECT)
    assert [v["version"] for v in history] == [1, 2]
    # Another site's copy of the study (the same export, the same key) replaced it as version 3 and
    # moved it to that site's patient: now it is refused, and the study stays SITE_A's.
    curator = commons.client("curator")
    other = curator.create_submission(PROJECT, "V-B", site_id="SITE_B")
    again = variant(study[0].path, tmp_path / "other-site.dcm", lambda ds: setattr(ds, "InstanceNumber", 98))
    entries = []
    for path in (again, *(i.path for i in study[1:])):
        result = curator.upload_file(other.id, path)
        entries.append(ManifestEntry(result.sha256, result.size, path.name))
    curator.put_study_manifest(other.id, study[0].study_uid, entries)
    refused = curator.commit(other.id).studies[0]
    assert refused["status"] == "rejected" and "belongs to site SITE_A" in refused["files"][0]["reason"], refused
    assert [v["version"] for v in client.study_versions(study[0].study_uid, PROJECT)] == [1, 2]
    with pytest.raises(InvalidRequestError):  # not a UID: it was looked up, and was not found
        client.study_versions(study[0].study_uid.replace(".", "..", 1), PROJECT)
    old = {i["sop_instance_uid"]: i["object_id"] for i in history[0]["instances"]}
    new = {i["sop_instance_uid"]: i["object_id"] for i in history[1]["instances"]}
    assert old[study[0].sop_uid] == old_digest and new[study[0].sop_uid] != old_digest
    assert ObjectStore(str(commons.store_dir)).exists(old_digest)  # the old content stays
    engine = make_engine(commons.db_url)
    instance = node_tables()["instance"]
    try:
        with engine.connect() as conn:
            current = conn.execute(select(instance.c.object_id, instance.c.instance_number)
                                   .where(instance.c.sop_instance_uid == study[0].sop_uid)).one()
        assert current.object_id == new[study[0].sop_uid] and current.instance_number == 99
    finally:
        engine.dispose()


def _at_once(*requests) -> list[int]:
    """Status codes of ``requests`` (callables), started together on threads."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    barrier = Barrier(len(requests))

    def run(request) -> int:
        barrier.wait()
        return request().status_code

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(run, requests))


def test_a_release_and_a_delete_at_once_are_one_after_the_other(commons: Commons, deid_tree: Path,
                                                                  tmp_path: Path) -> None:
    """Both used to succeed: on PostgreSQL the released instance was indexed with its bytes deleted, on
    SQLite an instance marked deleted was published; two deletes at once were both 200."""
    from pydicom.uid import generate_uid

    study = _study(instances_of(deid_tree))
    study_uid, series_uid = generate_uid(prefix="2.25."), generate_uid(prefix="2.25.")

    def held_copy(index: int, item: Instance) -> Path:
        def change(ds: pydicom.Dataset) -> None:
            del ds.PatientIdentityRemoved
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix="2.25.")
        return variant(item.path, tmp_path / f"{index}.dcm", change)

    copies = [held_copy(index, study[index % len(study)]) for index in range(6)]
    submit(commons.client(), "Q-RACE", copies, study_uid)
    held = commons.client("curator").quarantine(project=PROJECT)
    assert len(held) == len(copies)
    store = ObjectStore(str(commons.store_dir))
    engine = make_engine(commons.db_url)
    instance = node_tables()["instance"]
    try:
        with commons.http("curator") as http:
            for entry in held[:4]:
                codes = _at_once(lambda: http.post(f"/quarantine/{entry['id']}/release"),
                                 lambda: http.delete(f"/quarantine/{entry['id']}"))
                assert sorted(codes) == [200, 409], codes
                with engine.connect() as conn:
                    indexed = conn.execute(select(instance.c.id).where(
                        instance.c.object_id == entry["sha256"])).first() is not None
                released = codes[0] == 200
                assert indexed == released and store.exists(entry["sha256"]) == released
            for entry in held[4:]:
                codes = _at_once(lambda: http.delete(f"/quarantine/{entry['id']}"),
                                 lambda: http.delete(f"/quarantine/{entry['id']}"))
                assert sorted(codes) == [200, 409], codes
        statuses = {h["id"]: h["status"] for h in commons.client("curator").quarantine(status="all")}
        assert sum(statuses[h["id"]] == "released" for h in held) + sum(
            statuses[h["id"]] == "deleted" for h in held) == len(held)
    finally:
        engine.dispose()
