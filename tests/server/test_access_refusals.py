"""What one user learns of another's data through the submission, STOW-RS and cohort APIs: a
study's history only for its own site, uploads that count only for the submission they went to,
refusals that do not name a project or site the caller may not read, and a frozen cohort of
one's own (found by an access sweep)."""

from __future__ import annotations

from pathlib import Path

from commons_fixtures import PROJECT, SITE, Commons, Instance, instances_of

from radcommons.client import CommonsClient, ManifestEntry, file_sha256
from radcommons.store.index import make_engine
from radcommons.store.index.accounts import add_user, create_token


def add_users(commons: Commons, *users: tuple[str, str, str | None, list[str]]) -> None:
    """Users ``(name, role, site, projects)`` of a running commons, with their tokens."""
    engine = make_engine(commons.db_url)
    try:
        for name, role, site, projects in users:
            add_user(engine, name, role, site_id=site, projects=projects)
            commons.tokens[name] = create_token(engine, name)[0]
    finally:
        engine.dispose()


def one_study(tree: Path) -> list[Instance]:
    instances = instances_of(tree)
    return [i for i in instances if i.study_uid == instances[0].study_uid]


def submit(client: CommonsClient, project: str, dataset: str, study: list[Instance], site_id: str | None = None) -> dict:
    """Upload, declare and commit one study (for ``site_id``: a curator's); the receipt's data."""
    submission = client.create_submission(project, dataset, site_id=site_id)
    client.upload_batch(submission.id, [(i.path, file_sha256(i.path)) for i in study])
    client.put_study_manifest(submission.id, study[0].study_uid, [
        ManifestEntry(file_sha256(i.path), i.path.stat().st_size, i.path.name) for i in study])
    return client.commit(submission.id).data


def test_a_frozen_cohort_is_its_freezers_own(commons: Commons, deid_tree: Path) -> None:
    """Two researchers freezing the same members each get their own snapshot: the second used to be
    handed the first one's record (its owner, name, filter and description)."""
    submit(commons.client(), PROJECT, "C-1", one_study(deid_tree))
    add_users(commons, ("alice", "researcher", None, []), ("bob", "researcher", None, []))
    frozen = {}
    for user in ("alice", "bob", "alice"):
        with commons.http(user) as http:
            assert http.post("/dua/accept").status_code == 200
            answer = http.post("/cohorts", json={
                "name": f"{user}'s secret study", "node": "series", "description": f"notes of {user}",
                "filter": {"=": {"project_id": PROJECT}}, "freeze": True})
            assert answer.status_code == 201, answer.text
            body = answer.json()
            assert body["owner"] == user and body["name"] == f"{user}'s secret study", body
            assert body["description"] == f"notes of {user}"
            assert user == "alice" or "alice" not in str(body)
            frozen.setdefault(user, body)
            assert body["id"] == frozen[user]["id"]  # the same user again: its own snapshot, unchanged
    alice, bob = frozen["alice"], frozen["bob"]
    assert alice["content_hash"] == bob["content_hash"] and alice["member_count"] == bob["member_count"] > 0
    assert alice["identifier"] != bob["identifier"] and bob["identifier"].startswith("rc-cohort-")
    with commons.http("bob") as http:
        read = http.get(f"/cohorts/{bob['identifier']}")
        assert read.status_code == 200 and read.json()["owner"] == "bob" and read.json()["verified"] is True
        assert [c["identifier"] for c in http.get("/cohorts", params={"frozen": True}).json()] == [bob["identifier"]]
        manifest = http.get(f"/cohorts/{bob['identifier']}/manifest", params={"format": "json"})
        assert manifest.status_code == 200 and manifest.json()


