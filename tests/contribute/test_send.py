"""Steps 4-5 against an in-memory commons: parallel chunked upload, resume, nothing sent twice, receipt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from contribute_support import make_request
from fake_commons import FakeCommons

from radcommons.client import CommonsClient
from radcommons.errors import UserError
from radcommons.pipelines.contribute import prepare, send
from radcommons.pipelines.contribute_upload import PackagedFile, UploadJournal, upload_jobs, upload_packages


def _client(fake: FakeCommons, chunk_size: int = 16 * 1024) -> CommonsClient:
    return CommonsClient("http://commons.test", "token", transport=fake.transport(), chunk_size=chunk_size,
                         backoff=0.001)


class Stop(Exception):
    pass


def test_send_uploads_everything_once_and_keeps_the_receipt(corpus: Path, tmp_path: Path) -> None:
    plan = prepare(make_request(corpus, "site_b", tmp_path / "state"))
    fake = FakeCommons(fail_patch_every=7)  # transient 503s: the client retries
    delivery, receipt_path = send(plan, _client(fake), server="http://commons.test", workers=4)
    files = {f.sha256: f.size for p in plan.packages for f in p.files}
    assert set(fake.objects) == set(files)
    assert dict(fake.bytes_received) == files  # every byte exactly once
    assert delivery.stats.sent == len(files) and delivery.stats.bytes_sent == sum(files.values())
    assert set(fake.manifests[delivery.submission.id]) == {p.study_uid for p in plan.packages}
    assert fake.clinical[delivery.submission.id].keys() == plan.clinical.keys()
    assert delivery.receipt.status == "committed"
    saved = json.loads(receipt_path.read_text())
    assert receipt_path.parent == plan.request.state_dir / "receipts"
    assert all(row["site_file"] for row in saved["clinical_rows"] if row["node"] != "imaging_study")


def test_killed_upload_resumes_without_sending_anything_twice(corpus: Path, tmp_path: Path) -> None:
    plan = prepare(make_request(corpus, "site_c", tmp_path / "state"))
    fake = FakeCommons()
    client = _client(fake, chunk_size=4096)
    total = sum(len(p.files) for p in plan.packages)
    seen = []

    def stop_after_three(item, outcome) -> None:
        seen.append(item)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        send(plan, client, server="http://commons.test", workers=1, on_file=stop_after_three)
    first = sum(fake.bytes_received.values())
    assert 0 < first < sum(f.size for p in plan.packages for f in p.files)
    # A half-sent file: the server holds part of it (as after a kill in the middle of a chunk).
    pending = next(f for p in plan.packages for f in p.files if f.sha256 not in fake.objects)
    fake.partial[pending.sha256] = bytearray(pending.path.read_bytes()[:1000])
    fake.bytes_received[pending.sha256] += 1000

    delivery, _ = send(plan, client, server="http://commons.test", workers=4)
    # The upload running when the run stopped finished first; everything else was sent now.
    assert delivery.stats.confirmed_before >= 3
    assert delivery.stats.sent == total - delivery.stats.confirmed_before
    files = {f.sha256: f.size for p in plan.packages for f in p.files}
    assert dict(fake.bytes_received) == files  # nothing twice, the partial file resumed at its offset
    assert fake.requests["POST submissions"] == 2 and len(fake.submissions) == 1  # same submission resumed
    assert delivery.receipt.counts["instances"]["indexed"] == total


def test_rerun_after_commit_sends_no_bytes(corpus: Path, tmp_path: Path) -> None:
    plan = prepare(make_request(corpus, "site_a", tmp_path / "state"))
    fake = FakeCommons()
    send(plan, _client(fake), server="http://commons.test")
    before = sum(fake.bytes_received.values())
    delivery, _ = send(plan, _client(fake), server="http://commons.test")
    assert sum(fake.bytes_received.values()) == before
    assert delivery.stats.already_on_server == delivery.stats.files and delivery.stats.sent == 0
    assert delivery.submission.dataset == "SITE_A_TEST_2"  # a committed batch is never reopened


def test_errors_send_nothing_unless_allow_partial(corpus: Path, tmp_path: Path) -> None:
    plan = prepare(make_request(corpus, "site_a", tmp_path / "state", corrections=True))
    assert plan.errors
    fake = FakeCommons()
    with pytest.raises(UserError, match="nothing was sent"):
        send(plan, _client(fake), server="http://commons.test")
    assert not fake.requests
    delivery, _ = send(plan, _client(fake), server="http://commons.test", allow_partial=True)
    assert delivery.receipt.status == "committed"
    assert len(fake.objects) == sum(len(p.files) for p in plan.packages)


def test_small_files_go_in_batches_and_a_server_without_them_gets_each_file(corpus: Path, tmp_path: Path) -> None:
    plan = prepare(make_request(corpus, "site_a", tmp_path / "state"))
    files = {f.sha256: f.size for p in plan.packages for f in p.files}
    fake = FakeCommons()
    send(plan, _client(fake, chunk_size=64 * 1024), server="http://commons.test", workers=2)
    assert set(fake.objects) == set(files) and dict(fake.bytes_received) == files
    small = sum(1 for size in files.values() if size <= 64 * 1024)
    assert fake.requests["POST files"] < small and fake.requests["POST files"] + fake.requests["PATCH files"] < len(files)
    old = FakeCommons(batches=False)
    again = prepare(make_request(corpus, "site_a", tmp_path / "state-2"))
    delivery, _ = send(again, _client(old, chunk_size=64 * 1024), server="http://commons.test", workers=2)
    assert set(old.objects) == set(files) and dict(old.bytes_received) == files
    assert old.requests["POST files"] <= 1 + 2  # files/states; a batch tried by each of the 2 threads at most
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
