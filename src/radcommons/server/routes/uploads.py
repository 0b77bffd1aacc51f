"""Resumable, chunked file uploads (tus-like, named by sha256); see :mod:`radcommons.server.uploads`."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, StringConstraints
from starlette.requests import ClientDisconnect

from radcommons.pipelines import submission as pipeline
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.errors import ApiError
from radcommons.server.uploads import MAX_CHUNK, Busy, UploadState
from radcommons.store.index.accounts import Principal

router = APIRouter(tags=["uploads"])

SHA256_PATTERN = r"^[0-9a-f]{64}$"
Sha256 = Path(pattern=SHA256_PATTERN, description="lowercase hex SHA-256 of the whole file")
#: Files one ``files/states`` request may ask about.
MAX_STATES = 10_000


class StatesQuery(BaseModel):
    sha256: list[Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]] = Field(
        max_length=MAX_STATES, description=f"the files asked about (at most {MAX_STATES})")


def _headers(state: UploadState) -> dict[str, str]:
    headers = {"Upload-Offset": str(state.offset), "Tus-Resumable": "1.0.0", "Cache-Control": "no-store"}
    if state.length is not None:
        headers["Upload-Length"] = str(state.length)
    if state.complete:
        headers["Upload-Complete"] = "true"
    return headers


def _body(sha256: str, state: UploadState) -> dict[str, Any]:
    return {"sha256": sha256, "offset": state.offset, "length": state.length, "complete": state.complete}


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
    return int(value)


@router.head("/submissions/{submission_id}/files/{sha256}", summary="How much of a file the server holds")
async def head(submission_id: int, sha256: str = Sha256, principal: Principal = Depends(current_principal),
               context: ServerContext = Depends(get_context)) -> Response:
    await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)
    state = await run_in_threadpool(context.spool.state, submission_id, sha256)
    if state is None:
        return Response(status_code=404, headers={"Upload-Offset": "0", "Tus-Resumable": "1.0.0"})
    return Response(status_code=200, headers=_headers(state))


@router.post("/submissions/{submission_id}/files/states", summary="How much of each of many files the server holds")
async def states(submission_id: int, query: StatesQuery, principal: Principal = Depends(current_principal),
                 context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    """``HEAD`` for many files in one request (a client asks before it uploads a study or a whole
    contribution): the files the server holds anything of, each with its offset and whether it
    is complete; a file not listed has nothing on the server yet."""
    await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)

    def held() -> list[dict[str, Any]]:
        found = ((sha256, context.spool.state(submission_id, sha256)) for sha256 in dict.fromkeys(query.sha256))
        return [_body(sha256, state) for sha256, state in found if state is not None]

    return {"files": await run_in_threadpool(held)}


async def _receive(request: Request, context: ServerContext, principal: Principal, submission_id: int,
                   sha256: str, offset: int, length: int) -> JSONResponse:
    """Append the request body at ``offset`` of the spool; store the file when it is complete."""
    state = await run_in_threadpool(context.spool.state, submission_id, sha256)
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
        handle, path = context.spool.open_for_append(submission_id, sha256, length, offset)
    except Busy:
        raise ApiError(409, "upload_in_progress", f"another request is uploading {sha256} now",
                       "wait for it, then ask HEAD for the offset") from None
    except ValueError as error:
        raise ApiError(409, "length_mismatch", f"this upload started with Upload-Length {error.args[0]}, "
                       f"not {length}", "send the same Upload-Length, or restart at offset 0") from None
    try:
        current = handle.tell()
        if current != offset:
            raise ApiError(409, "offset_mismatch", f"the upload is at offset {current}, not {offset}",
                           f"resume from offset {current} (HEAD tells the offset)",
                           {"Upload-Offset": str(current)}, expected_offset=current)
        received = 0
        # Hashed as it arrives when this request starts the file: if it also ends it, the
        # spool need not be read again.
        hasher = hashlib.sha256() if offset == 0 else None
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > MAX_CHUNK or offset + received > length:
                    raise ApiError(413, "too_large", f"the chunk goes beyond {min(MAX_CHUNK, length - offset)} bytes",
                                   f"send at most {MAX_CHUNK} bytes per request and no more than Upload-Length")
                handle.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
        except ClientDisconnect:
            pass  # what arrived is kept: the next HEAD tells the client where to resume
        finally:
            handle.flush()
        size = handle.tell()
        if size >= length:
            # One fsync per file, before it is moved into the store and acknowledged as stored.
            # A chunk that does not end the file is not synced: the process dying loses nothing
            # (the page cache keeps it), and after a machine crash HEAD reports what survived.
            await run_in_threadpool(context.spool.sync, handle)
    finally:
        handle.close()
    if size < length:
        state = UploadState(size, length, False)
        return JSONResponse(_body(sha256, state), headers=_headers(state))
    whole = hasher.hexdigest() if hasher is not None and received == length else None
    stored = await run_in_threadpool(context.spool.finish, path, sha256, whole)
    if stored is None:
        raise ApiError(400, "hash_mismatch", f"the {length} bytes received do not hash to {sha256}",
                       "the partial upload was discarded: check the file and upload it again from offset 0")
    await run_in_threadpool(pipeline.note_upload, context.engine, principal, submission_id, sha256, length,
                            client_address(request), stored.created)
    state = UploadState(length, length, True)
    return JSONResponse(_body(sha256, state), headers=_headers(state))


@router.patch("/submissions/{submission_id}/files/{sha256}", summary="Append a chunk (Upload-Offset, Upload-Length)")
async def patch(request: Request, submission_id: int, sha256: str = Sha256,
                principal: Principal = Depends(current_principal),
                context: ServerContext = Depends(get_context)) -> JSONResponse:
    await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)
    offset = _int_header(request, "Upload-Offset")
    length = _int_header(request, "Upload-Length")
    assert offset is not None and length is not None
    return await _receive(request, context, principal, submission_id, sha256, offset, length)


@router.put("/submissions/{submission_id}/files/{sha256}", status_code=201, summary="Upload a small file whole")
async def put(request: Request, submission_id: int, sha256: str = Sha256,
              principal: Principal = Depends(current_principal),
              context: ServerContext = Depends(get_context)) -> JSONResponse:
    await run_in_threadpool(pipeline.open_submission, context.engine, principal, submission_id)
    length = _int_header(request, "Content-Length")
    assert length is not None
    found = context.spool.find(submission_id, sha256)
    if found is not None:  # a whole-file PUT restarts any earlier partial upload
        found[0].unlink(missing_ok=True)
    response = await _receive(request, context, principal, submission_id, sha256, 0, length)
    if response.status_code == 200:
        response.status_code = 201
    return response
