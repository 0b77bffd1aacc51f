"""A hospital's network in trouble, against a real ``radcommons serve``: a token revoked in the middle
of an upload, a proxy on the way that refuses large requests. Each ends in a clear message or a
finished upload, and nothing acknowledged is sent twice.

The client's requests go through :class:`Meter`, the real HTTP transport with a meter on it (it
counts the file bytes that reach the server) and, for some tests, a proxy's body limit in front."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from contribute_support import RealCommons, make_request

from radcommons.client import AuthenticationError, CommonsClient, InvalidRequestError
from radcommons.pipelines.contribute import ContributionPlan, prepare, send
from radcommons.store.index import make_engine
from radcommons.store.index.accounts import create_token, list_tokens, revoke_token


class Meter(httpx.BaseTransport):
    """The real transport, counting the file bytes each request that reached the server carried
    (PATCH bodies, each member of a ``files/batch`` body). ``body_limit``: a proxy that answers
    413 (an HTML page, as nginx does) to a larger body, which never reaches the server.
    ``after_file_request(n)`` runs after the n-th file-carrying request reached the server."""

    def __init__(self, *, body_limit: int = 0, after_file_request: Callable[[int], None] | None = None) -> None:
        self._server = httpx.HTTPTransport()
        self.body_limit, self.after_file_request = body_limit, after_file_request
        self.bytes_received: Counter[str] = Counter()
        self.refused = 0
        self._carried = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        carrying = request.method == "PATCH" or request.url.path.endswith("/files/batch")
        if not carrying:
            return self._server.handle_request(request)
        body = request.read()
        if self.body_limit and len(body) > self.body_limit:
            self.refused += 1
            return httpx.Response(413, headers={"Content-Type": "text/html"},
                                  content=b"<html><center><h1>413 Request Entity Too Large</h1></center></html>")
        response = self._server.handle_request(httpx.Request(request.method, request.url, headers=request.headers,
                                                             content=body))
        if response.status_code < 300:
            if request.method == "PATCH":
                self.bytes_received[request.url.path.rsplit("/", 1)[1]] += len(body)
            else:
                line, _, rest = body.partition(b"\n")
                for entry in json.loads(line)["files"]:
                    self.bytes_received[entry["sha256"]] += len(rest[:entry["size"]])
                    rest = rest[entry["size"]:]
        self._carried += 1
        if self.after_file_request:
            self.after_file_request(self._carried)
        return response

    def close(self) -> None:
        self._server.close()


def _plan(corpus: Path, site: str, state: Path, project: str) -> ContributionPlan:
    """A key of the project's own: a UID belongs to one project, and the tests share one commons."""
    return prepare(make_request(corpus, site, state, project=project, key=hashlib.sha256(project.encode()).digest()))


def _files(plan: ContributionPlan) -> dict[str, int]:
    return {f.sha256: f.size for p in plan.packages for f in p.files}


def test_a_token_revoked_mid_upload_stops_clearly_and_a_new_one_resumes(commons: RealCommons, corpus: Path,
                                                                         tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{commons.root / 'index.db'}")
    try:
        first_token = create_token(engine, "site-a")[0]
        info = max(list_tokens(engine, "site-a"), key=lambda token: token.id)  # the one just made

        def revoke_after_twelve(carried: int) -> None:
            if carried == 12:
                revoke_token(engine, info.id)

        plan = _plan(corpus, "site_a", tmp_path / "state", "Send-8")
        meter = Meter(after_file_request=revoke_after_twelve)
        client = CommonsClient(commons.url, first_token, transport=meter, chunk_size=16 * 1024, backoff=0.001)
        with pytest.raises(AuthenticationError) as refused:
            send(plan, client, server=commons.url, workers=1)
        assert "revoked" in refused.value.message
        assert "new token" in refused.value.hint and "resumes where it stopped" in refused.value.hint
        sent_before = sum(meter.bytes_received.values())
        assert 0 < sent_before < sum(_files(plan).values())

        # a new token, and the same command again: the same submission, nothing sent twice
        client = CommonsClient(commons.url, create_token(engine, "site-a")[0], transport=meter,
                               chunk_size=16 * 1024, backoff=0.001)
        delivery, _ = send(plan, client, server=commons.url, workers=2)
    finally:
        engine.dispose()
    assert dict(meter.bytes_received) == _files(plan)
    assert delivery.stats.confirmed_before > 0 and delivery.receipt.status == "committed"
    instances = delivery.receipt.counts["instances"]  # site A's defects go to quarantine
    assert instances["indexed"] + instances["quarantined"] == len(_files(plan)) and not instances["rejected"]


def test_a_proxy_that_refuses_large_requests_gets_smaller_ones(commons: RealCommons, corpus: Path,
                                                              tmp_path: Path) -> None:
    """nginx refuses bodies over 1 MB unless told otherwise: every request of a file larger than the
    proxy's limit (and every batch) was a 413 that ended the run."""
    plan = _plan(corpus, "site_b", tmp_path / "state", "Send-9")
    files = _files(plan)
    assert max(files.values()) > 100_000  # a file that must go in chunks, and batches over the limit
    meter = Meter(body_limit=100_000)
    client = CommonsClient(commons.url, commons.token("SITE_B"), transport=meter, chunk_size=1024 * 1024,
                           backoff=0.001)
    delivery, _ = send(plan, client, server=commons.url, workers=2)
    assert meter.refused and client.chunk_size <= 100_000
    assert dict(meter.bytes_received) == files  # every byte once: nothing refused reached the server
    assert delivery.receipt.counts["instances"]["indexed"] == len(files)


def test_a_proxy_that_refuses_even_small_requests_is_named_with_the_fix(commons: RealCommons, corpus: Path,
                                                                       tmp_path: Path) -> None:
    plan = _plan(corpus, "site_b", tmp_path / "state", "Send-10")
    client = CommonsClient(commons.url, commons.token("SITE_B"), transport=Meter(body_limit=1000),
                           backoff=0.001)
    with pytest.raises(InvalidRequestError) as refused:
        send(plan, client, server=commons.url, workers=1)
    assert "a proxy between this site and the commons" in refused.value.message
    assert "client_max_body_size" in refused.value.hint and "resumes where it stopped" in refused.value.hint
