"""Steps 4-5 against a real ``radcommons serve``: parallel chunked upload, resume, nothing sent twice, receipt.

The client's requests go through :class:`CountingTransport`, the real HTTP transport with a
meter on it: it counts every file byte the uploader sends, so a test can prove that a resumed
upload sent nothing twice, and it can play a proxy in trouble (503) or a server from before
``files/batch`` (405) in front of the real server.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from contribute_support import RealCommons, make_request

from radcommons.client import CommonsClient
from radcommons.errors import UserError
from radcommons.pipelines.contribute import ContributeRequest, ContributionPlan, prepare, send
from radcommons.pipelines.contribute_upload import PackagedFile, UploadJournal, upload_jobs, upload_packages


class CountingTransport(httpx.BaseTransport):
    """The real transport to the server, counting file bytes (PATCH bodies and each member of a
    ``files/batch`` body) and requests (``"METHOD what"``). ``fail_every``: every n-th request
    carrying file bytes is answered 503 without reaching the server (retrying is the client's
    job). ``batches=False``: ``files/batch`` is answered 405, as a radcommons server without it does."""

    def __init__(self, *, fail_every: int = 0, batches: bool = True) -> None:
        self._server = httpx.HTTPTransport()
        self.fail_every, self.batches = fail_every, batches
        self.bytes_received: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._carrying = 0

    @staticmethod
    def _what(request: httpx.Request) -> str:
        parts = request.url.path.removeprefix("/api/v1/").split("/")
        if parts[0] == "submissions" and len(parts) >= 3:  # submissions/ID/files/SHA, .../files/batch, .../commit
            what = parts[2] if len(parts) == 3 or parts[3] not in ("batch", "states") else f"{parts[2]}/{parts[3]}"
        else:
            what = parts[0]
        return f"{request.method} {what}"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        what = self._what(request)
        self.requests[what] += 1
        if what in ("PATCH files", "POST files/batch"):
            if what == "POST files/batch" and not self.batches:
                return httpx.Response(405, json={"error": {"code": "method_not_allowed",
                                                           "message": "Method Not Allowed", "hint": ""}})
            self._carrying += 1
            if self.fail_every and self._carrying % self.fail_every == 0:
                return httpx.Response(503, json={"error": {"code": "unavailable", "message": "try again",
                                                           "hint": ""}})
            self._count(request)
        return self._server.handle_request(request)

    def _count(self, request: httpx.Request) -> None:
        body = request.read()
        if request.method == "PATCH":
            self.bytes_received[request.url.path.rsplit("/", 1)[1]] += len(body)
            return
        line, _, rest = body.partition(b"\n")
        for entry in json.loads(line)["files"]:
            self.bytes_received[entry["sha256"]] += len(rest[:entry["size"]])
            rest = rest[entry["size"]:]

    def close(self) -> None:
        self._server.close()


def _client(commons: RealCommons, site: str, transport: httpx.BaseTransport | None = None,
            chunk_size: int = 16 * 1024) -> CommonsClient:
    return CommonsClient(commons.url, commons.token(site), transport=transport, chunk_size=chunk_size, backoff=0.001)


def _request(corpus: Path, site: str, state: Path, project: str, **kwargs: bool) -> ContributeRequest:
    """The contribution of ``site`` to ``project``, de-identified with a key of the project's own:
    a UID belongs to one project, and the tests share one commons."""
    return make_request(corpus, site, state, project=project, key=hashlib.sha256(project.encode()).digest(), **kwargs)


def _files(plan: ContributionPlan) -> dict[str, int]:
    return {f.sha256: f.size for p in plan.packages for f in p.files}


def test_send_uploads_everything_once_and_keeps_the_receipt(commons: RealCommons, corpus: Path,
                                                            tmp_path: Path) -> None:
    plan = prepare(_request(corpus, "site_b", tmp_path / "state", "Send-1"))
    meter = CountingTransport(fail_every=7)  # transient 503s: the client retries
    delivery, receipt_path = send(plan, _client(commons, "SITE_B", meter), server=commons.url, workers=4)
    files = _files(plan)
    assert dict(meter.bytes_received) == files  # every byte exactly once
    assert delivery.stats.sent == len(files) and delivery.stats.bytes_sent == sum(files.values())
    receipt = delivery.receipt
    assert receipt.status == "committed" and receipt.counts["instances"]["indexed"] == len(files)
    assert {s["study_uid"] for s in receipt.studies} == {p.study_uid for p in plan.packages}
    assert {row["node"] for row in receipt.clinical} == set(plan.clinical)
    saved = json.loads(receipt_path.read_text())
    assert receipt_path.parent == plan.request.state_dir / "receipts"
    assert all(row["site_file"] for row in saved["clinical_rows"] if row["node"] != "imaging_study")


class Stop(Exception):
    pass


def test_killed_upload_resumes_without_sending_anything_twice(commons: RealCommons, corpus: Path,
                                                               tmp_path: Path) -> None:
    plan = prepare(_request(corpus, "site_c", tmp_path / "state", "Send-2"))
    meter = CountingTransport()
    client = _client(commons, "SITE_C", meter, chunk_size=4096)
    files = _files(plan)
    seen = []

    def stop_after_three(item, outcome) -> None:
        seen.append(item)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        send(plan, client, server=commons.url, workers=1, on_file=stop_after_three)
    first = sum(meter.bytes_received.values())
    assert 0 < first < sum(files.values())
    # A half-sent file: the server holds part of it (as after a kill in the middle of a chunk),
    # sent by another client so that the meter does not see it.
    with _client(commons, "SITE_C") as other:
        submission = other.create_submission("Send-2", plan.request.dataset)  # the open one, found again
        held = other.upload_states(submission.id, files)
        pending = next(f for p in plan.packages for f in p.files if not held.get(f.sha256, (0, False))[1])
        other._request("PATCH", f"/submissions/{submission.id}/files/{pending.sha256}",
                       content=pending.path.read_bytes()[:1000],
                       headers={"Upload-Offset": "0", "Upload-Length": str(pending.size),
                                "Content-Type": "application/offset+octet-stream"})
        assert other.upload_offset(submission.id, pending.sha256) == (1000, False)
    meter.bytes_received[pending.sha256] += 1000

    delivery, _ = send(plan, client, server=commons.url, workers=4)
    # The upload running when the run stopped finished first; everything else was sent now.
    assert delivery.stats.confirmed_before >= 3
    assert delivery.stats.sent == len(files) - delivery.stats.confirmed_before
    assert dict(meter.bytes_received) == files  # nothing twice, the partial file resumed at its offset
    assert meter.requests["POST submissions"] == 2 and delivery.submission.id == submission.id  # same submission
    # every file arrived; an ultrasound de-identified here without pixel review (review_pixels=False)
    # goes to quarantine at the gate
    instances = delivery.receipt.counts["instances"]
    assert instances["indexed"] + instances["quarantined"] == len(files) and not instances["rejected"]


def test_rerun_after_commit_sends_no_bytes_and_opens_nothing(commons: RealCommons, corpus: Path,
                                                             tmp_path: Path) -> None:
    plan = prepare(_request(corpus, "site_a", tmp_path / "state", "Send-3"))
    meter = CountingTransport()
    first, _ = send(plan, _client(commons, "SITE_A", meter), server=commons.url)
    before = sum(meter.bytes_received.values())
    assert before == sum(_files(plan).values()) and not first.committed_before
    delivery, receipt_path = send(plan, _client(commons, "SITE_A", meter), server=commons.url)
    assert sum(meter.bytes_received.values()) == before and meter.requests["POST submissions"] == 1
    assert delivery.committed_before and delivery.submission.id == first.submission.id
    assert delivery.stats.confirmed_before == delivery.stats.files and delivery.stats.sent == 0
    assert delivery.receipt.data == first.receipt.data and receipt_path.exists()


class CommitAnswerLost(CountingTransport):
    """The commit reaches the server, and its answer never reaches the client (the run is killed,
    or the network goes, at that moment)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self._what(request) == "POST commit":
            raise Stop
        return response


