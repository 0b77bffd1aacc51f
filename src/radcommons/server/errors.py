"""The JSON error body of every failure: ``{"error": {"code", "message", "hint"}}``, never a traceback."""

from __future__ import annotations

import errno
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import PydanticSerializationError
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from radcommons.errors import UserError
from radcommons.pipelines.submission import SubmissionError
from radcommons.store.index.accounts import AuthenticationFailed
from radcommons.store.objects import CorruptObjectError, ObjectNotFoundError

log = logging.getLogger("radcommons.server")

#: SubmissionError.kind -> HTTP status.
KIND_STATUS = {"not_found": 404, "forbidden": 403, "conflict": 409, "invalid": 422, "too_large": 413}


class ApiError(Exception):
    """An error the routes raise directly: status, stable code, message, hint and extra fields."""

    def __init__(self, status: int, code: str, message: str, hint: str = "", headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.hint = status, code, message, hint
        self.headers = headers or {}
        self.extra = extra


def error_response(status: int, code: str, message: str, hint: str = "", headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "hint": hint, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


#: What a write on a full disk, or over its quota, fails with.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type"}


def install_error_handlers(app: FastAPI) -> None:
    """Every exception becomes the JSON error body with the right status."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.hint, error.headers, **error.extra)

    @app.exception_handler(SubmissionError)
    async def _submission(_: Request, error: SubmissionError) -> JSONResponse:
        return error_response(KIND_STATUS.get(error.kind, 400), error.code, error.message, error.hint, **error.extra)

    @app.exception_handler(AuthenticationFailed)
    async def _auth(_: Request, error: AuthenticationFailed) -> JSONResponse:
        return error_response(401, error.code, error.message, error.hint, {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ObjectNotFoundError)
    @app.exception_handler(CorruptObjectError)
    async def _stored(request: Request, error: ObjectNotFoundError | CorruptObjectError) -> JSONResponse:
        # The index lists a file the store no longer holds whole: the commons' fault, not the request's. As a
        # UserError it was a 400 whose message named the store's location (a path or bucket) to any caller.
        log.error("%s %s: %s", request.method, request.url.path, error.message)
        what = "is not in" if isinstance(error, ObjectNotFoundError) else "is damaged in"
        return error_response(500, "stored_file_unavailable", f"a file this request needs {what} the commons' "
                              f"object store (sha256 {error.digest})",
                              "tell the commons operators, with the time of the request (radcommons objects verify "
                              "finds such files)")

    @app.exception_handler(UserError)
    async def _user(_: Request, error: UserError) -> JSONResponse:
        # Most messages without a hint of their own come from the query engine (filters, fields, bins).
        return error_response(400, "bad_request", error.message,
                              error.hint or "see docs/QUERY.md for filters, fields and bins, and docs/API.md (or /docs)")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, error: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in item.get("loc", ())), "message": item.get("msg", "")}
                  for item in error.errors()]
        names = ", ".join(f["field"] for f in fields) or "the request"
        return error_response(422, "validation_error", f"invalid request: {names}",
                              "see docs/API.md (or /docs) for the expected body", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(error.status_code, f"http_{error.status_code}")
        message, hint = str(error.detail), "see /docs for the API" if error.status_code in (404, 405) else ""
        if message == "There was an error parsing the body":  # FastAPI's words for JSON too deep to read
            message = "the request body could not be read: JSON nested too deeply (or not JSON at all)"
            hint = "send the JSON body that docs/API.md (or /docs) describes; filters nest a few levels, not thousands"
        return error_response(error.status_code, code, message, hint, getattr(error, "headers", None))

    @app.exception_handler(OperationalError)
    async def _database(_: Request, error: OperationalError) -> JSONResponse:
        reason = str(error.orig or error).splitlines()[0]
        if "too many SQL variables" in reason:  # SQLite's limit: the request listed too many values
            return error_response(400, "bad_request", "the request lists too many values at once",
                                  "send fewer (bins, list items, UIDs) per request")
        log.error("database error: %s", reason)
        return error_response(503, "unavailable", "the index database is not available",
                              "retry later; operators: check the database server", {"Retry-After": "5"})

    # Values a client sent that the database or the JSON encoder cannot take; they are the
    # request's fault, never a bug to report.
    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, error: OverflowError) -> JSONResponse:
        return error_response(400, "bad_request", f"a number in the request is out of range ({error})",
                              "numbers must fit in 64 bits (between -9223372036854775808 and 9223372036854775807)")

    @app.exception_handler(DataError)
    async def _data(_: Request, error: DataError) -> JSONResponse:  # PostgreSQL: "integer out of range" and the like
        reason = str(error.orig or error).splitlines()[0]
        return error_response(400, "bad_request", f"a value in the request does not fit its field ({reason})",
                              "numbers must fit in 64 bits (integers in 32 where the field is one)")

    @app.exception_handler(UnicodeError)
    async def _unicode(_: Request, error: UnicodeError) -> JSONResponse:
        return error_response(400, "bad_request", "the request holds text that is not valid Unicode "
                              "(a lone surrogate such as \\ud800)", "send text as UTF-8 without lone surrogates")

    @app.exception_handler(PydanticSerializationError)
    async def _serialization(request: Request, error: PydanticSerializationError) -> JSONResponse:
        if "surrogates not allowed" in str(error):  # the answer would echo the request's bad text
            return await _unicode(request, UnicodeError(str(error)))
        return await _bug(request, error)

    @app.exception_handler(OSError)
    async def _disk(request: Request, error: OSError) -> JSONResponse:
        if error.errno not in _NO_ROOM:
            return await _bug(request, error)
        # The commons' disk (the upload spool or the object store), not the contributor's: they
        # cannot free it, and what was received before it filled stays, to resume from.
        where = error.filename or "(a file of the spool or the object store)"
        log.error("%s %s: no room to write %s: %s; free space on its disk (or raise the quota): the contributor's "
                  "rerun resumes", request.method, request.url.path, where, error.strerror)
        return error_response(507, "insufficient_storage", "the commons has no room left to store this upload "
                              f"({error.strerror or 'no space left on its disk'})",
                              "tell the commons operators (their disk or quota is full); once they have made room, "
                              "run the same command again: it resumes from what the commons received")

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "the server failed on this request (a bug)",
                              "retry; if it persists, report it to the commons operators with the time of the request")
