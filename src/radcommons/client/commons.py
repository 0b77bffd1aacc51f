"""A small typed client of the commons' submission API (docs/API.md), on httpx.

Used by ``radcommons contribute`` (site side) and the gateway. Every call retries with
exponential backoff on connection errors, 5xx and 429; uploads are chunked and resume from
the offset the server holds, so an interrupted run (either side) continues where it stopped.
Refusals raise :mod:`radcommons.client.errors` exceptions (all :class:`~radcommons.errors.UserError`)
carrying the server's message and hint.

Example::

    from radcommons.client import CommonsClient

    with CommonsClient.from_token_file("https://commons.example.org", "var/secrets/commons.token") as client:
        submission = client.create_submission("Open-A1", "SITE_A_20260301", site_id="SITE_A")
        digest = client.upload_file(submission.id, "deid/1.dcm").sha256
        client.put_study_manifest(submission.id, "2.25.1", [ManifestEntry(digest, 52124, "1.dcm")])
        receipt = client.commit(submission.id)
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx

from radcommons import __version__
from radcommons.digests import file_sha256
from radcommons.client.errors import (
    CommonsError,
    ConflictError,
    ConnectionFailedError,
    InvalidRequestError,
    ServerError,
    TokenFileError,
    error_for,
)
from radcommons.errors import UserError
from radcommons.inputs import read_input_text, warn_if_others_can_read

#: Bytes sent per PATCH or batch request (the server accepts up to 64 MiB): a radiograph of
#: about 10 MB goes in one request, so the server hashes it as it arrives.
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
#: Files per ``files/states`` request (the server answers up to 10,000).
STATES_PER_REQUEST = 5_000
#: Attempts per request before giving up (connection errors, 5xx, 429).
DEFAULT_RETRIES = 6
#: The media type of a batch upload (``POST .../files/batch``, docs/API.md).
BATCH_MEDIA_TYPE = "application/x.radcommons-file-batch"
#: The most files :meth:`CommonsClient.upload_batch` sends in one request (the server takes 1,000).
BATCH_FILES = 500
_RETRY_STATUSES = frozenset({429, 502, 503, 504, 500})
#: The smallest request body the client shrinks its chunks to when a proxy on the way answers 413.
MIN_CHUNK_SIZE = 64 * 1024
_MAX_BACKOFF = 30.0

#: ``progress(bytes_done, total_bytes)`` during an upload.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Submission:
    """A submission as the server describes it."""

    id: int
    project: str
    dataset: str
    site_id: str
    status: str
    created_by: str = ""
    created_at: str = ""
    committed_at: str | None = None
    files: int = 0
    studies: int = 0
    clinical_records: int = 0
    #: True when the call created it, False when an open one was returned (idempotent create).
    created: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], created: bool = False) -> Submission:
        known = {name for name in cls.__dataclass_fields__ if name != "created"}
        return cls(**{k: v for k, v in data.items() if k in known}, created=created)


@dataclass(frozen=True)
class ManifestEntry:
    """One instance of a study's package: its content hash, size and path inside the package."""

    sha256: str
    size: int
    path_in_package: str

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "path_in_package": self.path_in_package}


@dataclass(frozen=True)
class UploadResult:
    """The outcome of :meth:`CommonsClient.upload_file` (or of one file of :meth:`~CommonsClient.upload_batch`)."""

    sha256: str
    size: int
    #: Bytes actually sent by this call (0 when the server already had the content).
    sent: int
    #: The server already had the whole content (deduplicated or uploaded earlier).
    already_present: bool


@dataclass(frozen=True)
class ClinicalResult:
    """Per-row outcome of :meth:`CommonsClient.post_clinical`."""

    node: str
    accepted: int
    rejected: int
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rejected_rows(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row.get("status") == "rejected"]


