"""A submission's commit racing with other senders, through a real server."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from commons_fixtures import PROJECT, Commons, instances_of
from sqlalchemy import select

from radcommons.client import ManifestEntry, file_sha256
from radcommons.pipelines import submission as pipeline
from radcommons.store.index import make_engine
from radcommons.store.index.accounts import authenticate
from radcommons.store.index.schema import system_table
from radcommons.store.objects import ObjectStore


def _by_study(tree: Path) -> list[tuple[str, list]]:
    found: dict[str, list] = {}
    for instance in instances_of(tree):
        found.setdefault(instance.study_uid, []).append(instance)
    return [(uid, files) for uid, files in found.items() if len(files) >= 2]


def test_a_study_whose_instance_was_replaced_after_the_sender_read_it_is_changed_since_read_not_files_missing(
        commons: Commons, deid_tree: Path, tmp_path: Path) -> None:
    """A gateway reads a study at version 1 and declares the copy of an instance it read as held;
    another sender then commits a corrected copy of that instance (same SOP Instance UID, other
    bytes: version 2). The old copy is no longer an indexed instance, so the commit counted it as
    never uploaded and refused the whole submission (files_missing): every study of the round
    waited. Now the stale study alone is answered changed_since_read and the others commit."""
    (raced, raced_files), (other, other_files) = _by_study(deid_tree)[:2]
    gateway, sender = commons.client(), commons.client()

    def entries(client, submission_id: int, paths: list[Path], upload: bool = True) -> list[ManifestEntry]:
        if upload:
            for path in paths:
                client.upload_file(submission_id, path)
        return [ManifestEntry(file_sha256(p), p.stat().st_size, p.name) for p in paths]

    first = sender.create_submission(PROJECT, "REPLACED_1")
    sender.put_study_manifest(first.id, raced, entries(sender, first.id, [f.path for f in raced_files]),
                              base_version=0)
    assert [s["status"] for s in sender.commit(first.id).studies] == ["accepted"]

    # the gateway reads version 1 (its files, held at the commons already) ...
    held = [f.path for f in raced_files]
    # ... another sender commits a corrected copy of the first instance: version 2
    corrected = tmp_path / "corrected.dcm"
    ds = pydicom.dcmread(raced_files[0].path)
    ds.InstanceNumber = int(ds.get("InstanceNumber") or 0) + 1000
    ds.save_as(corrected)
    assert file_sha256(corrected) != file_sha256(raced_files[0].path)
    second = sender.create_submission(PROJECT, "REPLACED_2")
    sender.put_study_manifest(second.id, raced, entries(sender, second.id, [corrected, *held[1:]]), base_version=1)
    assert [(s["status"], s["version"]) for s in sender.commit(second.id).studies] == [("new_version", 2)]

    # ... and the gateway's round declares the study on version 1 with the copy it read, as held
    round_ = gateway.create_submission(PROJECT, "REPLACED_ROUND")
    declared = gateway.put_study_manifest(round_.id, raced, entries(gateway, round_.id, held, upload=False),
                                          base_version=1)
    assert declared["missing"] == [file_sha256(raced_files[0].path)], declared
    gateway.put_study_manifest(round_.id, other, entries(gateway, round_.id, [f.path for f in other_files]),
                               base_version=0)
    receipt = gateway.commit(round_.id)
    refused, committed = receipt.studies
    assert (refused["study_uid"], refused["status"], refused["version"]) == (raced, "changed_since_read", 2), refused
    assert (refused["indexed"], refused["rejected"]) == (0, len(held)), refused
    assert (committed["study_uid"], committed["status"]) == (other, "accepted"), committed
    versions = sender.study_versions(raced, PROJECT)
    assert [v["version"] for v in versions] == [1, 2]  # the study stays as the corrected copy left it


def test_an_upload_that_ends_after_the_commit_is_refused_and_not_recorded_under_it(
        commons: Commons, deid_tree: Path) -> None:
    """An upload (PATCH, PUT, batch) checks that the submission is open when it starts, and
    records its file when the last byte is stored. A commit in between left the file recorded
    under the committed submission (and audited as uploaded to it). Recording now checks, in its
    own transaction, that the submission is still open: 409 submission_closed, nothing recorded.
    The request's last step is run here as the server runs it, after a real commit."""
    (study, files), = _by_study(deid_tree)[:1]
    client = commons.client()
    submission = client.create_submission(PROJECT, "LATE_UPLOAD")
    sent = client.upload_file(submission.id, files[0].path)
    client.put_study_manifest(submission.id, study, [ManifestEntry(sent.sha256, sent.size, files[0].path.name)])
    client.commit(submission.id)
    late = file_sha256(files[1].path)
    engine = make_engine(commons.db_url)
    try:
        principal = authenticate(engine, commons.tokens["uploader"])
        with pytest.raises(pipeline.SubmissionError) as refused:
            pipeline.note_uploads(engine, principal, submission.id, [(late, files[1].path.stat().st_size, True)],
                                  client="test")
        table = system_table("submission_file")
        with engine.connect() as conn:
            recorded = conn.execute(select(table.c.sha256).where(table.c.submission_id == submission.id)).scalars()
            recorded = set(recorded)
    finally:
        engine.dispose()
    assert (refused.value.code, refused.value.kind) == ("submission_closed", "conflict")
    assert f"submission {submission.id} is already committed" in refused.value.message
    assert recorded == {sent.sha256}


