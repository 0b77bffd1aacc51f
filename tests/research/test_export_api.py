"""ML-ready exports made by the server for researchers: POST /api/v1/exports, Client.export_cohort and the CLI.

A real commons (research_support: open, restricted and sequestered projects); every export is
checked against the files it must and must not hold, each file against its sha256.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from research_support import OPEN, RESTRICTED, SEQUESTERED, ResearchCommons

import radcommons
from radcommons.client import CommonsError


def _client(commons: ResearchCommons, user: str) -> radcommons.Client:
    return radcommons.Client(commons.url, commons.server.tokens[user])


def _export(commons: ResearchCommons, user: str, cohort: int | str, dest: Path, **options: Any) -> dict[str, Any]:
    """Client.export_cohort, waiting while another test's export of the same user still runs (409)."""
    deadline = time.monotonic() + 120
    with _client(commons, user) as client:
        while True:
            try:
                return client.export_cohort(cohort, dest, **options)
            except CommonsError as error:
                if error.code != "export_running" or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def _dicom_digests(dest: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in dest.rglob("*.dcm")}


@pytest.fixture(scope="module")
def granted_cohort(research_commons: ResearchCommons) -> dict[str, Any]:
    """Every case "granted" may read, frozen: the open and the restricted project."""
    with _client(research_commons, "granted") as client:
        return client.save_cohort("export me", "case", None, freeze=True)


