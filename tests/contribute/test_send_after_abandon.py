"""A run whose submission the commons' operator abandoned (``radcommons admin submission abandon``)
before its commit: the next run starts a new submission and sends everything again, against a real
``radcommons serve``. The journal held every file of the abandoned one as sent, which made the rerun
take it for a delivery committed before and ask for a receipt it never had (404)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from contribute_support import RealCommons, make_request

from radcommons.client import CommonsClient
from radcommons.pipelines.contribute import prepare, send

PROJECT = "Send-13"


class Stop(Exception):
    pass


class NoCommit(httpx.HTTPTransport):
    """Everything reaches the server but the commit: the run ends just before it."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/commit"):
            raise Stop
        return super().handle_request(request)


def _client(commons: RealCommons, transport: httpx.BaseTransport | None = None) -> CommonsClient:
    return CommonsClient(commons.url, commons.token("SITE_C"), transport=transport, backoff=0.001)


def test_a_rerun_after_its_submission_was_abandoned_sends_a_new_one(commons: RealCommons, corpus: Path,
                                                                     tmp_path: Path, run_cli) -> None:
    request = make_request(corpus, "site_c", tmp_path / "state", project=PROJECT,
                           key=hashlib.sha256(PROJECT.encode()).digest())
    plan = prepare(request)
    with pytest.raises(Stop):
        send(plan, _client(commons, NoCommit()), server=commons.url)
    with _client(commons) as client:
        [abandoned] = client.list_submissions(PROJECT)
    assert abandoned.status == "open"
    ended = run_cli("admin", "submission", "abandon", str(abandoned.id), "--yes",
                    "--state-dir", str(commons.root / "state"), "--url", f"sqlite:///{commons.root / 'index.db'}",
                    env={"RADCOMMONS_OBJECT_STORE_URL": str(commons.root / "objects")})
    assert ended.returncode == 0, ended.stdout + ended.stderr

    delivery, receipt_path = send(plan, _client(commons), server=commons.url)
    assert not delivery.committed_before and delivery.submission.id != abandoned.id
    assert delivery.stats.sent == delivery.stats.files  # nothing of the abandoned one counts
    with _client(commons) as client:
        states = {s.id: s.status for s in client.list_submissions(PROJECT)}
    assert states == {abandoned.id: "abandoned", delivery.submission.id: "committed"}
    assert receipt_path.exists()