#: A receipt's study status: not versioned, because the commons' latest version of the study was no
#: longer the one its manifest was built on (``base_version``); nothing of it was written.
CHANGED_SINCE_READ = "changed_since_read"
#: Commits a :meth:`CommonsClient.commit` tries while other clients change the submission meanwhile.
COMMIT_TRIES = 3


@dataclass(frozen=True)
class Receipt:
    """What a commit did, per study and per clinical row (the JSON of docs/API.md in ``data``)."""

    submission_id: int
    status: str
    counts: dict[str, Any]
    studies: list[dict[str, Any]]
    clinical: list[dict[str, Any]]
    data: dict[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Receipt:
        return cls(
            submission_id=int(data["submission_id"]), status=str(data.get("status", "")),
            counts=dict(data.get("counts") or {}), studies=list(data.get("studies") or []),
            clinical=list(data.get("clinical") or []), data=dict(data),
        )


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in ``path`` (first non-blank line), or :class:`TokenFileError`."""
    file = Path(path).expanduser()
    try:
        text = read_input_text(file, "utf-8-sig")  # an editor's byte order mark is no part of the token
    except UnicodeDecodeError:
        raise TokenFileError(f"token file {file} is not text",
                             "write the token the administrator gave you into it, as plain text") from None
    except FileNotFoundError:
        raise TokenFileError(f"token file {file} not found",
                             "ask the commons administrator for a token and save it there (chmod 600)") from None
    except OSError as error:
        hint = ("give the path of the file that holds the token, not of a folder" if file.is_dir()
                else "check its permissions")
        raise TokenFileError(f"cannot read token file {file}: {error.strerror or error}", hint) from None
    token = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not token:
        raise TokenFileError(f"token file {file} is empty", "write the token the administrator gave you into it")
    if token.lower().startswith("bearer "):  # copied with the header's scheme
        raise TokenFileError(f"token file {file} starts with 'Bearer '",
                             "write the token alone into it, without 'Bearer ' (the client adds it)")
    if not _is_token_text(token):
        raise TokenFileError(f"token file {file} holds characters no token has",
                             "write the token the administrator gave you into it, alone on its line")
    warn_if_others_can_read(file, "token file")
    return token


def _is_token_text(token: str) -> bool:
    """True when ``token`` can go in an ``Authorization`` header as one word: printable ASCII without a
    space (httpx cannot encode anything else, and the server reads only up to a space)."""
    return token.isascii() and token.isprintable() and " " not in token


def checked_token(token: str) -> str:
    """``token`` as given to a client, less the white space around it (a newline kept from
    ``open(path).read()``), checked as :func:`read_token_file` checks a file's. Without this a
    newline made every request fail as "cannot reach the commons" after all retries, and a
    non-ASCII character raised a bare UnicodeEncodeError from httpx."""
    stripped = token.strip()
    if not stripped:
        raise UserError("the token given to the client is empty",
                        "pass the token the administrator gave you, or let the client read its file: "
                        "radcommons.Client(url, token_file=PATH)")
    if not _is_token_text(stripped):
        raise UserError("the token given to the client holds characters no token has (white space inside it, "
                        "or a character that is not printable ASCII)",
                        "pass the token exactly as the administrator gave it, or let the client read its file: "
                        "radcommons.Client(url, token_file=PATH)")
    return stripped


class CommonsClient:
    """Client of one commons server.

    Args:
        url: the server's base URL (``http://127.0.0.1:8000``); ``/api/v1`` is added.
        token: the bearer token (never logged or shown in ``repr``); white space around it is dropped,
            and one that no token can be is refused at once (:class:`~radcommons.errors.UserError`).
        timeout: seconds per request (connect, read, write).
        retries: attempts per request on connection errors, 5xx and 429.
        backoff: first wait between attempts in seconds; doubles each time (with jitter, max 30 s).
        chunk_size: bytes per upload request.
        transport: an httpx transport (tests).
    """

    def __init__(self, url: str, token: str, *, timeout: float = 120.0, retries: int = DEFAULT_RETRIES,
                 backoff: float = 0.5, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 transport: httpx.BaseTransport | None = None) -> None:
        if "@" in urlsplit(url).netloc:  # basic auth would replace the bearer token, and errors echo the URL
            raise UserError("the commons URL holds a user name or password (user:secret@host)",
                            "give the URL without them: the token authenticates (the URL is not shown here)")
        token = checked_token(token) if token else token  # "": the research client's anonymous caller
        self.url = url.rstrip("/")
        self.retries = max(1, retries)
        self.backoff = backoff
        self.chunk_size = chunk_size
        self._batches = True  # until a server without files/batch says 404 or 405
        self._http = httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"radcommons/{__version__}"},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_token_file(cls, url: str, token_file: str | os.PathLike[str], **kwargs: Any) -> CommonsClient:
        """A client whose token is read from ``token_file``."""
        return cls(url, read_token_file(token_file), **kwargs)

    def __repr__(self) -> str:
        return f"CommonsClient({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CommonsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _sleep(self, attempt: int, response: httpx.Response | None = None) -> None:
        wait = min(_MAX_BACKOFF, self.backoff * (2**attempt)) * (0.5 + random.random() / 2)
        if response is not None and response.headers.get("Retry-After", "").isdigit():
            wait = min(_MAX_BACKOFF, float(response.headers["Retry-After"]))
        time.sleep(wait)

    def _request(self, method: str, path: str, *, retry: bool = True, ok: Sequence[int] = (),
                 **kwargs: Any) -> httpx.Response:
        """Send a request, retrying transient failures; raise the mapped error on a refusal.

        Statuses in ``ok`` are returned even when they are errors (e.g. 404 for HEAD).
        """
        attempts = self.retries if retry else 1
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                last = error
                if attempt + 1 < attempts:
                    self._sleep(attempt)
                continue
            if response.status_code in _RETRY_STATUSES and response.status_code not in ok:
                last = _to_error(response)
                if attempt + 1 < attempts:
                    self._sleep(attempt, response)
                continue
            if response.status_code >= 400 and response.status_code not in ok:
                raise _to_error(response)
            return response
        if isinstance(last, CommonsError):
            raise last
        raise ConnectionFailedError(
            f"cannot reach the commons at {self.url}: {type(last).__name__}: {last}",
            "check the URL and the network; the run can be repeated, it resumes where it stopped",
        )

    # ------------------------------------------------------------------ general

    def health(self) -> dict[str, Any]:
        """The server's health (``status``, ``version``, ``database``, ``object_store``); no token needed."""
        response = self._request("GET", "/health", ok=(503,))
        return response.json()

    def whoami(self) -> dict[str, Any]:
        """The token's user: name, role, site_id, projects, token expiry."""
        return self._request("GET", "/whoami").json()

    # ------------------------------------------------------------------ submissions

    def create_submission(self, project: str, dataset: str, site_id: str | None = None) -> Submission:
        """Create the submission of ``dataset`` to ``project``, or return the open one (idempotent)."""
        body: dict[str, Any] = {"project": project, "dataset": dataset}
        if site_id:
            body["site_id"] = site_id
        response = self._request("POST", "/submissions", json=body)
        return Submission.from_json(response.json(), created=response.status_code == 201)

    def get_submission(self, submission_id: int) -> Submission:
        return Submission.from_json(self._request("GET", f"/submissions/{submission_id}").json())

    def list_submissions(self, project: str | None = None) -> list[Submission]:
        params = {"project": project} if project else None
        return [Submission.from_json(s) for s in self._request("GET", "/submissions", params=params).json()]

    def upload_offset(self, submission_id: int, sha256: str) -> tuple[int, bool]:
        """(bytes the server holds, whether the content is complete); (0, False) when it has nothing."""
        response = self._request("HEAD", f"/submissions/{submission_id}/files/{sha256}", ok=(404,))
        if response.status_code == 404:
            return 0, False
        offset = int(response.headers.get("Upload-Offset", "0"))
        return offset, response.headers.get("Upload-Complete", "").lower() == "true"

    def upload_states(self, submission_id: int, digests: Iterable[str]) -> dict[str, tuple[int, bool]]:
        """:meth:`upload_offset` of many files, a few thousand per request; only the files the
        server holds anything of are in the answer."""
        states: dict[str, tuple[int, bool]] = {}
        wanted = list(dict.fromkeys(digests))
        for start in range(0, len(wanted), STATES_PER_REQUEST):
            body = self._request("POST", f"/submissions/{submission_id}/files/states",
                                 json={"sha256": wanted[start:start + STATES_PER_REQUEST]}).json()
            states.update((f["sha256"], (int(f["offset"]), bool(f["complete"]))) for f in body["files"])
        return states

    def upload_file(self, submission_id: int, path: str | os.PathLike[str], sha256: str | None = None,
                    progress: Progress | None = None, state: tuple[int, bool] | None = None) -> UploadResult:
        """Upload one file in chunks, resuming from what the server already holds.

        ``sha256`` saves hashing the file again when the caller knows it. A file the commons
        already stores is not sent at all (deduplication). ``state`` is what the server held
        of it a moment ago (from :meth:`upload_states`), which saves asking again; were it
        out of date, the server says where to resume.
        """
        source = Path(path)
        size = source.stat().st_size
        digest = sha256 or file_sha256(source)
        offset, complete = state if state is not None else self.upload_offset(submission_id, digest)
        if complete:
            if progress:
                progress(size, size)
            return UploadResult(digest, size, 0, True)
        sent = 0
        failures = 0
        url = f"/submissions/{submission_id}/files/{digest}"
        with open(source, "rb") as handle:
            while True:
                if offset > size:
                    offset = 0  # the server holds more than the file: it changed; start over
                length = min(self.chunk_size, size - offset)
                # The chunk is streamed from the file in small pieces, never held whole: httpx keeps
                # each request alive in a reference cycle until the garbage collector runs, so a
                # bytes body would keep every chunk sent so far in memory until then.
                headers = {"Upload-Offset": str(offset), "Upload-Length": str(size),
                           "Content-Length": str(length), "Content-Type": "application/offset+octet-stream"}
                try:
                    response = self._request("PATCH", url, retry=False, headers=headers,
                                             content=_file_range(handle, offset, length))
                except ConflictError as error:
                    expected = error.detail.get("expected_offset")
                    if error.code == "offset_mismatch" and isinstance(expected, int):
                        offset = expected
                        continue
                    if error.code == "upload_in_progress" and failures + 1 < self.retries:
                        failures += 1
                        self._sleep(failures)
                        offset, complete = self.upload_offset(submission_id, digest)
                        continue
                    raise
                except InvalidRequestError as error:
                    if not self._shrink_after(error, length):
                        raise
                    continue  # the proxy let nothing through: the same offset, a smaller chunk
                except (ServerError, ConnectionFailedError):
                    failures += 1
                    if failures >= self.retries:
                        raise
                    self._sleep(failures)
                    # The chunk may have been partly written: ask where the server is.
                    offset, complete = self.upload_offset(submission_id, digest)
                    if complete:
                        break
                    continue
                failures = 0
                body = response.json()
                sent += length
                offset = int(body.get("offset", offset + length))
                if progress:
                    progress(offset, size)
                if body.get("complete"):
                    break
                if not length:
                    raise CommonsError(f"the server did not complete the upload of {source} at its end",
                                       "retry; if it persists, report it to the commons operators")
        return UploadResult(digest, size, sent, False)

    def upload_batch(self, submission_id: int,
                     files: Sequence[tuple[str | os.PathLike[str], str]]) -> list[UploadResult]:
        """Upload small files whole, in one request: ``(path, sha256)`` each, whose bytes together
        fit in one chunk (``chunk_size``) and that the server held nothing of a moment ago.

        Saves a request, a sync and an audit transaction per file. A file the batch did not
        store (the connection failed, another request was uploading it, its bytes changed) is
        then sent by :meth:`upload_file`, which resumes from what the server holds; so is
        every file, to a server without batch uploads.
        """
        items = [(Path(path), digest, Path(path).stat().st_size) for path, digest in files]
        index = json.dumps({"files": [{"sha256": digest, "size": size} for _, digest, size in items]}).encode() + b"\n"
        stored: set[str] = set()
        # Over the limits (files grown since they were grouped, say), every file goes alone.
        fits = len(items) <= BATCH_FILES and sum(size for *_, size in items) <= self.chunk_size
        if self._batches and items and fits:
            headers = {"Content-Type": BATCH_MEDIA_TYPE,
                       "Content-Length": str(len(index) + sum(size for *_, size in items))}
            try:
                response = self._request("POST", f"/submissions/{submission_id}/files/batch", retry=False,
                                         headers=headers, content=_batch_body(index, items))
                stored = {f["sha256"] for f in response.json()["files"] if f.get("complete")}
            except CommonsError as error:
                if error.status in (404, 405) and error.code in ("not_found", "method_not_allowed"):
                    self._batches = False
                elif isinstance(error, InvalidRequestError):
                    # each file alone then, in chunks that pass (or a clear error if none does)
                    if not self._shrink_after(error, int(headers["Content-Length"])):
                        raise
                elif not isinstance(error, (ServerError, ConnectionFailedError)):
                    raise
        return [UploadResult(digest, size, size, False) if digest in stored
                else self.upload_file(submission_id, path, sha256=digest)
                for path, digest, size in items]

    def _shrink_after(self, error: InvalidRequestError, sent: int) -> bool:
        """After a 413 that a proxy on the way answered (not the commons: its refusals carry a
        JSON error of their own), send smaller requests from now on; True when they may pass.

        A site behind a proxy with a small body limit (nginx allows 1 MB unless told otherwise)
        had every request of a file of more than that refused, and the run failed on the first
        one; it now goes on in smaller chunks, and only a proxy that refuses even
        :data:`MIN_CHUNK_SIZE` bytes ends the run, with what to ask of the operators."""
        if error.status != 413 or error.code != "http_413":
            return False
        if sent <= MIN_CHUNK_SIZE:
            raise InvalidRequestError(
                f"a proxy between this site and the commons at {self.url} refuses requests of {sent} bytes "
                "(HTTP 413, request entity too large)",
                f"ask the commons' operators to let requests of {DEFAULT_CHUNK_SIZE // (1024 * 1024)} MiB through "
                "(nginx: client_max_body_size 64m); then run the same command again: it resumes where it stopped",
                status=413, code=error.code, detail=error.detail) from error
        self.chunk_size = max(MIN_CHUNK_SIZE, min(self.chunk_size, sent // 2))
        return True

    def put_study_manifest(self, submission_id: int, study_uid: str,
                           files: Iterable[ManifestEntry | Mapping[str, Any]],
                           base_version: int | None = None) -> dict[str, Any]:
        """Declare a study's instances (the whole study); returns ``{"files": n, "missing": [...]}``.

        ``base_version``: the study version the manifest was built on (0: the commons had none);
        the commit then versions the study only if that is still its latest version, else the
        study's receipt entry says :data:`CHANGED_SINCE_READ`. None: no such check."""
        entries = [f.to_json() if isinstance(f, ManifestEntry) else dict(f) for f in files]
        body: dict[str, Any] = {"files": entries}
        if base_version is not None:
            body["base_version"] = base_version
        return self._request("PUT", f"/submissions/{submission_id}/studies/{study_uid}", json=body).json()

    def post_clinical(self, submission_id: int, node: str, records: Sequence[Mapping[str, Any]],
                      first_row: int = 1) -> ClinicalResult:
        """Send clinical records of one node type; each row is accepted or rejected with reasons."""
        body = self._request("POST", f"/submissions/{submission_id}/clinical/{node}",
                             params={"first_row": first_row}, json=[dict(r) for r in records]).json()
        return ClinicalResult(body["node"], int(body["accepted"]), int(body["rejected"]), list(body["rows"]))

    def commit(self, submission_id: int) -> Receipt:
        """Verify, index or quarantine everything and return the receipt (safe to repeat).

        Another client that declared files or posted records while the commit read the submission
        makes the server roll the commit back (409 ``submission_changed``): committed again, it takes
        them in; :data:`COMMIT_TRIES` in all."""
        for tries_left in range(COMMIT_TRIES - 1, -1, -1):
            try:
                return Receipt.from_json(self._request("POST", f"/submissions/{submission_id}/commit").json())
            except ConflictError as error:
                if error.code != "submission_changed" or not tries_left:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def abandon_submission(self, submission_id: int) -> Submission:
        """End an open submission that will never be committed (``POST .../abandon``, docs/API.md): the server
        drops its partial uploads and refuses anything later sent to it. Returns the submission as the server
        now describes it (``status`` ``abandoned``). :class:`PermissionDeniedError` for another site's submission
        (or, for a curator, one it did not create), :class:`NotFoundError` for an unknown one,
        :class:`ConflictError` (``submission_closed``) for one committed or abandoned before.

        Retried as every call is: a retry after an answer lost on the way is told the submission is "already
        abandoned" (``submission_closed``), which the caller may take as done."""
        return Submission.from_json(self._request("POST", f"/submissions/{submission_id}/abandon").json())

    def receipt(self, submission_id: int) -> Receipt:
        """The receipt of a committed submission (:class:`NotFoundError` before the commit)."""
        return Receipt.from_json(self._request("GET", f"/submissions/{submission_id}/receipt").json())

    def study_versions(self, study_uid: str, project: str) -> list[dict[str, Any]]:
        """A study's history, oldest version first."""
        return self._request("GET", f"/studies/{study_uid}/versions", params={"project": project}).json()

    # ------------------------------------------------------------------ quarantine (curators)

    def quarantine(self, project: str | None = None, status: str = "held") -> list[dict[str, Any]]:
        params: dict[str, str] = {"status": status}
        if project:
            params["project"] = project
        return self._request("GET", "/quarantine", params=params).json()

    def release(self, quarantine_id: int) -> dict[str, Any]:
        return self._request("POST", f"/quarantine/{quarantine_id}/release").json()

    def delete_quarantined(self, quarantine_id: int) -> dict[str, Any]:
        return self._request("DELETE", f"/quarantine/{quarantine_id}").json()


def _file_range(handle: BinaryIO, offset: int, length: int, piece: int = 1024 * 1024) -> Iterator[bytes]:
    """``length`` bytes of ``handle`` from ``offset``, in pieces of at most ``piece`` bytes.

    A file that shrank meanwhile yields fewer bytes than the request's Content-Length: httpx
    then fails the request, and the upload asks the server where to resume.
    """
    handle.seek(offset)
    left = length
    while left > 0:
        data = handle.read(min(piece, left))
        if not data:
            return
        left -= len(data)
        yield data


def _batch_body(index: bytes, items: Sequence[tuple[Path, str, int]]) -> Iterator[bytes]:
    """A ``files/batch`` body: the index line, then each file's bytes, streamed from the files."""
    yield index
    for path, _, size in items:
        with open(path, "rb") as handle:
            yield from _file_range(handle, 0, size)


def _to_error(response: httpx.Response) -> CommonsError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_for(response.status_code, body, str(response.request.url))


__all__ = [
    "ClinicalResult",
    "CommonsClient",
    "DEFAULT_CHUNK_SIZE",
    "ManifestEntry",
    "Progress",
    "Receipt",
    "Submission",
    "UploadResult",
    "file_sha256",
    "read_token_file",
]
