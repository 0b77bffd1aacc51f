"""A frozen cohort gives the files it pinned, whatever happened to its instances since the freeze.

Before: a study corrected after the freeze (same UIDs, new pixels: the index updates the
instance record in place) made every interface hand out the *new* file under the frozen
cohort's name and content hash: the operator's ``radcommons export``, ``radcommons download
--cohort``, ``GET /cohorts/{id}/manifest`` and the server-side export; the frozen file itself
answered 404 at ``/objects``. Now each gives the pinned file (and the datasheet says which
members changed), the object route serves it to a reader of the cohort, and a pinned file that
is gone from the object store is refused by name, never replaced by the file indexed now.

A real server (``radcommons serve``) over a commons of its own: the test changes the index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from sqlalchemy import delete

sys.path.insert(0, str(Path(__file__).parent.parent / "research"))

from database_support import pg_database  # noqa: E402
from research_support import OPEN, ResearchCommons, serving  # noqa: E402
from test_export_api import _export  # noqa: E402

import radcommons  # noqa: E402
from radcommons.store.index import make_engine, node_tables  # noqa: E402
from radcommons.store.objects import ObjectStore  # noqa: E402


def stow(commons: ResearchCommons, path: Path) -> None:
    """STOW-RS ``path`` into the open project as the administrator (a corrected version of its study)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + path.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode())
    response = httpx.post(f"{commons.url}/dicomweb/studies", params={"project": OPEN, "site": "SITE_A"},
                          content=body, timeout=120,
                          headers={**commons.headers("admin"), "Accept": "application/dicom+json",
                                   "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    assert response.status_code == 200, response.text


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def corrected(request: pytest.FixtureRequest, deid_tree: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A commons (on each index backend); the researcher's frozen cohort of the open cases; then one
    member corrected."""
    root = tmp_path_factory.mktemp("pinned-commons")
    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{root / 'index.db'}" if request.param == "sqlite"
               else stack.enter_context(pg_database(request.getfixturevalue("pg_admin"))))
        yield from _corrected(root, url, deid_tree)


def _corrected(root: Path, url: str, deid_tree: Path) -> Iterator[dict[str, Any]]:
    with serving(root, url, deid_tree) as commons:
        with radcommons.Client(commons.url, commons.server.tokens["researcher"]) as client:
            cohort = client.save_cohort("open cases", "case", None, freeze=True)
            before = {row["sop_instance_uid"]: row["object_id"] for row in client.cohort_manifest(cohort["identifier"])}
        victim = next(i for i in commons.instances[OPEN] if _sha(i.path) in before.values())
        ds = pydicom.dcmread(victim.path)
        pixels = bytearray(ds.PixelData)
        pixels[:64] = bytes(255 - b for b in pixels[:64])
        ds.PixelData = bytes(pixels)
        (root / "v2").mkdir()
        ds.save_as(root / "v2" / "corrected.dcm")
        stow(commons, root / "v2" / "corrected.dcm")
        yield {"commons": commons, "cohort": cohort, "sop": victim.sop_uid, "old": _sha(victim.path),
               "new": _sha(root / "v2" / "corrected.dcm"), "before": before}


def _client(commons: ResearchCommons, user: str = "researcher") -> radcommons.Client:
    return radcommons.Client(commons.url, commons.server.tokens[user])


def test_the_manifest_and_download_give_the_frozen_file(corrected: dict[str, Any], tmp_path: Path) -> None:
    commons, cohort = corrected["commons"], corrected["cohort"]
    with _client(commons) as client:
        manifest = client.cohort_manifest(cohort["identifier"])
        assert {row["sop_instance_uid"]: row["object_id"] for row in manifest} == corrected["before"]
        assert client.cohort(cohort["identifier"])["verified"] is True
    token = commons.token_file("researcher", tmp_path / "token")
    done = subprocess.run([sys.executable, "-m", "radcommons", "download", str(tmp_path / "dl"), "--cohort",
                           cohort["identifier"], "--server", commons.url, "--token-file", str(token)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    got = {_sha(p) for p in (tmp_path / "dl").rglob("*.dcm")}
    assert got == set(corrected["before"].values())
    assert corrected["old"] in got and corrected["new"] not in got
    # the frozen file stays fetchable for a reader of the cohort; the new one is served as well (indexed)
    for digest in (corrected["old"], corrected["new"]):
        response = httpx.get(f"{commons.url}/api/v1/objects/{digest}", headers=commons.headers("researcher"))
        assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == digest
    # ...but not for someone who may not see the cohort's project
    response = httpx.get(f"{commons.url}/api/v1/objects/{corrected['old']}", headers=commons.headers("uploader"))
    assert response.status_code in (403, 404)


def test_exports_hold_the_frozen_file_and_say_what_changed(corrected: dict[str, Any], tmp_path: Path,
                                                           run_cli: Any) -> None:
    commons, cohort = corrected["commons"], corrected["cohort"]
    env = {"RADCOMMONS_DATABASE_URL": commons.server.db_url,
           "RADCOMMONS_OBJECT_STORE_URL": str(commons.server.store_dir)}
    done = run_cli("export", cohort["identifier"], str(tmp_path / "operator"), "--for", "researcher", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    _export(commons, "researcher", cohort["identifier"], tmp_path / "server", format="dicom")
    for dest in (tmp_path / "operator", tmp_path / "server"):
        manifest = json.loads((dest / "manifest.json").read_text())
        assert {row["sop_instance_uid"]: row["object_id"] for row in manifest} == corrected["before"], dest
        assert {_sha(p) for p in dest.rglob("*.dcm")} == set(corrected["before"].values()), dest
        readme = (dest / "README.md").read_text()
        assert cohort["content_hash"] in readme
        assert "Changed since the freeze" in readme and corrected["sop"] in readme, readme


def test_a_pinned_file_gone_from_the_store_is_refused_by_name(corrected: dict[str, Any], tmp_path: Path) -> None:
    commons, cohort = corrected["commons"], corrected["cohort"]
    store = ObjectStore(str(commons.server.store_dir))
    kept = tmp_path / "kept"
    store.copy_to(corrected["old"], kept)
    assert store.delete(corrected["old"])
    try:
        response = httpx.get(f"{commons.url}/api/v1/cohorts/{cohort['identifier']}/manifest",
                             headers=commons.headers("researcher"))
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "files_gone" and corrected["sop"] in error["message"]
        assert corrected["new"] not in response.text
    finally:
        store.put_file(kept)


def test_a_member_removed_from_the_index_keeps_its_frozen_file(corrected: dict[str, Any]) -> None:
    """What a resubmission without an instance does (IndexWriter.remove_instances): the record goes."""
    commons, cohort = corrected["commons"], corrected["cohort"]
    gone_sop, gone_object = next((s, o) for s, o in sorted(corrected["before"].items()) if s != corrected["sop"])
    engine = make_engine(commons.server.db_url)
    try:
        instance = node_tables()["instance"]
        with engine.begin() as connection:
            assert connection.execute(delete(instance).where(instance.c.sop_instance_uid == gone_sop)).rowcount == 1
    finally:
        engine.dispose()
    with _client(commons) as client:
        manifest = {row["sop_instance_uid"]: row for row in client.cohort_manifest(cohort["identifier"])}
    assert {sop: row["object_id"] for sop, row in manifest.items()} == corrected["before"]
    assert manifest[gone_sop]["series_uid"] and manifest[gone_sop]["case_submitter_id"]  # from the file's header
    response = httpx.get(f"{commons.url}/api/v1/objects/{gone_object}", headers=commons.headers("researcher"))
    assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == gone_object