def test_a_run_ended_after_its_commit_keeps_that_submission_and_its_receipt(commons: RealCommons, corpus: Path,
                                                                            tmp_path: Path) -> None:
    """The rerun opened a second submission of the dataset, sent nothing, and kept its receipt
    ("unchanged" everywhere): the site never got the receipt of the submission that took the data."""
    plan = prepare(_request(corpus, "site_b", tmp_path / "state", "Send-7"))
    with pytest.raises(Stop):
        send(plan, _client(commons, "SITE_B", CommitAnswerLost()), server=commons.url)
    assert not (plan.request.state_dir / "receipts").exists()
    meter = CountingTransport()
    delivery, receipt_path = send(plan, _client(commons, "SITE_B", meter), server=commons.url)
    assert delivery.committed_before and not meter.bytes_received and not meter.requests["POST submissions"]
    with _client(commons, "SITE_B") as client:
        [submission] = client.list_submissions("Send-7")
    assert delivery.submission.id == submission.id and submission.status == "committed"
    saved = json.loads(receipt_path.read_text())
    assert saved["receipt"]["submission_id"] == submission.id
    assert {s["status"] for s in saved["receipt"]["studies"]} == {"accepted"}


def test_errors_send_nothing_unless_allow_partial(commons: RealCommons, corpus: Path, tmp_path: Path) -> None:
    plan = prepare(_request(corpus, "site_a", tmp_path / "state", "Send-4", corrections=True))
    assert plan.errors
    meter = CountingTransport()
    with pytest.raises(UserError, match="nothing was sent"):
        send(plan, _client(commons, "SITE_A", meter), server=commons.url)
    assert not meter.requests
    delivery, _ = send(plan, _client(commons, "SITE_A", meter), server=commons.url, allow_partial=True)
    assert delivery.receipt.status == "committed"
    assert dict(meter.bytes_received) == _files(plan)


