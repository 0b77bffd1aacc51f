"""A corrected study (same UIDs, other content) sent through ``radcommons ingest`` or STOW-RS is a new
version, as through a submission: the files are reported as updated, the history keeps the old
content, and the study's description and LOINC code are the corrected ones. Body Part Examined is
indexed normalised (Chest, THORAX, chest -> CHEST), the value as sent kept next to it. Through the
real CLI and a real ``radcommons serve``, on both index backends."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pydicom
from commons_fixtures import PROJECT, SITE, Commons, instances_of
from test_quarantine_versions import variant

OLD, NEW = "CT CHEST ABDOMEN PELVIS W CONTRAST (ROUTINE)", "CT CHEST WO CONTRAST"


def _study_files(deid_tree: Path) -> list[Path]:
    """The instances of the largest study of the tree."""
    by_study: dict[str, list[Path]] = {}
    for instance in instances_of(deid_tree):
        by_study.setdefault(instance.study_uid, []).append(instance.path)
    return sorted(by_study.values(), key=lambda paths: (-len(paths), str(paths[0])))[0][:3]


def _write(files: list[Path], root: Path, description: str, number: int, modality: str = "CT") -> list[Path]:
    def change(ds: pydicom.Dataset, n: int) -> None:
        ds.StudyDescription, ds.InstanceNumber, ds.Modality = description, number + n, modality

    return [variant(path, root / f"{n}.dcm", lambda ds, n=n: change(ds, n)) for n, path in enumerate(files)]


def _stow(commons: Commons, paths: list[Path]) -> httpx.Response:
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p.read_bytes() + b"\r\n"
                    for p in paths) + f"--{boundary}--\r\n".encode()
    return httpx.post(f"{commons.url}/dicomweb/studies", params={"project": PROJECT, "site": SITE}, content=body,
                      timeout=120, headers={"Authorization": f"Bearer {commons.tokens['uploader']}",
                                            "Accept": "application/dicom+json",
                                            "Content-Type": f'multipart/related; type="application/dicom"; '
                                                            f'boundary={boundary}'})


def test_ingest_of_a_corrected_tree_is_a_new_version(commons: Commons, deid_tree: Path, tmp_path: Path,
                                                      run_cli) -> None:
    files = _study_files(deid_tree)
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    _write(files, tmp_path / "v1", OLD, 1)
    _write(files, tmp_path / "v2", NEW, 100)

    def ingest(tree: Path, report: str):
        result = run_cli("ingest", str(tree), "--project", PROJECT, "--site", SITE, "--workers", "1",
                         "--url", commons.db_url, "--store", str(commons.store_dir), "--report", report)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return result.stdout, json.loads((tmp_path / report).read_text())["files"]

    ingest(tmp_path / "v1", "first.json")
    table, outcomes = ingest(tmp_path / "v2", "second.json")
    assert [f["status"] for f in outcomes] == ["updated"] * 3, outcomes
    assert "study version 2" in outcomes[0]["reason"], outcomes[0]
    assert re.search(r"updated\W+3\b", table), table  # the CLI's table counts them
    versions = commons.client("curator").study_versions(study_uid, PROJECT)
    assert [v["change"] for v in versions] == ["created", "ingest"], versions
    old_objects = {i["object_id"] for i in versions[0]["instances"]}
    new_objects = {i["object_id"] for i in versions[1]["instances"]}
    assert len(old_objects) == len(new_objects) == 3 and not old_objects & new_objects
    assert versions[0]["study"]["study_description"] == OLD
    assert versions[1]["study"]["study_description"] == NEW, versions[1]["study"]
    assert versions[1]["study"]["loinc_code"] != versions[0]["study"]["loinc_code"]
    _, again = ingest(tmp_path / "v2", "third.json")
    assert [f["status"] for f in again] == ["duplicate"] * 3
    assert len(commons.client("curator").study_versions(study_uid, PROJECT)) == 2


def test_stow_correction_updates_the_study_description_and_code(commons: Commons, deid_tree: Path,
                                                                 tmp_path: Path) -> None:
    files = _study_files(deid_tree)
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert _stow(commons, _write(files, tmp_path / "v1", OLD, 1)).status_code == 200
    assert _stow(commons, _write(files, tmp_path / "v2", NEW, 50)).status_code == 200
    versions = commons.client("curator").study_versions(study_uid, PROJECT)
    assert [v["change"] for v in versions] == ["created", "stow"], versions
    before, after = versions[0]["study"], versions[1]["study"]
    assert before["study_description"] == OLD and before["loinc_code"]
    assert after["study_description"] == NEW, after
    assert after["loinc_code"] and after["loinc_code"] != before["loinc_code"], (before, after)


def test_body_part_is_normalised_and_the_raw_value_kept(commons: Commons, deid_tree: Path, tmp_path: Path) -> None:
    singles = [i for i in instances_of(deid_tree) if sum(j.study_uid == i.study_uid for j in instances_of(deid_tree)) == 1]
    sent = ["Chest", "THORAX", "chest"]
    paths = []
    for n, (instance, body_part) in enumerate(zip(singles, sent)):
        def change(ds: pydicom.Dataset, body_part: str = body_part) -> None:
            ds.BodyPartExamined = body_part
        paths.append(variant(instance.path, tmp_path / f"{n}.dcm", change))
    assert _stow(commons, paths).status_code == 200
    curator = commons.client("curator")
    for instance, body_part in zip(singles, sent):
        study = curator.study_versions(instance.study_uid, PROJECT)[0]["study"]
        assert (study["body_part_examined"], study["body_part_examined_raw"]) == ("CHEST", body_part), study
    with commons.http("admin") as http:
        answer = http.post("/facets/series", json={"fields": ["body_part_examined"]})
        assert answer.status_code == 200, answer.text
        assert "THORAX" not in answer.text and "Chest" not in answer.text and "CHEST" in answer.text, answer.text
