"""An upload refused after its bytes arrived leaves nothing that nothing names: no object in the
store, no spool file. Through a real ``radcommons serve``, both backends; the files of the store
and of the spool are counted before and after."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from commons_fixtures import PROJECT, Commons, instances_of
from sqlalchemy import update

from radcommons.client import ManifestEntry
from radcommons.pipelines.submission import discard_unrecorded_objects
from radcommons.store.index import make_engine
from radcommons.store.index.schema import system_table
from radcommons.store.index.system import SUBMISSION_COMMITTED
from radcommons.store.objects import ObjectStore


def _files(commons: Commons) -> list[str]:
    """Every file of the object store and of the upload spools (not the store's tmp/, whose files
    the server removes when it starts)."""
    roots = (commons.store_dir, commons.root / "state" / "uploads")
    return sorted(str(p.relative_to(commons.root)) for root in roots for p in root.rglob("*")
                  if p.is_file() and "tmp" not in p.relative_to(root).parts)


def _open_submission(commons: Commons, deid_tree: Path, dataset: str) -> int:
    """A submission with one study declared and uploaded: ready to commit."""
    client = commons.client()
    submission = client.create_submission(PROJECT, dataset)
    instance = instances_of(deid_tree)[0]
    sent = client.upload_file(submission.id, instance.path)
    client.put_study_manifest(submission.id, instance.study_uid,
                              [ManifestEntry(sent.sha256, sent.size, instance.path.name)])
    return submission.id


def _send_slowly(commons: Commons, url: str, data: bytes, headers: dict[str, str], halfway: threading.Event,
                 go_on: threading.Event, answers: list[httpx.Response]) -> threading.Thread:
    """A request whose body stops halfway until ``go_on`` is set (in a thread)."""
    def body() -> Iterator[bytes]:
        yield data[: len(data) // 2]
        halfway.set()
        go_on.wait(30)
        yield data[len(data) // 2:]

    def send() -> None:
        with commons.http() as http:
            answers.append(http.request(headers.pop("method"), url, content=body(), headers=headers))
    thread = threading.Thread(target=send)
    thread.start()
    return thread


def _mark_committed(commons: Commons, submission_id: int) -> None:
    """What a commit does to the submission's row, without the commit's removal of its spools:
    the commit that lands after a file was stored and before it was recorded."""
    engine = make_engine(commons.db_url)
    try:
        with engine.begin() as conn:
            table = system_table("submission")
            conn.execute(update(table).where(table.c.id == submission_id).values(status=SUBMISSION_COMMITTED))
    finally:
        engine.dispose()


def _committed_while_sending(commons: Commons, submission_id: int, url: str, data: bytes,
                             headers: dict[str, str], *, spools_kept: bool = False) -> httpx.Response:
    """Send ``data``, and commit the submission while the body is halfway (``spools_kept``: only
    its row says so, :func:`_mark_committed`)."""
    halfway, go_on, answers = threading.Event(), threading.Event(), []
    thread = _send_slowly(commons, url, data, headers, halfway, go_on, answers)
    try:
        assert halfway.wait(30)
        if spools_kept:
            _mark_committed(commons, submission_id)
        else:
            commons.client().commit(submission_id)
    finally:
        go_on.set()
        thread.join(60)
    return answers[0]


def _upload_during_commit(commons: Commons, deid_tree: Path, spools_kept: bool) -> None:
    """PUT, PATCH and batch of new content, each to a submission committed while the body arrives:
    409 submission_closed, and the store and the spools hold the same files as before."""
    for how in ("PUT", "PATCH", "batch"):
        submission_id = _open_submission(commons, deid_tree, f"LATE_{how}_{int(spools_kept)}")
        data = os.urandom(3 * 1024 * 1024)  # new content: the store has no copy of it
        digest = hashlib.sha256(data).hexdigest()
        before = _files(commons)
        if how == "batch":
            index = f'{{"files": [{{"sha256": "{digest}", "size": {len(data)}}}]}}\n'.encode()
            answer = _committed_while_sending(
                commons, submission_id, f"/submissions/{submission_id}/files/batch", index + data,
                {"method": "POST", "Content-Type": "application/x.radcommons-file-batch",
                 "Content-Length": str(len(index) + len(data))}, spools_kept=spools_kept)
        else:
            headers = {"method": how, "Content-Length": str(len(data))}
            if how == "PATCH":
                headers |= {"Upload-Offset": "0", "Upload-Length": str(len(data))}
            answer = _committed_while_sending(commons, submission_id, f"/submissions/{submission_id}/files/{digest}",
                                              data, headers, spools_kept=spools_kept)
        assert answer.status_code == 409, (how, answer.text)
        assert answer.json()["error"]["code"] == "submission_closed", answer.text
        after = _files(commons)
        assert [f for f in after if f not in before] == [], how
        assert [f for f in before if f not in after] == [], how  # nothing another submission holds went


def test_a_file_whose_upload_ends_after_the_commit_leaves_no_spool(commons: Commons, deid_tree: Path) -> None:
    """The commit removed the spool under the request, which then failed (500, FileNotFoundError)."""
    _upload_during_commit(commons, deid_tree, spools_kept=False)


def test_a_file_stored_just_before_the_commit_and_refused_after_it_leaves_no_object(commons: Commons,
                                                                                   deid_tree: Path) -> None:
    """The file was stored, then refused (409 submission_closed) and left in the store, named by no
    submission and no instance."""
    _upload_during_commit(commons, deid_tree, spools_kept=True)


def test_an_object_a_submission_names_is_kept(commons: Commons, deid_tree: Path) -> None:
    """Objects are shared: only one nothing names goes, even when the refused request created it."""
    submission_id = _open_submission(commons, deid_tree, "NAMED")
    with commons.http() as http:
        named = http.post(f"/submissions/{submission_id}/files/states",
                          json={"sha256": [hashlib.sha256(instances_of(deid_tree)[0].path.read_bytes()).hexdigest()]})
    (held,) = named.json()["files"]
    store = ObjectStore(str(commons.store_dir))
    unnamed = store.put_bytes(os.urandom(1000)).digest
    engine = make_engine(commons.db_url)
    try:
        assert discard_unrecorded_objects(engine, store, [held["sha256"], unnamed]) == [unnamed]
    finally:
        engine.dispose()
    assert store.exists(held["sha256"]) and not store.exists(unnamed)


def test_bytes_that_do_not_hash_to_their_name_leave_no_object_and_no_spool(commons: Commons, deid_tree: Path) -> None:
    """PUT, PATCH in two chunks and batch of bytes named by another digest: refused (400, or the
    batch's hash_mismatch), and nothing of them stays in the spool or the store."""
    submission_id = _open_submission(commons, deid_tree, "MISNAMED")
    data, wrong = os.urandom(300_000), hashlib.sha256(b"something else").hexdigest()
    before = _files(commons)
    url = f"/submissions/{submission_id}/files/{wrong}"
    with commons.http() as http:
        assert http.put(url, content=data).json()["error"]["code"] == "hash_mismatch"
        half = len(data) // 2
        first = http.patch(url, content=data[:half], headers={"Upload-Offset": "0", "Upload-Length": str(len(data))})
        assert first.status_code == 200 and first.json()["offset"] == half, first.text
        assert _files(commons) != before  # the first chunk waits in the spool
        last = http.patch(url, content=data[half:], headers={"Upload-Offset": str(half),
                                                              "Upload-Length": str(len(data))})
        assert (last.status_code, last.json()["error"]["code"]) == (400, "hash_mismatch"), last.text
        index = f'{{"files": [{{"sha256": "{wrong}", "size": {len(data)}}}]}}\n'.encode()
        batch = http.post(f"/submissions/{submission_id}/files/batch", content=index + data,
                          headers={"Content-Type": "application/x.radcommons-file-batch"})
        assert batch.json()["files"][0]["error"]["code"] == "hash_mismatch", batch.text
    assert _files(commons) == before


def test_a_spool_removed_from_outside_while_its_bytes_arrive_is_told_and_sent_again(commons: Commons,
                                                                                   deid_tree: Path) -> None:
    """An operator's rm (or a temporary-file cleaner) under a writing request, the submission still open: the
    batch stored a file that was gone (500, FileNotFoundError) and PUT / PATCH acknowledged bytes no folder held.
    Each now answers 409 upload_interrupted, and the file sent again is stored."""
    submission_id = _open_submission(commons, deid_tree, "REMOVED_SPOOL")
    spools = commons.root / "state" / "uploads" / str(submission_id)
    for how in ("PUT", "PATCH", "batch"):
        data = os.urandom(3 * 1024 * 1024)
        digest = hashlib.sha256(data).hexdigest()
        if how == "batch":
            url = f"/submissions/{submission_id}/files/batch"
            index = f'{{"files": [{{"sha256": "{digest}", "size": {len(data)}}}]}}\n'.encode()
            body, headers = index + data, {"method": "POST", "Content-Type": "application/x.radcommons-file-batch",
                                           "Content-Length": str(len(index) + len(data))}
        else:
            url, body = f"/submissions/{submission_id}/files/{digest}", data
            headers = {"method": how, "Content-Length": str(len(data))}
            if how == "PATCH":
                headers |= {"Upload-Offset": "0", "Upload-Length": str(len(data))}
        halfway, go_on, answers = threading.Event(), threading.Event(), []
        thread = _send_slowly(commons, url, body, headers, halfway, go_on, answers)
        try:
            assert halfway.wait(30)
            deadline = time.monotonic() + 30
            while not (found := list(spools.glob(f"{digest}.*"))) and time.monotonic() < deadline:
                time.sleep(0.05)  # the first half is on its way: the server opens the spool when it comes
            assert found, how
            found[0].unlink()
        finally:
            go_on.set()
            thread.join(60)
        assert (answers[0].status_code, answers[0].json().get("error", {}).get("code")) == (409, "upload_interrupted"), \
            (how, answers[0].text)
        with commons.http() as http:
            again = http.put(f"/submissions/{submission_id}/files/{digest}", content=data)
        assert again.status_code == 201 and again.json()["complete"], (how, again.text)
