"""Uploads: bad input answered clearly, a killed server loses nothing acknowledged, bounded memory."""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

from commons_fixtures import PROJECT, Commons

from radcommons.client import file_sha256
from radcommons.store.objects import ObjectStore

CHUNK = 1024 * 1024


def _patch(http, submission_id: int, digest: str, data: bytes, offset: int, length: int):
    return http.patch(f"/submissions/{submission_id}/files/{digest}", content=data,
                      headers={"Upload-Offset": str(offset), "Upload-Length": str(length),
                               "Content-Type": "application/offset+octet-stream"})


def test_bad_input_is_explained(sqlite_commons: Commons) -> None:
    c = sqlite_commons
    with c.http() as http:
        response = http.post("/submissions", json={"dataset": "D"})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_error"
        assert "body.project" in [f["field"] for f in response.json()["error"]["fields"]]
        assert http.post("/submissions", content=b"{not json",
                         headers={"Content-Type": "application/json"}).status_code == 422
        assert http.get("/submissions/999").status_code == 404
        sid = http.post("/submissions", json={"project": PROJECT, "dataset": "D"}).json()["id"]
        data = b"x" * 1000
        digest = hashlib.sha256(data).hexdigest()
        assert http.head(f"/submissions/{sid}/files/{digest}").status_code == 404
        assert http.head(f"/submissions/{sid}/files/NOTAHASH").status_code == 422
        response = http.patch(f"/submissions/{sid}/files/{digest}", content=data[:10])
        assert response.status_code == 400 and response.json()["error"]["code"] == "bad_header"
        assert _patch(http, sid, digest, data[:500], 0, 1000).json()["offset"] == 500
        response = _patch(http, sid, digest, data[:500], 0, 1000)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "offset_mismatch"
        assert response.json()["error"]["expected_offset"] == 500
        response = _patch(http, sid, digest, data[500:] + b"extra", 500, 1000)
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
        wrong = hashlib.sha256(b"other").hexdigest()
        response = http.put(f"/submissions/{sid}/files/{wrong}", content=data)
        assert response.status_code == 400 and response.json()["error"]["code"] == "hash_mismatch"
        assert "upload it again" in response.json()["error"]["hint"]
        assert http.put(f"/submissions/{sid}/files/{digest}", content=data).status_code == 201
        response = http.post(f"/submissions/{sid}/clinical/patient", json=[])
        assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_node"
        response = http.post(f"/submissions/{sid}/clinical/case", json={"a": 1})
        assert response.status_code == 422
        response = http.put(f"/submissions/{sid}/studies/1.2.3", json={"files": [{"sha256": "x"}]})
        assert response.status_code == 422
        assert "Traceback" not in (c.root / "server.log").read_text()


def test_killed_server_loses_nothing(sqlite_commons: Commons, tmp_path: Path) -> None:
    c = sqlite_commons
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(5 * CHUNK))
    digest = file_sha256(source)
    data = source.read_bytes()
    client = c.client(chunk_size=CHUNK)
    submission = client.create_submission(PROJECT, "K-1")
    with c.http() as http:
        for offset in (0, CHUNK):
            assert _patch(http, submission.id, digest, data[offset:offset + CHUNK], offset, len(data)).status_code == 200
    c.kill()
    c.start()
    assert client.upload_offset(submission.id, digest) == (2 * CHUNK, False)
    result = client.upload_file(submission.id, source)
    assert result.sent == 3 * CHUNK
    store = ObjectStore(str(c.store_dir))
    assert store.exists(digest) and store.verify(digest)


def test_large_upload_keeps_memory_bounded(sqlite_commons: Commons, tmp_path: Path) -> None:
    c = sqlite_commons
    source = tmp_path / "large.bin"
    block = os.urandom(CHUNK)
    hasher = hashlib.sha256()
    with open(source, "wb") as out:
        for index in range(300):
            piece = block[:-4] + index.to_bytes(4, "big")
            hasher.update(piece)
            out.write(piece)
    client = c.client()
    submission = client.create_submission(PROJECT, "L-1")
    started = time.monotonic()
    result = client.upload_file(submission.id, source, sha256=hasher.hexdigest())
    assert result.sent == 300 * CHUNK and time.monotonic() - started < 60
    assert c.process is not None
    status = Path(f"/proc/{c.process.pid}/status").read_text()
    peak_kib = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    assert peak_kib < 500 * 1024, f"server peak RSS {peak_kib // 1024} MiB"
    assert ObjectStore(str(c.store_dir)).size(result.sha256) == 300 * CHUNK


def test_states_of_many_files_in_one_request(sqlite_commons: Commons, tmp_path: Path) -> None:
    """``files/states`` answers what HEAD answers, for many files at once; a client that
    trusts an out-of-date state is told where to resume."""
    c = sqlite_commons
    client = c.client(chunk_size=CHUNK)
    submission = client.create_submission(PROJECT, "S-1")
    whole, partial, absent = (os.urandom(CHUNK + n) for n in (1, 2, 3))
    digests = [hashlib.sha256(data).hexdigest() for data in (whole, partial, absent)]
    with c.http() as http:
        assert http.put(f"/submissions/{submission.id}/files/{digests[0]}", content=whole).status_code == 201
        assert _patch(http, submission.id, digests[1], partial[:1000], 0, len(partial)).status_code == 200
        states = client.upload_states(submission.id, [*digests, digests[0]])
        assert states == {digests[0]: (len(whole), True), digests[1]: (1000, False)}
        assert states == {d: client.upload_offset(submission.id, d) for d in digests[:2]}
        for body in ({"sha256": ["NOTAHASH"]}, {"sha256": [digests[0]] * 10_001}, {"files": []}):
            response = http.post(f"/submissions/{submission.id}/files/states", json=body)
            assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
        assert http.post("/submissions/999/files/states", json={"sha256": []}).status_code == 404
    for user, status in (("other-site", 403), ("reader", 403), (None, 401)):
        with c.http(user) as http:
            assert http.post(f"/submissions/{submission.id}/files/states", json={"sha256": digests}).status_code == status
    source = tmp_path / "partial.bin"
    source.write_bytes(partial)
    result = client.upload_file(submission.id, source, state=(0, False))  # stale: the server holds 1000 bytes
    assert result.sent == len(partial) - 1000 and not result.already_present
    client.commit(submission.id)
    with c.http() as http:
        response = http.post(f"/submissions/{submission.id}/files/states", json={"sha256": digests})
        assert response.status_code == 409 and response.json()["error"]["code"] == "submission_closed"
