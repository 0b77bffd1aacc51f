"""A run whose submission the commons' operator abandoned (``radcommons admin submission abandon``)
before its commit: the next run starts a new submission and sends everything again, against a real
``radcommons serve``. The journal held every file of the abandoned one as sent, which made the rerun
take it for a delivery committed before and ask for a receipt it never had (404). A site ends its own
open submission through the client (``CommonsClient.abandon_submission``) against the same server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from contribute_support import RealCommons, make_request

from radcommons.client import CommonsClient, ConflictError, NotFoundError, PermissionDeniedError
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


def _client(commons: RealCommons, transport: httpx.BaseTransport | None = None, site: str = "SITE_C") -> CommonsClient:
    return CommonsClient(commons.url, commons.token(site), transport=transport, backoff=0.001)


def test_a_rerun_after_its_submission_was_abandoned_sends_a_new_one(commons: RealCommons, corpus: Path,
                                                                     tmp_path: Path, forked_cli) -> None:
    request = make_request(corpus, "site_c", tmp_path / "state", project=PROJECT,
                           key=hashlib.sha256(PROJECT.encode()).digest())
    plan = prepare(request)
    with pytest.raises(Stop):
        send(plan, _client(commons, NoCommit()), server=commons.url)
    with _client(commons) as client:
        [abandoned] = client.list_submissions(PROJECT)
    assert abandoned.status == "open"
    ended = forked_cli("admin", "submission", "abandon", str(abandoned.id), "--yes",
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


def test_the_client_abandons_its_own_open_submission(commons: RealCommons) -> None:
    """CommonsClient.abandon_submission ends an open submission over HTTP and answers the submission as the
    server now describes it; the server's refusals come as the client's error types: another site's submission
    (403), an unknown one (404), one already abandoned or committed (409 submission_closed)."""
    # SITE_B's submissions: the test above counts SITE_C's of the project
    with _client(commons, site="SITE_B") as site_b, _client(commons, site="SITE_A") as site_a:
        opened = site_b.create_submission(PROJECT, "abandoned-by-its-site")
        with pytest.raises(PermissionDeniedError, match="belongs to site SITE_B") as refused:
            site_a.abandon_submission(opened.id)
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
        ended = site_b.abandon_submission(opened.id)
        assert (ended.id, ended.status, ended.dataset) == (opened.id, "abandoned", "abandoned-by-its-site")
        assert site_b.get_submission(opened.id).status == "abandoned"
        with pytest.raises(ConflictError, match="already abandoned") as again:
            site_b.abandon_submission(opened.id)
        assert again.value.code == "submission_closed"
        committed = site_b.create_submission(PROJECT, "committed-first")
        assert site_b.commit(committed.id).submission_id == committed.id
        with pytest.raises(ConflictError, match="only an open submission can be abandoned") as closed:
            site_b.abandon_submission(committed.id)
        assert closed.value.code == "submission_closed"
        with pytest.raises(NotFoundError) as unknown:
            site_b.abandon_submission(opened.id + 1_000_000)
        assert unknown.value.code == "not_found"
