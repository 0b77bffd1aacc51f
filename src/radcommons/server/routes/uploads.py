"""Resumable, chunked file uploads (tus-like, named by sha256); see :mod:`radcommons.server.uploads`."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, StringConstraints, ValidationError
from starlette.requests import ClientDisconnect

from radcommons.inputs import MAX_FILE_SIZE
from radcommons.pipelines import submission as pipeline
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.errors import ApiError
from radcommons.server.routes.params import RowId
from radcommons.server.uploads import MAX_CHUNK, Busy, UploadState, discarded
from radcommons.store.index.accounts import Principal
from radcommons.store.objects import StoredObject

router = APIRouter(tags=["uploads"])

SHA256_PATTERN = r"^[0-9a-f]{64}$"
Sha256 = Path(pattern=SHA256_PATTERN, description="lowercase hex SHA-256 of the whole file")
#: Files one ``files/states`` request may ask about.
MAX_STATES = 10_000
#: The media type of a ``files/batch`` body: a line of JSON naming the files, then their bytes.
BATCH_MEDIA_TYPE = "application/x.radcommons-file-batch"
#: Files one ``files/batch`` request may carry (their bytes together at most MAX_CHUNK).
MAX_BATCH_FILES = 1_000
#: The longest first line (the index) of a ``files/batch`` body.
MAX_BATCH_INDEX = 1024 * 1024


class StatesQuery(BaseModel):
    sha256: list[Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]] = Field(
        max_length=MAX_STATES, description=f"the files asked about (at most {MAX_STATES})")


class BatchFile(BaseModel):
    sha256: Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]
    size: int = Field(ge=0, le=MAX_CHUNK, description="bytes of the file that follow in the body")


class BatchIndex(BaseModel):
    files: list[BatchFile] = Field(min_length=1, max_length=MAX_BATCH_FILES,
                                   description="the files of the body, in the order their bytes follow")


def _headers(state: UploadState) -> dict[str, str]:
    headers = {"Upload-Offset": str(state.offset), "Tus-Resumable": "1.0.0", "Cache-Control": "no-store"}
    if state.length is not None:
        headers["Upload-Length"] = str(state.length)
    if state.complete:
        headers["Upload-Complete"] = "true"
    return headers


def _body(sha256: str, state: UploadState) -> dict[str, Any]:
    return {"sha256": sha256, "offset": state.offset, "length": state.length, "complete": state.complete}


def _refused(sha256: str, state: UploadState, code: str, message: str, hint: str) -> dict[str, Any]:
    """A file of a batch that was not stored: its state and why."""
    return {**_body(sha256, state), "error": {"code": code, "message": message, "hint": hint}}


def _int_header(request: Request, name: str, required: bool = True) -> int | None:
    value = request.headers.get(name)
    if value is None:
        if required:
            raise ApiError(400, "bad_header", f"the {name} header is missing",
                           f"send {name}: <bytes> (see docs/API.md, uploads)")
        return None
    if not value.strip().isdigit():
        raise ApiError(400, "bad_header", f"the {name} header must be a non-negative integer, got {value!r}",
                       "send the number of bytes")
    number = int(value)
    if number > MAX_FILE_SIZE:
        raise ApiError(413, "too_large", f"the {name} header says {number} bytes: over the limit of {MAX_FILE_SIZE}",
                       f"files of at most {MAX_FILE_SIZE} bytes are accepted")
    return number


#: The threads that write and hash upload bodies (both release the GIL while they work).
_SPOOL_WRITERS = ThreadPoolExecutor(thread_name_prefix="spool-writer")


class _SpoolWriter:
    """Writes a request body into a spool file, and hashes it, off the event loop.

    The event loop only gathers the body's pieces (uvicorn hands them over 64 KiB at a time) into
    runs of :attr:`RUN` bytes; each run is written and hashed on a worker thread while the next
    one arrives, so one upload's disk writes and SHA-256 no longer hold up every other request's
    reading. One run is in flight at a time: the bytes land in order.
    """

    RUN = 1024 * 1024

    def __init__(self, handle: BinaryIO, hasher: Any | None) -> None:
        self._handle = handle
        self._hasher = hasher
        self._pieces: list[bytes] = []
        self._gathered = 0
        # The thread's own future, not an asyncio wrapper: a cancelled wait leaves it running,
        # and close() must know that.
        self._in_flight: Future[None] | None = None
        self._failed = False

    @property
    def discarded(self) -> bool:
        """Whether the spool was removed while this request wrote it (:func:`discarded`)."""
        return discarded(self._handle)

    async def write(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self._gathered += len(piece)
        if self._gathered >= self.RUN:
            await self._send_run()

    async def drain(self) -> None:
        """Write what was gathered and wait: then the file holds every piece given, in the page cache."""
        if self._pieces:
            await self._send_run()
        await self._wait()

    def close(self) -> None:
        """Close the file now, or once a run still being written ends (the request was cancelled
        while it waited): never under a worker thread's feet."""
        if self._in_flight is not None and not self._in_flight.done():
            self._in_flight.add_done_callback(lambda _: self._close_handle())
        else:
            self._close_handle()

    def _close_handle(self) -> None:
        try:
            self._handle.close()
        except OSError:
            if not self._failed:
                raise
            # a write failed (a full disk): its bytes, still buffered, are dropped; the file is
            # closed anyway and keeps what was written, to resume from

    async def _wait(self) -> None:
        if self._in_flight is not None:
            await asyncio.wrap_future(self._in_flight)  # raises what the run raised (a full disk)
            self._in_flight = None

    async def _send_run(self) -> None:
        await self._wait()
        run, self._pieces, self._gathered = self._pieces, [], 0
        self._in_flight = _SPOOL_WRITERS.submit(self._write_run, run)

    def _write_run(self, run: list[bytes]) -> None:
        try:
            for piece in run:
                self._handle.write(piece)
                if self._hasher is not None:
                    self._hasher.update(piece)
            self._handle.flush()
        except OSError as error:  # a full disk: the operator's log names the spool file
            self._failed = True
            error.filename = error.filename or getattr(self._handle, "name", None)
            raise


