"""Errors the commons client raises: each a :class:`~radcommons.errors.UserError` with the server's hint."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from radcommons.errors import UserError


class CommonsError(UserError):
    """The commons refused a request; ``status`` and ``code`` say how (see docs/API.md)."""

    def __init__(self, message: str, hint: str = "", *, status: int = 0, code: str = "",
                 detail: dict[str, Any] | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.code = code
        #: The whole ``error`` object of the response (e.g. ``expected_offset``, ``missing``, ``fields``).
        self.detail: dict[str, Any] = detail or {}


class AuthenticationError(CommonsError):
    """401: no token, an unknown, expired or revoked token."""


class PermissionDeniedError(CommonsError):
    """403: the token's user may not do this (wrong project, site or role)."""


class NotFoundError(CommonsError):
    """404: no such submission, file or entry."""


class ConflictError(CommonsError):
    """409: the request does not fit the current state (offset, closed submission, missing files)."""


class InvalidRequestError(CommonsError):
    """400, 413 or 422: the request itself is wrong; ``detail['fields']`` names the fields."""


class ServerError(CommonsError):
    """5xx after every retry: the commons has a problem."""


class ConnectionFailedError(CommonsError):
    """The commons could not be reached after every retry."""


class TokenFileError(UserError):
    """The token file is missing, unreadable or empty."""


_BY_STATUS: dict[int, type[CommonsError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    422: InvalidRequestError,
}


#: Hints for a refusal without the commons' own JSON error (from a proxy on the way, say).
_HINTS = {
    413: "the request was too large for the commons or a proxy on the way: tell the commons' operators",
    507: "the commons has no space left to store the upload: tell its operators",
}


def _phrase(status: int) -> str:
    try:
        return f" ({HTTPStatus(status).phrase})"
    except ValueError:
        return ""


def error_for(status: int, body: Any, url: str) -> CommonsError:
    """The exception for an error response ``status`` with JSON ``body`` (any shape) from ``url``."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code") or f"http_{status}")
    message = str(error.get("message") or f"the commons answered HTTP {status}{_phrase(status)} for {url}")
    hint = str(error.get("hint") or _HINTS.get(status, ""))
    fields = error.get("fields")
    if isinstance(fields, list) and fields:
        # What the message already says is not repeated ("invalid request: body.format: body.format: ...").
        parts = [str(f.get("message")) if str(f.get("field")) in message else f"{f.get('field')}: {f.get('message')}"
                 for f in fields if isinstance(f, dict) and str(f.get("message")) not in message]
        if parts:
            message += ": " + "; ".join(parts)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else CommonsError)
    return cls(message, hint, status=status, code=code, detail=error)
