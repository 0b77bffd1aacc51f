"""A commons whose disk fills up while it receives an upload (a small tmpfs of the server's own)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from commons_fixtures import PROJECT, SITE
from serve_support import free_port

from radcommons.store.index import make_engine, upgrade
from radcommons.store.index.accounts import add_user, create_token


def _in_own_mount_namespace() -> bool:
    """Whether this machine lets a process mount a small file system of its own (unshare -m)."""
    return (shutil.which("unshare") is not None
            and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0)


@pytest.mark.skipif(not _in_own_mount_namespace(), reason="needs unshare -m (root) for a small tmpfs")
def test_an_upload_onto_a_full_disk_is_a_507_telling_the_contributor_to_ask_the_operators(tmp_path: Path) -> None:
    """The spool (and the object store) on a 1 MiB disk, a 3 MiB upload: the write failed with
    ENOSPC, answered 500 "the server failed on this request (a bug)". It is now 507
    insufficient_storage saying the commons has no room, to tell its operators and that a rerun
    resumes; the server's log names the file it could not write; the server goes on answering."""
    db_url = f"sqlite:///{tmp_path / 'index.db'}"  # the index is not on the small disk
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        add_user(engine, "uploader", "contributor", site_id=SITE, projects=[PROJECT])
        token = create_token(engine, "uploader")[0]
    finally:
        engine.dispose()
    disk, port = tmp_path / "disk", free_port()
    disk.mkdir()
    log = tmp_path / "server.log"
    env = {**os.environ, "RADCOMMONS_DATABASE_URL": db_url, "RADCOMMONS_OBJECT_STORE_URL": str(disk / "objects")}
    with open(log, "ab") as output:
        server = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@"', str(disk),
             sys.executable, "-m", "radcommons", "serve", "--port", str(port), "--state-dir", str(disk / "state"),
             "--log-level", "warning"], cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            deadline = time.monotonic() + 30
            while True:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            submission = http.post("/submissions", json={"project": PROJECT, "dataset": "FULL_DISK"}).json()["id"]
            data = os.urandom(3 << 20)
            digest = hashlib.sha256(data).hexdigest()
            answer = http.put(f"/submissions/{submission}/files/{digest}", content=data)
            assert answer.status_code == 507, answer.text
            error = answer.json()["error"]
            assert error["code"] == "insufficient_storage", error
            assert "no room" in error["message"] and "No space left on device" in error["message"], error
            assert "operators" in error["hint"] and "resumes" in error["hint"], error
            # what was received before the disk filled stays, to resume from
            offset = int(http.head(f"/submissions/{submission}/files/{digest}").headers["Upload-Offset"])
            assert 0 < offset < len(data)
            assert http.get(f"/submissions/{submission}").status_code == 200  # the server goes on answering
    finally:
        server.terminate()
        server.wait(30)
    text = log.read_text()
    assert f"no room to write {disk / 'state' / 'uploads'}" in text and digest in text, text
    assert "Traceback" not in text, text