async def _states(context: ServerContext, submission_id: int, digests: list[str]) -> list[UploadState | None]:
    """What this submission holds of each file (an object uploaded to another one counts as nothing)."""

    def held() -> list[UploadState | None]:
        uploaded = pipeline.uploaded_files(context.engine, submission_id, digests)
        return [context.spool.state(submission_id, sha256, sha256 in uploaded) for sha256 in digests]

    return await run_in_threadpool(held)


async def _still_open(context: ServerContext, principal: Principal, submission_id: int,
                     spools: Sequence[pathlib.Path], interrupted: bool) -> None:
    """Check, once a body has arrived, that its submission is still open: a commit meanwhile (the
    request checked before its body) refuses it (409 submission_closed), and the spools it wrote
    are removed, since nothing will resume or store them. ``interrupted``: a spool was removed
    under the request (:func:`discarded`) while the submission stayed open. The commons removes a
    spool under a writer only after a commit or an abandon, so this is a removal from outside (by
    hand, or a cleaner of the server's state directory): without it the batch path stored a missing
    file (500) and the single path acknowledged bytes it no longer held."""
    try:
        await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)
    except pipeline.SubmissionError:
        await run_in_threadpool(context.spool.remove, submission_id, spools)
        raise
    if interrupted:
        raise ApiError(409, "upload_interrupted", "the commons' spool of this upload was removed while it arrived",
                       "ask HEAD (or files/states) for the offset and upload the file again")


async def _record(context: ServerContext, principal: Principal, request: Request, submission_id: int,
                  uploads: Sequence[tuple[str, int, StoredObject]]) -> None:
    """Record stored files as the submission's. Refused (the submission was committed after the
    last check), the objects this request created go unless something else names them (they are
    content-addressed and shared): a refused upload leaves no bytes behind."""
    try:
        await run_in_threadpool(pipeline.note_uploads, context.engine, principal, submission_id,
                                [(sha256, size, stored.created) for sha256, size, stored in uploads],
                                client_address(request))
    except pipeline.SubmissionError:
        created = [stored.digest for _, _, stored in uploads if stored.created]
        await run_in_threadpool(pipeline.discard_unrecorded_objects, context.engine, context.store, created)
        await run_in_threadpool(context.spool.remove, submission_id, [])
        raise


