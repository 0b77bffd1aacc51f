"""Uploads: bad input answered clearly, a killed server loses nothing acknowledged, bounded memory."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from commons_fixtures import PROJECT, Commons

from radcommons.client import file_sha256
from radcommons.server.routes.uploads import BATCH_MEDIA_TYPE, _SpoolWriter
from radcommons.server.uploads import MAX_CHUNK
from radcommons.store.index import make_engine
from radcommons.store.index.accounts import audit_events
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
        response = _patch(http, sid, hashlib.sha256(b"huge").hexdigest(), b"h", 0, 2**70)  # was recorded as is
        assert response.status_code == 413 and "Upload-Length" in response.json()["error"]["message"]
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


def _batch_body(files: list[tuple[str, bytes]]) -> bytes:
    index = json.dumps({"files": [{"sha256": digest, "size": len(data)} for digest, data in files]}).encode()
    return index + b"\n" + b"".join(data for _, data in files)


def _post_batch(http, submission_id: int, body: bytes, content_type: str = BATCH_MEDIA_TYPE):
    return http.post(f"/submissions/{submission_id}/files/batch", content=body,
                     headers={"Content-Type": content_type})


def test_a_batch_stores_many_files_in_one_request(sqlite_commons: Commons, tmp_path: Path) -> None:
    """Each file of a batch is stored or refused on its own; a partial upload of one restarts from
    its first byte; every stored file is audited."""
    c = sqlite_commons
    client = c.client(chunk_size=CHUNK)
    submission = client.create_submission(PROJECT, "B-1")
    data = [os.urandom(1000 + n) for n in range(4)]
    digests = [hashlib.sha256(d).hexdigest() for d in data]
    engine = make_engine(c.db_url)
    try:
        uploads_before = sum(e["action"] == "file.upload" for e in audit_events(engine, 1000))
        with c.http() as http:
            assert _patch(http, submission.id, digests[1], data[1][:300], 0, len(data[1])).status_code == 200
            wrong = os.urandom(len(data[3]))  # the bytes of the fourth file changed after it was hashed
            response = _post_batch(http, submission.id, _batch_body(
                [(digests[0], data[0]), (digests[1], data[1]), (digests[2], data[2]), (digests[3], wrong)]))
            assert response.status_code == 200, response.text
            answers = response.json()["files"]
        assert [a["sha256"] for a in answers] == digests
        assert [a["complete"] for a in answers] == [True, True, True, False]
        assert answers[3]["error"]["code"] == "hash_mismatch" and answers[3]["offset"] == 0
        assert client.upload_states(submission.id, digests) == {d: (len(x), True) for d, x in zip(digests[:3], data)}
        store = ObjectStore(str(c.store_dir))
        assert all(store.get_bytes(d) == x for d, x in zip(digests[:3], data))
        uploads = [e for e in audit_events(engine, 1000) if e["action"] == "file.upload"]
        assert len(uploads) - uploads_before == 3
        assert {e["detail"]["sha256"] for e in uploads[:3]} == set(digests[:3])
    finally:
        engine.dispose()
    # the client: a batch of stored and new files; each file's result
    source = tmp_path / "fourth.bin"
    source.write_bytes(data[3])
    fifth = tmp_path / "fifth.bin"
    fifth.write_bytes(os.urandom(2000))
    results = client.upload_batch(submission.id, [(source, digests[3]), (fifth, file_sha256(fifth))])
    assert [(r.size, r.sent, r.already_present) for r in results] == [(len(data[3]), len(data[3]), False),
                                                                      (2000, 2000, False)]
    assert store.verify(digests[3]) and store.verify(file_sha256(fifth))


def test_bad_batches_are_explained_and_store_nothing(sqlite_commons: Commons) -> None:
    c = sqlite_commons
    submission = c.client().create_submission(PROJECT, "B-2")
    data = os.urandom(500)
    digest = hashlib.sha256(data).hexdigest()
    good = _batch_body([(digest, data)])
    with c.http() as http:
        response = _post_batch(http, submission.id, good, "application/octet-stream")
        assert response.status_code == 415 and BATCH_MEDIA_TYPE in response.json()["error"]["message"]
        response = _post_batch(http, submission.id, b'{"files": []}')  # no newline: no index
        assert response.status_code == 400 and "line of JSON" in response.json()["error"]["message"]
        response = _post_batch(http, submission.id, b"not json\n" + data)
        assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
        response = _post_batch(http, submission.id, b'{"files": [{"sha256": "NOTAHASH", "size": 1}]}\nx')
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "body.index.files.0.sha256"
        response = _post_batch(http, submission.id, _batch_body([(digest, data), (digest, data)]))
        assert response.status_code == 422 and "more than once" in response.json()["error"]["message"]
        index = {"files": [{"sha256": hashlib.sha256(bytes([n])).hexdigest(), "size": MAX_CHUNK // 2 + 1}
                           for n in range(2)]}
        response = _post_batch(http, submission.id, json.dumps(index).encode() + b"\n")
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
        response = _post_batch(http, submission.id, good + b"more")
        assert response.status_code == 400 and "nothing was stored" in response.json()["error"]["message"]
        assert http.post(f"/submissions/{submission.id}/files/states",
                         json={"sha256": [digest]}).json() == {"files": []}
    for user, status in (("other-site", 403), ("reader", 403), (None, 401)):
        with c.http(user) as http:
            assert _post_batch(http, submission.id, good).status_code == status
    assert "Traceback" not in (c.root / "server.log").read_text()


def test_a_batch_cut_short_keeps_what_arrived(sqlite_commons: Commons, tmp_path: Path) -> None:
    """The client goes away in the middle of a batch: the files that arrived whole are stored,
    the one cut short stays as a partial upload and resumes from its offset."""
    c = sqlite_commons
    client = c.client(chunk_size=CHUNK)
    submission = client.create_submission(PROJECT, "B-3")
    first, second = os.urandom(3000), os.urandom(200_000)
    digests = [hashlib.sha256(d).hexdigest() for d in (first, second)]
    body = _batch_body([(digests[0], first), (digests[1], second)])
    cut = len(body) - len(second) + 50_000
    with socket.create_connection(("127.0.0.1", c.port)) as conn:
        conn.sendall((f"POST /api/v1/submissions/{submission.id}/files/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {c.tokens['uploader']}\r\nContent-Type: {BATCH_MEDIA_TYPE}\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:cut])
        time.sleep(0.5)
    # the server stores the whole files once the body has ended, after the cut file's bytes are
    # in its spool: wait for both states, not only the cut file's offset
    expected = {digests[0]: (3000, True), digests[1]: (50_000, False)}
    deadline = time.monotonic() + 30
    while client.upload_states(submission.id, digests) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.upload_states(submission.id, digests) == expected
    source = tmp_path / "second.bin"
    source.write_bytes(second)
    assert client.upload_file(submission.id, source).sent == 200_000 - 50_000
    assert ObjectStore(str(c.store_dir)).verify(digests[1])


#: What a PATCH left under way has sent: one whole run, which the server writes to its spool
#: (:class:`_SpoolWriter` keeps less in memory, so the spool would stay empty and the wait for
#: its offset would only end at its deadline).
UNDER_WAY = _SpoolWriter.RUN


@contextlib.contextmanager
def _patch_under_way(c: Commons, submission_id: int, data: bytes) -> Iterator[socket.socket]:
    """A PATCH of all of ``data`` whose first :data:`UNDER_WAY` bytes are in the server's spool; the
    caller sends the rest on the connection yielded."""
    digest = hashlib.sha256(data).hexdigest()
    assert len(data) > UNDER_WAY
    with socket.create_connection(("127.0.0.1", c.port)) as conn:
        conn.sendall((f"PATCH /api/v1/submissions/{submission_id}/files/{digest} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nAuthorization: Bearer {c.tokens['uploader']}\r\n"
                      f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                      f"Upload-Length: {len(data)}\r\nContent-Length: {len(data)}\r\n\r\n").encode()
                     + data[:UNDER_WAY])
        client = c.client()
        deadline = time.monotonic() + 30
        while client.upload_offset(submission_id, digest) != (UNDER_WAY, False) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.upload_offset(submission_id, digest) == (UNDER_WAY, False)
        yield conn


def test_a_batch_leaves_a_file_another_request_is_writing(sqlite_commons: Commons) -> None:
    """A PATCH in progress holds its file: a batch that names it stores the others and says so."""
    c = sqlite_commons
    client = c.client(chunk_size=CHUNK)
    submission = client.create_submission(PROJECT, "B-4")
    busy, free = os.urandom(UNDER_WAY + 100_000), os.urandom(2000)
    digests = [hashlib.sha256(d).hexdigest() for d in (busy, free)]
    with _patch_under_way(c, submission.id, busy) as conn:
        with c.http() as http:
            answers = _post_batch(http, submission.id, _batch_body([(digests[0], busy), (digests[1], free)])).json()
        conn.sendall(busy[UNDER_WAY:])  # the PATCH ends: its file is stored
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    assert answers["files"][0]["error"]["code"] == "upload_in_progress" and not answers["files"][0]["complete"]
    assert answers["files"][1]["complete"]
    assert client.upload_states(submission.id, digests) == {digests[0]: (len(busy), True), digests[1]: (2000, True)}


def test_a_cancelled_upload_closes_its_spool_only_after_the_write_in_flight(tmp_path: Path) -> None:
    """A request cancelled while a run of its body is being written (the client went, the server
    stops) must not close the spool under the writing thread: the file closes when the run ends,
    with every byte of the run written. The spool here is a FIFO, so the run blocks until read."""
    fifo = tmp_path / "spool.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(reader, True)
    run = os.urandom(4 * _SpoolWriter.RUN)  # far more than a pipe holds: the write blocks
    handle = open(fifo, "wb")
    hasher = hashlib.sha256()
    writer = _SpoolWriter(handle, hasher)
    release, received = threading.Event(), bytearray()

    def read_the_run() -> None:
        release.wait(5)  # a writer that closes at once waits for the run: it is read after 5 s
        while len(received) < len(run) and (piece := os.read(reader, 1 << 20)):
            received.extend(piece)

    reading = threading.Thread(target=read_the_run)
    reading.start()

    async def cancelled_while_writing() -> None:
        await writer.write(run)  # starts the run on a worker thread
        waiting = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.2)
        waiting.cancel()
        try:
            await waiting
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(cancelled_while_writing())
        writer.close()
        closed_at_once = handle.closed
    finally:
        release.set()
        reading.join(30)
        os.close(reader)
    assert not closed_at_once, "the spool was closed while its run was still being written"
    assert bytes(received) == run
    deadline = time.monotonic() + 30
    while not handle.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handle.closed
    # The run hashes a piece after writing it, so the reader can have every byte a moment before
    # the hash does; the file closes only when the run has ended.
    assert hasher.hexdigest() == hashlib.sha256(run).hexdigest()


def test_a_put_waits_for_no_request_and_spoils_no_file(sqlite_commons: Commons) -> None:
    """A whole-file PUT used to delete the spool of a PATCH still writing it (that PATCH then failed
    with a 500), and requests of one file at once wrote into a spool while it moved into the store."""
    c = sqlite_commons
    client = c.client(chunk_size=CHUNK)
    submission = client.create_submission(PROJECT, "B-5")
    data = os.urandom(UNDER_WAY + 200_000)
    digest = hashlib.sha256(data).hexdigest()
    with _patch_under_way(c, submission.id, data) as conn:
        with c.http() as http:
            refused = http.put(f"/submissions/{submission.id}/files/{digest}", content=data)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "upload_in_progress", refused.text
        conn.sendall(data[UNDER_WAY:])
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    store = ObjectStore(str(c.store_dir))
    assert store.verify(digest)

    # the same files from several clients at once: each answer is stored or "in progress", never a 500
    from concurrent.futures import ThreadPoolExecutor

    files = [os.urandom(300_000) for _ in range(6)]
    body = _batch_body([(hashlib.sha256(f).hexdigest(), f) for f in files])
    big = os.urandom(8 * CHUNK)
    big_digest = hashlib.sha256(big).hexdigest()
    for attempt in range(3):
        sid = client.create_submission(PROJECT, f"B-6-{attempt}").id
        with c.http() as http, ThreadPoolExecutor(6) as pool:
            puts = [pool.submit(http.put, f"/submissions/{sid}/files/{big_digest}", content=big) for _ in range(3)]
            batches = [pool.submit(_post_batch, http, sid, body) for _ in range(3)]
            for response in [f.result() for f in puts]:
                assert response.status_code in (201, 409), response.text
            for response in [f.result() for f in batches]:
                assert response.status_code == 200, response.text
                for answer in response.json()["files"]:
                    assert answer["complete"] or answer["error"]["code"] == "upload_in_progress", answer
        for name in [big_digest, *(hashlib.sha256(f).hexdigest() for f in files)]:
            if store.exists(name):
                assert store.verify(name)
