"""A submission's commit racing with other senders, through a real server."""

from __future__ import annotations

from pathlib import Path

import pydicom
from commons_fixtures import PROJECT, Commons, instances_of

from radcommons.client import ManifestEntry, file_sha256


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