@router.head("/submissions/{submission_id}/files/{sha256}", summary="How much of a file the server holds")
async def head(submission_id: RowId, sha256: str = Sha256, principal: Principal = Depends(current_principal),
               context: ServerContext = Depends(get_context)) -> Response:
    await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)
    (state,) = await _states(context, submission_id, [sha256])
    if state is None:
        return Response(status_code=404, headers={"Upload-Offset": "0", "Tus-Resumable": "1.0.0"})
    return Response(status_code=200, headers=_headers(state))


@router.post("/submissions/{submission_id}/files/states", summary="How much of each of many files the server holds")
async def states(submission_id: RowId, query: StatesQuery, principal: Principal = Depends(current_principal),
                 context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    """``HEAD`` for many files in one request (a client asks before it uploads a study or a whole
    contribution): the files the server holds anything of, each with its offset and whether it
    is complete; a file not listed has nothing on the server yet."""
    await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)
    digests = list(dict.fromkeys(query.sha256))
    found = zip(digests, await _states(context, submission_id, digests))
    return {"files": [_body(sha256, state) for sha256, state in found if state is not None]}


async def _receive(request: Request, context: ServerContext, principal: Principal, submission_id: int,
                   sha256: str, offset: int, length: int, *, restart: bool = False) -> JSONResponse:
    """Append the request body at ``offset`` of the spool (``restart``: replace what it holds); store
    the file when it is complete."""
    (state,) = await _states(context, submission_id, [sha256])
    if state is not None and state.complete:
        return JSONResponse(_body(sha256, state), headers=_headers(state))
    declared = request.headers.get("Content-Length")
    if declared is not None and declared.isdigit():
        if int(declared) > MAX_CHUNK:
            raise ApiError(413, "too_large", f"a chunk of {declared} bytes is over the limit of {MAX_CHUNK}",
                           f"send chunks of at most {MAX_CHUNK} bytes")
        if offset + int(declared) > length:
            raise ApiError(413, "too_large", f"offset {offset} + chunk {declared} bytes is beyond Upload-Length "
                           f"{length}", "check Upload-Length and the chunk")
    try:
        handle, path = context.spool.open_for_append(submission_id, sha256, length, offset, restart=restart)
    except Busy:
        raise ApiError(409, "upload_in_progress", f"another request is uploading {sha256} now",
                       "wait for it, then ask HEAD for the offset") from None
    except ValueError as error:
        raise ApiError(409, "length_mismatch", f"this upload started with Upload-Length {error.args[0]}, "
                       f"not {length}", "send the same Upload-Length, or restart at offset 0") from None
    # Hashed as it arrives when this request starts the file: if it also ends it, the
    # spool need not be read again.
    hasher = hashlib.sha256() if offset == 0 else None
    writer = _SpoolWriter(handle, hasher)
    try:
        current = handle.tell()
        if current != offset:
            raise ApiError(409, "offset_mismatch", f"the upload is at offset {current}, not {offset}",
                           f"resume from offset {current} (HEAD tells the offset)",
                           {"Upload-Offset": str(current)}, expected_offset=current)
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > MAX_CHUNK or offset + received > length:
                    raise ApiError(413, "too_large", f"the chunk goes beyond {min(MAX_CHUNK, length - offset)} bytes",
                                   f"send at most {MAX_CHUNK} bytes per request and no more than Upload-Length")
                await writer.write(chunk)
        except ClientDisconnect:
            pass  # what arrived is kept: the next HEAD tells the client where to resume
        finally:
            await writer.drain()
        size, gone = handle.tell(), writer.discarded
        if size < length or gone:  # kept to resume from, or gone: only while the submission is open
            await _still_open(context, principal, submission_id, [path], gone)
            state = UploadState(size, length, False)
            return JSONResponse(_body(sha256, state), headers=_headers(state))
        whole = hasher.hexdigest() if hasher is not None and received == length else None
        stored = await run_in_threadpool(context.spool.finish, path, sha256, whole)
    finally:
        writer.close()  # the lock goes only now: no other request writes the file while it moves to the store
    if stored is None:
        raise ApiError(400, "hash_mismatch", f"the {length} bytes received do not hash to {sha256}",
                       "the partial upload was discarded: check the file and upload it again from offset 0")
    await _record(context, principal, request, submission_id, [(sha256, length, stored)])
    state = UploadState(length, length, True)
    return JSONResponse(_body(sha256, state), headers=_headers(state))