def test_small_files_go_in_batches_and_a_server_without_them_gets_each_file(commons: RealCommons, corpus: Path,
                                                                           tmp_path: Path) -> None:
    plan = prepare(_request(corpus, "site_a", tmp_path / "state", "Send-5"))
    files = _files(plan)
    meter = CountingTransport()
    send(plan, _client(commons, "SITE_A", meter, chunk_size=64 * 1024), server=commons.url, workers=2)
    assert dict(meter.bytes_received) == files
    small = sum(1 for size in files.values() if size <= 64 * 1024)
    assert meter.requests["POST files/batch"] < small
    assert meter.requests["POST files/batch"] + meter.requests["PATCH files"] < len(files)
    old = CountingTransport(batches=False)
    again = prepare(_request(corpus, "site_a", tmp_path / "state-2", "Send-6"))
    delivery, _ = send(again, _client(commons, "SITE_A", old, chunk_size=64 * 1024), server=commons.url, workers=2)
    files = _files(again)
    assert dict(old.bytes_received) == files
    assert old.requests["POST files/batch"] <= 2  # tried by each of the 2 threads at most
    assert old.requests["PATCH files"] >= len(files) and delivery.stats.sent == len(files)


def test_upload_jobs_group_small_new_files_in_order() -> None:
    def item(name: str, size: int) -> PackagedFile:
        return PackagedFile(Path(name), name * 64, size, name)

    a, b, c, big, held, d = item("a", 40), item("b", 40), item("c", 40), item("e", 101), item("f", 10), item("d", 5)
    jobs = upload_jobs([a, b, c, big, held, d], {held.sha256: (5, False)}, batch_bytes=100)
    assert jobs == [[a, b], [big], [held], [c, d]]
    assert upload_jobs([], {}, 100) == []


def test_journal_survives_reopen(tmp_path: Path) -> None:
    with UploadJournal(tmp_path) as journal:
        journal.start("t", "D", 5)
        journal.confirm(5, "ab" * 32, 10)
    with UploadJournal(tmp_path) as journal:
        assert journal.dataset_for("t") == ("D", 5)
        assert journal.confirmed(5) == {"ab" * 32}
        assert upload_packages  # the uploader is importable from one place