@pytest.fixture(scope="module")
def dicom_export(research_commons: ResearchCommons, granted_cohort: dict[str, Any],
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    dest = tmp_path_factory.mktemp("dicom-export")
    return _export(research_commons, "granted", granted_cohort["identifier"], dest, format="dicom"), dest


def test_dicom_export_arrives_whole_and_verified(research_commons: ResearchCommons, granted_cohort: dict[str, Any],
                                                 dicom_export: tuple[dict[str, Any], Path]) -> None:
    status, dest = dicom_export
    assert status["state"] == "done" and status["owner"] == "granted", status
    assert status["download"]["failed"] == {} and status["download"]["downloaded"] == len(status["files"])
    expected = set(research_commons.object_ids[OPEN]) | set(research_commons.object_ids[RESTRICTED])
    assert _dicom_digests(dest) == expected
    for entry in status["files"]:  # every listed file arrived, with the listed size and sha256
        local = dest / entry["path"]
        assert local.stat().st_size == entry["size"]
        assert hashlib.sha256(local.read_bytes()).hexdigest() == entry["sha256"]
    names = {e["path"] for e in status["files"]}
    assert {"labels.csv", "labels.parquet", "manifest.csv", "manifest.json", "README.md"} <= names
    assert not any(n.startswith(".done/") for n in names) and not list(dest.rglob("*.part"))
    labels = pq.read_table(dest / "labels.parquet").to_pylist()
    assert {row["file"] for row in labels} == {n for n in names if n.endswith(".dcm")}
    datasheet = (dest / "README.md").read_text()
    assert granted_cohort["identifier"] in datasheet and granted_cohort["content_hash"] in datasheet
    assert "granted" in datasheet


def test_rerun_skips_and_resumes(research_commons: ResearchCommons, dicom_export: tuple[dict[str, Any], Path]) -> None:
    status, dest = dicom_export
    victim = dest / next(e["path"] for e in status["files"] if e["path"].endswith(".dcm"))
    whole = victim.read_bytes()
    victim.unlink()
    victim.with_name(victim.name + ".part").write_bytes(whole[: len(whole) // 2])  # as if interrupted mid-file
    (dest / "labels.csv").write_bytes(b"tampered")  # wrong content: fetched again
    with _client(research_commons, "granted") as client:
        report = client.download_export(status["id"], dest)
    assert (report.resumed, report.downloaded, report.skipped) == (1, 1, len(status["files"]) - 2)
    assert victim.read_bytes() == whole and not list(dest.rglob("*.part"))


def test_png_export_with_patient_level_splits(research_commons: ResearchCommons, granted_cohort: dict[str, Any],
                                              tmp_path: Path) -> None:
    status = _export(research_commons, "granted", granted_cohort["id"], tmp_path, format="png",
                     split={"train": 0.5, "test": 0.5}, stratify=["sex"], seed=3)
    assert status["state"] == "done" and status["split"] and status["stratify"] == ["sex"]
    pngs = sorted(tmp_path.rglob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    labels = pq.read_table(tmp_path / "labels.parquet").to_pylist()
    assert {row["file"] for row in labels} == {str(p.relative_to(tmp_path)) for p in pngs}
    assert {row["split"] for row in labels} <= {"train", "test"} and all(row["split"] for row in labels)
    by_patient: dict[str, set[str]] = {}
    for row in labels:
        by_patient.setdefault(f"{row['project_id']}/{row['case_submitter_id']}", set()).add(row["split"])
    assert all(len(splits) == 1 for splits in by_patient.values())  # never a patient in two splits
    assert {row["project_id"] for row in labels} <= {OPEN, RESTRICTED}


def test_no_sequestered_file_ever(research_commons: ResearchCommons, tmp_path: Path) -> None:
    """ "granted" holds a grant on the sequestered project: its export still never holds any of it."""
    with _client(research_commons, "granted") as client:
        saved = client.save_cohort("every case, run at export time", "case", None)  # a query: Seq-X rows match
    status = _export(research_commons, "granted", saved["id"], tmp_path, format="dicom")
    assert SEQUESTERED not in status["projects"]
    assert _dicom_digests(tmp_path) == set(research_commons.object_ids[OPEN]) | set(
        research_commons.object_ids[RESTRICTED])
    text = "\n".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.suffix in (".csv", ".json", ".md"))
    leaked = {s for s in research_commons.secrets_of(SEQUESTERED) if s in text}
    assert not leaked, sorted(leaked)[:5]
    # A snapshot holding sequestered members is not even visible to a researcher.
    with _client(research_commons, "admin") as admin:
        everything = admin.save_cohort("all, sequestered too", "case", None, freeze=True)
    with _client(research_commons, "granted") as client, pytest.raises(CommonsError) as refused:
        client.start_export(everything["identifier"], "dicom")
    assert refused.value.status == 404


def test_only_the_owner_or_an_admin_reads_an_export(research_commons: ResearchCommons,
                                                    dicom_export: tuple[dict[str, Any], Path]) -> None:
    status, _ = dicom_export
    base = f"{research_commons.url}/api/v1/exports/{status['id']}"
    for user, want in (("granted", 200), ("admin", 200), ("researcher", 404), ("curator", 404), ("contrib", 404),
                       ("reader", 403), (None, 401)):
        for url in (base, base + "/files/labels.csv"):
            response = httpx.get(url, headers=research_commons.headers(user))
            assert response.status_code == want, (user, url, response.text[:200])
    ranged = httpx.get(base + "/files/labels.csv", headers={**research_commons.headers("granted"), "Range": "bytes=5-"})
    whole = httpx.get(base + "/files/labels.csv", headers=research_commons.headers("granted")).content
    assert ranged.status_code == 206 and ranged.content == whole[5:]
    assert ranged.headers["Content-Range"] == f"bytes 5-{len(whole) - 1}/{len(whole)}"


def test_path_traversal_is_refused(research_commons: ResearchCommons,
                                   dicom_export: tuple[dict[str, Any], Path]) -> None:
    status, _ = dicom_export
    headers = research_commons.headers("granted")
    base = f"/api/v1/exports/{status['id']}/files/"
    with httpx.Client(base_url=research_commons.url, headers=headers) as http:
        for raw in ("..%2Fstatus.json", "..%2F..%2F..%2Fserver.log", "%2Fetc%2Fpasswd", "a%2F..%2F..%2Fstatus.json",
                    ".done%2Fx.json"):
            # the raw path is sent as written (httpx would otherwise normalise "..")
            response = http.send(http.build_request("GET", base + raw))
            assert response.status_code in (400, 404), (raw, response.status_code)
            assert response.json()["error"]["code"] in ("bad_path", "not_found"), raw
        response = http.send(http.build_request("GET", base + "..%2Fstatus.json"))
        assert response.status_code == 400 and "relative path" in response.json()["error"]["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"format": "jpeg"}, "format"),
    ({"format": "png", "split": "train=lots"}, "split"),
    ({"format": "png", "stratify": ["sex"]}, "stratify"),
    ({"format": "png", "split": "train=1", "stratify": ["shoe_size"]}, "stratify"),
    ({"format": "png", "bits": 12}, "bits"),
    ({"format": "png", "cohort": "../etc"}, "cohort"),
])
def test_bad_requests_name_the_field(research_commons: ResearchCommons, granted_cohort: dict[str, Any],
                                     body: dict[str, Any], field: str) -> None:
    response = httpx.post(f"{research_commons.url}/api/v1/exports", headers=research_commons.headers("granted"),
                          json={"cohort": granted_cohort["identifier"], **body})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert field in error["message"] and any(field in f["field"] for f in error["fields"]), error


def test_dua_is_required(research_commons: ResearchCommons, granted_cohort: dict[str, Any]) -> None:
    response = httpx.post(f"{research_commons.url}/api/v1/exports", headers=research_commons.headers("reader"),
                          json={"cohort": granted_cohort["identifier"], "format": "dicom"})
    assert response.status_code == 403 and response.json()["error"]["code"] == "dua_required"


def test_download_command_with_format(research_commons: ResearchCommons, granted_cohort: dict[str, Any],
                                      tmp_path: Path) -> None:
    """`radcommons download DEST --cohort ID --format png`: the server exports, the files arrive verified."""
    token_file = research_commons.token_file("researcher", tmp_path / "token")
    dest = tmp_path / "cli"
    command = [sys.executable, "-m", "radcommons", "download", str(dest), "--cohort", granted_cohort["identifier"],
               "--format", "png", "--split", "train=0.7,test=0.3", "--server", research_commons.url,
               "--token-file", str(token_file)]
    # "researcher" cannot see granted's snapshot (restricted members): 404, said plainly
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "no cohort" in refused.stdout + refused.stderr
    with _client(research_commons, "researcher") as client:
        own = client.save_cohort("open cases", "case", None, freeze=True)
    command[command.index("--cohort") + 1] = own["identifier"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    labels = pq.read_table(dest / "labels.parquet").to_pylist()
    assert labels and {row["project_id"] for row in labels} == {OPEN}
    assert all((dest / row["file"]).is_file() for row in labels) and (dest / "README.md").is_file()


def test_a_server_start_fails_and_clears_the_exports_a_stopped_server_left(tmp_path: Path) -> None:
    """A stopped server's half-written export loses its files (kept: the status, saying why), as
    does a folder stopped before its status was written; a finished export is left alone."""
    from radcommons.server.exports import ExportJobs, write_json_atomic

    def left(export_id: str, state: str | None) -> Path:
        folder = tmp_path / export_id
        (folder / "files" / "images").mkdir(parents=True)
        (folder / "files" / "images" / "a.png").write_bytes(b"x" * 100)
        if state is not None:
            write_json_atomic(folder / "status.json", {"id": export_id, "state": state, "files": []})
        return folder

    running, queued, done, bare = (left("rc-export-1", "running"), left("rc-export-2", "queued"),
                                   left("rc-export-3", "done"), left("rc-export-4", None))
    jobs = ExportJobs(tmp_path, engine=None, store=None)
    for folder in (running, queued):
        status = jobs.status(folder.name)
        assert status["state"] == "failed" and "server stopped" in status["message"]
        assert not (folder / "files").exists()
    assert jobs.status(done.name)["state"] == "done" and (done / "files" / "images" / "a.png").is_file()
    assert not bare.exists()