class _BodyReader:
    """A request body read as it arrives: a first line, then runs of exact length. A client that
    disconnects (or a body that stops) ends it early; the caller sees fewer bytes than it asked for."""

    def __init__(self, request: Request) -> None:
        self._chunks = request.stream().__aiter__()
        self._buffer = b""
        self._ended = False

    async def _more(self) -> bool:
        """Read on until some bytes arrive (the stream also yields empty chunks); False at the end."""
        while not self._ended:
            try:
                chunk = await self._chunks.__anext__()
            except (StopAsyncIteration, ClientDisconnect):
                self._ended = True
            else:
                if chunk:
                    self._buffer += chunk
                    return True
        return False

    async def line(self, limit: int) -> bytes | None:
        """The bytes before the first newline (consumed with it); None past ``limit`` bytes or at the end."""
        while (end := self._buffer.find(b"\n", 0, limit + 1)) < 0:
            if len(self._buffer) > limit or not await self._more():
                return None
        line, self._buffer = self._buffer[:end], self._buffer[end + 1:]
        return line

    async def pieces(self, size: int) -> AsyncIterator[bytes]:
        """The next ``size`` bytes, piece by piece as they arrive (fewer if the body ends)."""
        while size > 0:
            if not self._buffer and not await self._more():
                return
            piece, self._buffer = self._buffer[:size], self._buffer[size:]
            size -= len(piece)
            yield piece

    async def skip(self, size: int) -> bool:
        """Read the next ``size`` bytes and drop them; False when the body ended first."""
        async for piece in self.pieces(size):
            size -= len(piece)
        return size == 0

    async def at_end(self) -> bool:
        return not self._buffer and not await self._more()


async def _read_index(request: Request) -> tuple[_BodyReader, BatchIndex]:
    media_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type != BATCH_MEDIA_TYPE:
        raise ApiError(415, "unsupported_media_type", f"a file batch is sent as {BATCH_MEDIA_TYPE}, not {media_type!r}",
                       "see docs/API.md, uploads: a line of JSON naming the files, then their bytes")
    body = _BodyReader(request)
    line = await body.line(MAX_BATCH_INDEX)
    if line is None:
        raise ApiError(400, "bad_request", "the body does not start with a line of JSON (the index) ended by a "
                       f"newline, within {MAX_BATCH_INDEX} bytes",
                       'start the body with {"files": [{"sha256": ..., "size": ...}, ...]} and a newline')
    try:
        index = BatchIndex.model_validate_json(line)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", "index", *e["loc"])} for e in error.errors()]) from None
    digests = [f.sha256 for f in index.files]
    if len(set(digests)) != len(digests):
        raise ApiError(422, "validation_error", "the index names a file more than once",
                       "list each file once (its sha256 names its content)")
    total = sum(f.size for f in index.files)
    if total > MAX_CHUNK:
        raise ApiError(413, "too_large", f"the batch holds {total} bytes, over the limit of {MAX_CHUNK}",
                       f"send at most {MAX_CHUNK} bytes per batch; large files one by one (PATCH)")
    return body, index


@router.post("/submissions/{submission_id}/files/batch", summary="Upload many small files whole, in one request")
async def batch(request: Request, submission_id: RowId, principal: Principal = Depends(current_principal),
                context: ServerContext = Depends(get_context)) -> JSONResponse:
    """Each file named in the index is received whole (from its first byte, replacing any partial
    upload of it), checked against its sha256 and stored; the answer gives each file's state, as
    ``files/states`` does, with an ``error`` for a file that was not stored."""
    await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)
    body, index = await _read_index(request)
    held = await _states(context, submission_id, [f.sha256 for f in index.files])
    # Each spool stays locked by its open writer until it is stored or discarded: no other request
    # writes a file while it moves into the store.
    writers: list[_SpoolWriter] = []
    try:
        return await _receive_batch(context, principal, request, submission_id, body, index, held, writers)
    finally:
        for writer in writers:
            writer.close()


