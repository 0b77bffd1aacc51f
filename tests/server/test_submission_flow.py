"""The whole submission flow through a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pydicom
import pytest
from commons_fixtures import PROJECT, SITE, Commons, instances_of
from sqlalchemy import select

from radcommons.client import CommonsClient, ConflictError, InvalidRequestError, ManifestEntry, file_sha256
from radcommons.store.index import counts, make_engine, node_tables
from radcommons.store.index.accounts import add_user, create_token
from radcommons.store.objects import ObjectStore


def clinical_cases(patients: list[str]) -> list[dict]:
    return [{"submitter_id": p, "index_event": "COVID-19 Test", "age_at_index": 50, "age_at_index_gt89": "No",
             "sex": "Female", "race": "White", "ethnicity": "Not Reported", "covid19_positive": "Yes"}
            for p in patients]


def test_full_flow(commons: Commons, deid_tree: Path) -> None:
    instances = instances_of(deid_tree)
    client = commons.client(chunk_size=16 * 1024)
    submission = client.create_submission(PROJECT, "SITE_A_20260301")
    assert submission.created and submission.status == "open" and submission.site_id == SITE
    again = client.create_submission(PROJECT, "SITE_A_20260301")
    assert again.id == submission.id and not again.created

    # Interrupted upload: half the chunks by hand, then a new client resumes from the server's offset.
    big = max(instances, key=lambda i: i.path.stat().st_size)
    data = big.path.read_bytes()
    digest = file_sha256(big.path)
    half = (len(data) // 16384 // 2) * 16384
    assert half > 0
    with commons.http() as http:
        for offset in range(0, half, 16384):
            response = http.patch(f"/submissions/{submission.id}/files/{digest}",
                                  content=data[offset:offset + 16384],
                                  headers={"Upload-Offset": str(offset), "Upload-Length": str(len(data)),
                                           "Content-Type": "application/offset+octet-stream"})
            assert response.status_code == 200, response.text
        assert http.head(f"/submissions/{submission.id}/files/{digest}").headers["Upload-Offset"] == str(half)
    resumed = commons.client(chunk_size=16 * 1024).upload_file(submission.id, big.path)
    assert resumed.sent == len(data) - half and not resumed.already_present

    studies: dict[str, list[ManifestEntry]] = {}
    for instance in instances:
        result = client.upload_file(submission.id, instance.path)
        studies.setdefault(instance.study_uid, []).append(
            ManifestEntry(result.sha256, result.size, str(instance.path.relative_to(deid_tree))))
    for study_uid, files in studies.items():
        assert client.put_study_manifest(submission.id, study_uid, files)["missing"] == []

    patients = sorted({i.patient_id for i in instances})
    cases = client.post_clinical(submission.id, "case", clinical_cases(patients))
    assert cases.accepted == len(patients) and cases.rejected == 0
    first = instances[0]
    measurements = [
        {"submitter_id": "m-1", "case.submitter_id": first.patient_id, "test_method": "RT-PCR",
         "test_result_text": "Positive", "days_to_test": 3},
        {"submitter_id": "m-2", "case.submitter_id": first.patient_id, "test_method": "PCR",
         "test_result_text": "Negative", "days_to_test": 5},
        {"submitter_id": "m-3", "case.submitter_id": first.patient_id, "test_method": "Rapid antigen test",
         "test_result_text": "Negative", "days_to_test": -2},
    ]
    result = client.post_clinical(submission.id, "measurement", measurements, first_row=2)
    assert (result.accepted, result.rejected) == (2, 1)
    bad = result.rejected_rows[0]
    assert bad["row"] == 3 and bad["problems"][0]["column"] == "test_method"
    study_record = {"submitter_id": first.study_uid, "study_uid": first.study_uid,
                    "case.submitter_id": first.patient_id, "days_to_study": 1}
    assert client.post_clinical(submission.id, "imaging_study", [study_record]).accepted == 1

    receipt = client.commit(submission.id)
    assert receipt.counts["studies"] == len(studies)
    assert receipt.counts["instances"] == {"indexed": len(instances), "unchanged": 0, "quarantined": 0,
                                           "rejected": 0}
    assert receipt.counts["clinical"] == {"accepted": len(patients) + 3, "rejected": 1}
    assert {s["status"] for s in receipt.studies} == {"accepted"}
    assert any(c["status"] == "rejected" and c["submitter_id"] == "m-2" for c in receipt.clinical)

    engine = make_engine(commons.db_url)
    try:
        before = counts(engine)
        assert before["instance"] == len(instances) and before["case"] == len(patients)
        assert before["measurement"] == 2
        # a retried commit returns the same receipt and duplicates nothing
        assert client.commit(submission.id).data == receipt.data
        assert client.receipt(submission.id).data == receipt.data
        assert counts(engine) == before
        study = node_tables()["imaging_study"]
        with engine.connect() as conn:
            row = conn.execute(select(study).where(study.c.study_uid == first.study_uid)).one()
        assert row.days_to_study == 1
        assert row.days_from_study_to_pos_covid_test == [2]
        assert row.days_from_study_to_neg_covid_test == [-3]
        assert row.study_year is not None and row.study_year_shifted is True
        assert row.study_modality
    finally:
        engine.dispose()
    # a committed submission is closed
    with pytest.raises(ConflictError) as closed:
        client.put_study_manifest(submission.id, first.study_uid, [])
    assert closed.value.code == "submission_closed"


def test_dedup_and_missing_files(sqlite_commons: Commons, deid_tree: Path) -> None:
    c = sqlite_commons
    instance = instances_of(deid_tree)[0]
    client = c.client()
    one = client.create_submission(PROJECT, "D-1")
    first = client.upload_file(one.id, instance.path)
    assert client.upload_file(one.id, instance.path).already_present  # the same submission: stored once
    two = client.create_submission(PROJECT, "D-2")
    # Another submission sends the bytes (only what was uploaded to it counts); the store keeps one copy.
    second = client.upload_file(two.id, instance.path)
    assert not second.already_present and second.sent == first.size and second.sha256 == first.sha256
    assert ObjectStore(str(c.store_dir)).exists(first.sha256)
    assert len(list(c.store_dir.rglob(first.sha256))) == 1
    assert not list((c.root / "state" / "uploads").rglob("*.part"))  # stored once, no second spool
    three = client.create_submission(PROJECT, "D-3")
    client.put_study_manifest(three.id, "1.2.3", [ManifestEntry("ab" * 32, 10, "x.dcm")])
    with pytest.raises(ConflictError) as missing:
        client.commit(three.id)
    assert missing.value.code == "files_missing" and missing.value.detail["missing"] == ["ab" * 32]
    assert client.get_submission(three.id).status == "open"
    # A path that leaves its package or carries a NUL, and a size beyond any file, were accepted.
    for entry in (ManifestEntry("ab" * 32, 10, "../../x.dcm"), ManifestEntry("ab" * 32, 10, "/abs.dcm"),
                  ManifestEntry("ab" * 32, 10, "a\x00.dcm"), ManifestEntry("ab" * 32, 2**70, "x.dcm")):
        with pytest.raises(InvalidRequestError) as refused:
            client.put_study_manifest(three.id, "1.2.3", [entry])
        assert "files.0." in str(refused.value.detail) or "files.0." in refused.value.message, refused.value


def test_a_uid_belongs_to_one_project(commons: Commons, deid_tree: Path, tmp_path: Path) -> None:
    """Another project's submission of a study, or of an instance or series, that one project holds
    is rejected with the reason; new UIDs are accepted."""
    instances = instances_of(deid_tree)
    study = [i for i in instances if i.study_uid == instances[0].study_uid]
    client = commons.client()
    first = client.create_submission(PROJECT, "U-1")
    client.upload_batch(first.id, [(i.path, file_sha256(i.path)) for i in study])
    client.put_study_manifest(first.id, study[0].study_uid, [
        ManifestEntry(file_sha256(i.path), i.path.stat().st_size, i.path.name) for i in study])
    assert client.commit(first.id).counts["instances"]["indexed"] == len(study)

    def copy(source: Path, name: str, *, new_series: bool) -> Path:
        ds = pydicom.dcmread(source)
        ds.StudyInstanceUID = f"2.25.{uuid.uuid4().int}"
        if new_series:
            ds.SeriesInstanceUID = f"2.25.{uuid.uuid4().int}"
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"2.25.{uuid.uuid4().int}"
        ds.save_as(tmp_path / name, enforce_file_format=True)
        return tmp_path / name

    same_uids, new_uids = copy(study[0].path, "same.dcm", new_series=False), copy(study[0].path, "new.dcm", new_series=True)
    other = commons.client("other-site")
    second = other.create_submission("Open-B1", "U-2")
    declared = {study[0].study_uid: study, **{pydicom.dcmread(p).StudyInstanceUID: [p] for p in (same_uids, new_uids)}}
    for study_uid, files in declared.items():
        paths = [f if isinstance(f, Path) else f.path for f in files]
        other.upload_batch(second.id, [(p, file_sha256(p)) for p in paths])
        other.put_study_manifest(second.id, study_uid, [ManifestEntry(file_sha256(p), p.stat().st_size, p.name)
                                                        for p in paths])
    receipt = other.commit(second.id)
    outcome = {s["study_uid"]: s for s in receipt.studies}
    taken = outcome[study[0].study_uid]
    assert taken["status"] == "rejected" and taken["rejected"] == len(study)
    # Another site's contributor, not granted the project, is not told which project holds them.
    assert all(f["reason"] == f"study {study[0].study_uid} belongs to data you cannot write to"
               for f in taken["files"]), taken
    moved = outcome[pydicom.dcmread(same_uids).StudyInstanceUID]
    assert moved["status"] == "rejected"
    assert moved["files"][0]["reason"] == "its SOP Instance or Series UID belongs to data you cannot write to"
    assert PROJECT not in str(receipt.data["studies"])
    assert outcome[pydicom.dcmread(new_uids).StudyInstanceUID]["status"] == "accepted"
    assert receipt.counts["instances"]["indexed"] == 1


def test_a_study_record_cannot_take_a_study_of_another_project_or_site(commons: Commons, deid_tree: Path) -> None:
    """An imaging_study record naming a study that another project holds failed the whole commit
    (500: the study UID is unique); one naming a study of another site in the same project moved
    that site's study, with its series, to the sender's patient."""
    instances = instances_of(deid_tree)
    study = [i for i in instances if i.study_uid == instances[0].study_uid]
    patient = study[0].patient_id
    owner = commons.client()
    first = owner.create_submission(PROJECT, "R-1")
    owner.upload_batch(first.id, [(i.path, file_sha256(i.path)) for i in study])
    owner.put_study_manifest(first.id, study[0].study_uid, [
        ManifestEntry(file_sha256(i.path), i.path.stat().st_size, i.path.name) for i in study])
    owner.post_clinical(first.id, "case", clinical_cases([patient]))
    assert owner.commit(first.id).counts["instances"]["indexed"] == len(study)

    engine = make_engine(commons.db_url)
    try:
        add_user(engine, "b-in-a", "contributor", site_id="SITE_B", projects=[PROJECT])
        tokens = {"b-in-a": create_token(engine, "b-in-a")[0]}
    finally:
        engine.dispose()
    record = {"submitter_id": study[0].study_uid, "study_uid": study[0].study_uid,
              "case.submitter_id": "B-PATIENT", "days_to_study": 7}
    for user, project in (("other-site", "Open-B1"), ("b-in-a", PROJECT)):
        client = CommonsClient(commons.url, tokens.get(user) or commons.tokens[user])
        submission = client.create_submission(project, f"R-{user}")
        client.post_clinical(submission.id, "case", clinical_cases(["B-PATIENT"]))
        assert client.post_clinical(submission.id, "imaging_study", [record]).accepted == 1
        receipt = client.commit(submission.id)
        [row] = [c for c in receipt.clinical if c["node"] == "imaging_study"]
        assert row["status"] == "rejected", receipt.clinical
        assert PROJECT not in str(row["problems"]) and SITE not in str(row["problems"]), row
    engine = make_engine(commons.db_url)
    try:
        tables = node_tables()
        taken, case = tables["imaging_study"], tables["case"]
        with engine.connect() as conn:
            holders = conn.execute(select(taken.c.project_id, case.c.submitter_id, taken.c.days_to_study)
                                   .join(case, case.c.id == taken.c.case_id)
                                   .where(taken.c.study_uid == study[0].study_uid)).all()
    finally:
        engine.dispose()
    assert [tuple(h) for h in holders] == [(PROJECT, patient, None)]  # the owner sent no record: untouched


def test_a_study_declared_on_a_version_that_is_no_longer_its_latest_is_left_as_it_is(
        commons: Commons, deid_tree: Path) -> None:
    """A sender that completes a study with what the commons holds (the gateway) read its latest
    version, and another sender committed a new version before this one's commit: the version this
    one made lacked what the other had added. A manifest now carries the version it was built on
    (``base_version``); a study whose latest version is no longer that one is not versioned, its
    receipt entry says why, and the other studies of the submission commit. Without a base version
    (contribute, older clients) a study is versioned as before."""
    by_study: dict[str, list] = {}
    for instance in instances_of(deid_tree):
        by_study.setdefault(instance.study_uid, []).append(instance)
    (raced, raced_files), (other, other_files) = [(uid, found) for uid, found in by_study.items()
                                                  if len(found) >= 2][:2]
    client = commons.client()

    def entries(submission_id: int, files: list) -> list[ManifestEntry]:
        uploaded = [client.upload_file(submission_id, f.path) for f in files]
        return [ManifestEntry(u.sha256, u.size, f.path.name) for u, f in zip(uploaded, files)]

    def submit(dataset: str, studies: dict[str, tuple[list, int | None]]):
        submission = client.create_submission(PROJECT, dataset)
        for uid, (files, base) in studies.items():
            client.put_study_manifest(submission.id, uid, entries(submission.id, files), base_version=base)
        return client.commit(submission.id)

    first = submit("RACE_1", {raced: (raced_files[:1], 0), other: (other_files, 0)})
    assert [(s["status"], s["version"]) for s in first.studies] == [("accepted", 1), ("accepted", 1)], first.data
    # another sender read version 1 and commits version 2 (one instance more)...
    second = submit("RACE_2", {raced: (raced_files, 1)})
    assert [(s["status"], s["version"]) for s in second.studies] == [("new_version", 2)], second.data
    # ...after this one had read version 1 too: its study is left as it is, the other study commits
    third = submit("RACE_3", {raced: (raced_files[:1], 1), other: (other_files[:-1], 1)})
    refused, committed = third.studies
    assert refused["status"] == "changed_since_read" and refused["version"] == 2, refused
    assert refused["base_version"] == 1
    assert "changed at the commons (version 2) after this sender read version 1" in refused["reason"], refused
    assert (refused["indexed"], refused["rejected"]) == (0, 1), refused
    assert [f["reason"] for f in refused["files"]] == [refused["reason"]]
    assert (committed["status"], committed["version"]) == ("new_version", 2), committed
    versions = client.study_versions(raced, PROJECT)
    assert [v["version"] for v in versions] == [1, 2] and len(versions[-1]["instances"]) == len(raced_files)
    engine = make_engine(commons.db_url)
    try:
        instance = node_tables()["instance"]
        with engine.connect() as conn:
            held = set(conn.execute(select(instance.c.sop_instance_uid)
                                    .where(instance.c.sop_instance_uid.in_([f.sop_uid for f in raced_files])))
                       .scalars())
    finally:
        engine.dispose()
    assert held == {f.sop_uid for f in raced_files}  # version 2's instances are all still indexed
    # built on the latest version, or declaring none (contribute, an older client): versioned
    fourth = submit("RACE_4", {raced: (raced_files[:1], 2)})
    assert [(s["status"], s["version"]) for s in fourth.studies] == [("new_version", 3)], fourth.data
    fifth = submit("RACE_5", {raced: (raced_files, None)})
    assert [(s["status"], s["version"]) for s in fifth.studies] == [("new_version", 4)], fifth.data
    with commons.http() as http:
        submission = client.create_submission(PROJECT, "RACE_6")
        answer = http.put(f"/submissions/{submission.id}/studies/{raced}",
                          json={"files": [], "base_version": -1})
    assert answer.status_code == 422, answer.text
