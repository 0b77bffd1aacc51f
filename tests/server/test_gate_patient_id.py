"""The verification gate judges Patient ID before it lets Patient's Name equal it as "the pseudonym":
a real name or an MRN copied into both fields is quarantined, through a submission to a real
``radcommons serve`` and through ``radcommons ingest``, on both index backends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
from commons_fixtures import SITE, Commons, instances_of
from test_quarantine_versions import submit, variant


def _same_id_and_name(value: str):
    def change(ds: pydicom.Dataset) -> None:
        ds.PatientID = ds.PatientName = value
    return change


def test_real_name_as_patient_id_is_quarantined_not_shown(commons: Commons, deid_tree: Path, tmp_path: Path) -> None:
    single = next(i for i in instances_of(deid_tree)
                  if sum(j.study_uid == i.study_uid for j in instances_of(deid_tree)) == 1)
    named = variant(single.path, tmp_path / "named.dcm", _same_id_and_name("CAMPBELL^JENNIFER"))
    _, receipt = submit(commons.client(), "Gate-1", [named], single.study_uid)
    entry = receipt.studies[0]
    assert entry["indexed"] == 0 and entry["quarantined"] == 1, entry
    reason = entry["files"][0]["reason"]
    assert "patient-id" in reason and "person's name" in reason, reason
    with commons.http("reader") as http:
        assert http.post("/dua/accept").status_code == 200
        answer = http.post("/query/case", json={"filter": {"=": {"submitter_id": "CAMPBELL^JENNIFER"}}})
        assert answer.status_code == 200 and "CAMPBELL" not in answer.text, answer.text


def test_ingest_quarantines_an_mrn_and_keeps_other_tools_pseudonyms(db_url: str, deid_tree: Path, tmp_path: Path,
                                                                   run_cli) -> None:
    tree = tmp_path / "tree"
    singles = [i for i in instances_of(deid_tree) if sum(j.study_uid == i.study_uid for j in instances_of(deid_tree)) == 1]
    patients = {}
    for instance in singles:
        patients.setdefault(instance.patient_id, instance)
    mrn, anon, hashed = list(patients.values())[:3]
    for instance, value in [(mrn, "20318452"), (anon, "ANON0001"), (hashed, "3f9a6c0e4b2d81f7a5c3e9d0b1a2c4e6")]:
        variant(instance.path, tree / f"{value}.dcm", _same_id_and_name(value))
    assert run_cli("db", "upgrade", "--url", db_url).returncode == 0
    result = run_cli("ingest", str(tree), "--project", "Ingest-G", "--site", SITE, "--workers", "1", "--url", db_url,
                     "--store", str(tmp_path / "objects"), "--report", "report.json")
    assert "Traceback" not in result.stderr, result.stderr
    files = {Path(f["path"]).stem: f for f in json.loads((tmp_path / "report.json").read_text())["files"]}
    assert files["20318452"]["status"] == "quarantined", files
    assert "medical record number" in files["20318452"]["reason"]
    assert files["ANON0001"]["status"] == files["3f9a6c0e4b2d81f7a5c3e9d0b1a2c4e6"]["status"] == "indexed", files
    shutil.rmtree(tree)