async def _receive_batch(context: ServerContext, principal: Principal, request: Request, submission_id: int,
                         body: _BodyReader, index: BatchIndex, held: list[UploadState | None],
                         writers: list[_SpoolWriter]) -> JSONResponse:
    answers: dict[str, dict[str, Any]] = {}
    arrived: list[tuple[BatchFile, pathlib.Path, str]] = []  # whole in the spool: (file, spool, digest of its bytes)
    short: pathlib.Path | None = None  # the spool of a file the body broke off
    for member, state in zip(index.files, held):
        if state is not None and state.complete:  # stored meanwhile: its bytes are read and dropped
            answers[member.sha256] = _body(member.sha256, state)
            if not await body.skip(member.size):
                break
            continue
        try:  # a batch sends a file whole: any earlier partial upload restarts
            handle, path = context.spool.open_for_append(submission_id, member.sha256, member.size, 0, restart=True)
        except Busy:
            answers[member.sha256] = _refused(member.sha256, state or UploadState(0, member.size, False),
                                              "upload_in_progress", f"another request is uploading {member.sha256} now",
                                              "ask files/states, then send the rest of it with PATCH")
            if not await body.skip(member.size):
                break
            continue
        hasher, received = hashlib.sha256(), 0
        writer = _SpoolWriter(handle, hasher)
        writers.append(writer)
        try:
            async for piece in body.pieces(member.size):
                await writer.write(piece)
                received += len(piece)
        finally:
            await writer.drain()
        if received < member.size:  # the body ended: what arrived stays, to resume with PATCH
            answers[member.sha256] = _body(member.sha256, UploadState(received, member.size, False))
            short = path
            break
        arrived.append((member, path, hasher.hexdigest()))
    else:
        if not await body.at_end():
            for _, path, _ in arrived:
                path.unlink(missing_ok=True)
            raise ApiError(400, "bad_request", "the body goes on after the files its index names; nothing was stored",
                           "send exactly the bytes of the files in the index, in its order")
    gone = any(writer.discarded for writer in writers)
    if short is not None or gone:  # kept to resume from, or gone: only while the submission is open
        written = [path for _, path, _ in arrived] + ([short] if short is not None else [])
        await _still_open(context, principal, submission_id, written, gone)
    stored = await run_in_threadpool(context.spool.finish_many,
                                     [(path, member.sha256, digest) for member, path, digest in arrived])
    uploads: list[tuple[str, int, StoredObject]] = []
    for (member, _, _), result in zip(arrived, stored):
        if result is None:
            answers[member.sha256] = _refused(member.sha256, UploadState(0, member.size, False), "hash_mismatch",
                                              f"the {member.size} bytes received do not hash to {member.sha256}",
                                              "the file was discarded: check it and upload it again")
        else:
            answers[member.sha256] = _body(member.sha256, UploadState(member.size, member.size, True))
            uploads.append((member.sha256, member.size, result))
    if uploads:
        await _record(context, principal, request, submission_id, uploads)
    # the files after a body that ended early: as they were
    return JSONResponse({"files": [answers.get(f.sha256) or _body(f.sha256, state or UploadState(0, f.size, False))
                                   for f, state in zip(index.files, held)]})


@router.patch("/submissions/{submission_id}/files/{sha256}", summary="Append a chunk (Upload-Offset, Upload-Length)")
async def patch(request: Request, submission_id: RowId, sha256: str = Sha256,
                principal: Principal = Depends(current_principal),
                context: ServerContext = Depends(get_context)) -> JSONResponse:
    await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)
    offset = _int_header(request, "Upload-Offset")
    length = _int_header(request, "Upload-Length")
    assert offset is not None and length is not None
    return await _receive(request, context, principal, submission_id, sha256, offset, length)


@router.put("/submissions/{submission_id}/files/{sha256}", status_code=201, summary="Upload a small file whole")
async def put(request: Request, submission_id: RowId, sha256: str = Sha256,
              principal: Principal = Depends(current_principal),
              context: ServerContext = Depends(get_context)) -> JSONResponse:
    await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)
    length = _int_header(request, "Content-Length")
    assert length is not None
    # a whole-file PUT restarts any earlier partial upload (once no other request is writing it)
    response = await _receive(request, context, principal, submission_id, sha256, 0, length, restart=True)
    if response.status_code == 200:
        response.status_code = 201
    return response