def test_a_study_history_is_for_its_own_site(commons: Commons, deid_tree: Path) -> None:
    """A contributor granted the project used to read another site's study history (its instances'
    object ids and the whole imaging_study row); now only its own site's, and anyone else is told
    there is no such study, as for one that does not exist."""
    study = one_study(deid_tree)
    submit(commons.client(), PROJECT, "V-1", study)
    add_users(commons, ("site-b-granted", "contributor", "SITE_B", [PROJECT]),
              ("site-a-colleague", "contributor", SITE, [PROJECT]))
    path = f"/studies/{study[0].study_uid}/versions"
    for user in ("uploader", "site-a-colleague", "curator", "admin"):
        with commons.http(user) as http:
            answer = http.get(path, params={"project": PROJECT})
            assert answer.status_code == 200, (user, answer.text)
            assert [v["version"] for v in answer.json()] == [1]
    with commons.http("curator") as http:
        unknown = http.get(f"/studies/{study[0].study_uid}.9/versions", params={"project": PROJECT})
    assert unknown.status_code == 404
    for user in ("site-b-granted", "other-site", "reader"):
        with commons.http(user) as http:
            answer = http.get(path, params={"project": PROJECT})
        assert answer.status_code == 404, (user, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "not_found" and error["hint"], error
        assert error == {**unknown.json()["error"], "message": error["message"]}
        assert SITE not in answer.text and file_sha256(study[0].path) not in answer.text


def test_a_submission_holds_only_what_was_uploaded_to_it(commons: Commons, deid_tree: Path) -> None:
    """A file another site uploaded (to a submission not yet committed, or sequestered, or held in
    quarantine) used to count as present in any submission: HEAD and files/states told its
    existence and size, and a manifest naming its sha256 committed it into the caller's project.
    Now only files uploaded to the submission count; sending the bytes again proves holding them
    (the store keeps one copy), and a file sent twice to one submission is stored once."""
    instance = one_study(deid_tree)[0]
    digest, size = file_sha256(instance.path), instance.path.stat().st_size
    site_a = commons.client()
    theirs = site_a.create_submission(PROJECT, "H-A")
    assert not site_a.upload_file(theirs.id, instance.path).already_present
    other = commons.client("other-site")
    mine = other.create_submission("Open-B1", "H-B")
    with commons.http("other-site") as http:
        head = http.head(f"/submissions/{mine.id}/files/{digest}")
        assert head.status_code == 404 and "upload-complete" not in head.headers and "upload-length" not in head.headers
        states = http.post(f"/submissions/{mine.id}/files/states", json={"sha256": [digest]})
        assert states.status_code == 200 and states.json() == {"files": []}
    declared = other.put_study_manifest(mine.id, instance.study_uid, [ManifestEntry(digest, size, "claimed.dcm")])
    assert declared["missing"] == [digest]
    with commons.http("other-site") as http:
        refused = http.post(f"/submissions/{mine.id}/commit")
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "files_missing" and error["missing"] == [digest] and error["hint"]
    # Sending the bytes proves holding them: then they are this submission's, stored once.
    sent = other.upload_file(mine.id, instance.path)
    assert not sent.already_present and sent.sent == size
    again = other.upload_file(mine.id, instance.path)  # the same file twice: nothing sent, stored once
    assert again.already_present and again.sent == 0
    assert other.upload_states(mine.id, [digest]) == {digest: (size, True)}
    assert len(list(commons.store_dir.rglob(digest))) == 1
    assert other.put_study_manifest(mine.id, instance.study_uid,
                                    [ManifestEntry(digest, size, "mine.dcm")])["missing"] == []
    receipt = other.commit(mine.id)
    assert receipt.counts["instances"]["indexed"] == 1
    assert other.commit(mine.id).data == receipt.data  # a retried commit duplicates nothing


def test_a_receipt_names_only_what_the_caller_may_read(commons: Commons, deid_tree: Path) -> None:
    """A commit's receipt used to name the site holding a study (and its version number) to another
    site's contributor; now it says the study belongs to data the caller cannot write to. A curator
    is still told the site."""
    study = one_study(deid_tree)
    submit(commons.client(), PROJECT, "R-1", study)
    add_users(commons, ("site-b-granted", "contributor", "SITE_B", [PROJECT]))
    receipt = submit(commons.client("site-b-granted"), PROJECT, "R-B", study)
    entry = receipt["studies"][0]
    assert entry["status"] == "rejected" and entry["version"] is None, entry
    assert {f["reason"] for f in entry["files"]} == {
        f"study {study[0].study_uid} belongs to data you cannot write to: only that site may send a new version of it"}
    assert SITE not in str(receipt["studies"])
    told = submit(commons.client("curator"), PROJECT, "R-C", study, site_id="SITE_B")["studies"][0]
    assert f"belongs to site {SITE}" in told["files"][0]["reason"] and told["version"] == 1, told


def test_a_site_sends_again_without_its_bytes_what_it_sent_before(commons: Commons, deid_tree: Path) -> None:
    """Only a submission's own uploads count as present, except the site's own files already indexed in
    that project: a corrected resubmission or a rerun after a commit sends no bytes again. Another
    site granted the same project still has to send them."""
    study = one_study(deid_tree)
    submit(commons.client(), PROJECT, "S-1", study)
    digests = [file_sha256(i.path) for i in study]
    entries = [ManifestEntry(d, i.path.stat().st_size, i.path.name) for d, i in zip(digests, study)]
    site_a = commons.client()
    again = site_a.create_submission(PROJECT, "S-2")
    assert set(site_a.upload_states(again.id, digests)) == set(digests)
    assert site_a.put_study_manifest(again.id, study[0].study_uid, entries)["missing"] == []
    assert site_a.commit(again.id).counts["instances"]["unchanged"] == len(study)
    add_users(commons, ("site-b-claimer", "contributor", "SITE_B", [PROJECT]))
    site_b = commons.client("site-b-claimer")
    theirs = site_b.create_submission(PROJECT, "S-B")
    assert site_b.upload_states(theirs.id, digests) == {}
    assert sorted(site_b.put_study_manifest(theirs.id, study[0].study_uid, entries)["missing"]) == sorted(digests)
