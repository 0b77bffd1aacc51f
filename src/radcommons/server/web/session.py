"""The explorer's login session: the API token in an HttpOnly, SameSite=Strict cookie.

The cookie holds the same bearer token the API takes, so the web pages, the DICOMweb routes
(which accept the cookie, see :mod:`radcommons.server.auth`) and the embedded viewer share one
login. The token never appears in a URL, a page or a log line: it arrives in a POSTed form body
and leaves only as the cookie.
"""

from __future__ import annotations

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from radcommons.server.auth import SESSION_COOKIE
from radcommons.server.context import ServerContext, get_context
from radcommons.store.index.accounts import DISABLED_CODE, AuthenticationFailed, Principal, authenticate

#: A browser session lasts a working day at most (the token itself may live longer).
SESSION_MAX_AGE = 8 * 3600

#: Who a request without a session acts as: reads open projects, in aggregate only.
ANONYMOUS = Principal(user_id=0, name="anonymous", role="anonymous", site_id=None)


def login_token(engine: Engine, token: str) -> Principal:
    """The user of ``token``; :class:`AuthenticationFailed` when it is unknown, expired or revoked."""
    return authenticate(engine, token.strip())


def set_session(response: Response, request: Request, token: str) -> None:
    """Put ``token`` in the session cookie of ``response`` (Secure when the request came over HTTPS)."""
    response.set_cookie(SESSION_COOKIE, token.strip(), max_age=SESSION_MAX_AGE, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")


def clear_session(response: Response) -> None:
    """Remove the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


class DisabledSession(Exception):
    """The session's account was disabled: the page is a 401 saying so (``server.web.install``)."""

    def __init__(self, failure: AuthenticationFailed) -> None:
        super().__init__(failure.message)
        self.failure = failure


async def web_principal(request: Request, context: ServerContext = Depends(get_context)) -> Principal:
    """The session's user, or :data:`ANONYMOUS` (also when the token expired or was revoked).

    A disabled account is not quietly anonymous: :class:`DisabledSession` (a 401 page telling the
    person to contact an administrator), so nobody wonders where their data went.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return ANONYMOUS
    try:
        return await run_in_threadpool(authenticate, context.engine, token)
    except AuthenticationFailed as error:
        if error.code == DISABLED_CODE:
            raise DisabledSession(error) from None
        return ANONYMOUS


def is_anonymous(principal: Principal) -> bool:
    return principal.role == ANONYMOUS.role