def test_a_manifest_or_clinical_post_that_comes_while_the_commit_gates_is_not_left_out(
        commons: Commons, deid_tree: Path) -> None:
    """A commit reads the declared files and clinical records, gates them (the longest part), and
    only then takes the submission. A manifest or a clinical post from another client in that
    window got its 200 but was left out of the commit (a replaced manifest: the commit wrote rows
    that no longer existed). Once it holds the submission, the commit now checks that it holds
    what was read: else it commits nothing and answers 409 submission_changed (commit again).
    The commit's two steps are run here as it runs them, with the other client's request between."""
    (first, first_files), (late, late_files) = _by_study(deid_tree)[:2]
    committer, other = commons.client(), commons.client()
    submission = committer.create_submission(PROJECT, "RACED_COMMIT")

    def declare(client, uid: str, files: list) -> None:
        sent = [client.upload_file(submission.id, f.path) for f in files]
        client.put_study_manifest(submission.id, uid, [ManifestEntry(u.sha256, u.size, f.path.name)
                                                       for u, f in zip(sent, files)])

    declare(committer, first, first_files)
    engine, store = make_engine(commons.db_url), ObjectStore(str(commons.store_dir))
    try:
        principal = authenticate(engine, commons.tokens["uploader"])
        for arrives in (lambda: declare(other, late, late_files),  # a new study
                        lambda: declare(other, first, first_files[:1]),  # a replaced manifest
                        lambda: other.post_clinical(submission.id, "case", [{"submitter_id": "P-LATE"}])):
            read = pipeline._read_and_gate(engine, store, principal, submission.id)
            arrives()
            with pytest.raises(pipeline.SubmissionError) as refused:
                pipeline._commit_transaction(engine, principal, *read, client="test")
            assert (refused.value.code, refused.value.kind) == ("submission_changed", "conflict")
            assert "commit again" in refused.value.hint
            assert other.get_submission(submission.id).status == "open"  # nothing was committed
    finally:
        engine.dispose()
    receipt = committer.commit(submission.id)  # committed again: with what arrived
    assert {s["study_uid"]: s["indexed"] for s in receipt.studies} == {first: 1, late: len(late_files)}, receipt.data
    assert [(c["submitter_id"], c["status"]) for c in receipt.clinical] == [("P-LATE", "rejected")], receipt.data
