"""Bearer-token authentication of requests (the token is hashed, never logged or echoed)."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.errors import ApiError
from radcommons.store.index.accounts import AuthenticationFailed, Principal, authenticate, record_audit

#: The explorer's session cookie (HttpOnly, SameSite=Strict; set by ``server.web.session``). It holds
#: the same token as the Authorization header, so same-origin requests of the web viewer (OHIF calling
#: /dicomweb) are authorised without putting the token in JavaScript or URLs.
SESSION_COOKIE = "rc_session"

#: Methods that change nothing: the session cookie may authorise them from any page of this site.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(request: Request) -> bool:
    """True unless the request says it came from another origin.

    Browsers send ``Origin`` with every POST, PUT, PATCH and DELETE; its absence means a client
    that is not a browser (which cannot carry another site's intent). SameSite=Strict alone is
    not enough: another port of the same host, or a sibling subdomain, is the same *site*.
    """
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def current_principal(request: Request, context: ServerContext = Depends(get_context)) -> Principal:
    """The user of the request's ``Authorization: Bearer`` token (or session cookie); 401 otherwise."""
    sent = request.headers.getlist("Authorization")
    if len(sent) > 1:  # which one counts is up to each proxy and server on the way: none is chosen here
        raise ApiError(401, "unauthorized", f"this request has {len(sent)} Authorization headers",
                       "send one: Authorization: Bearer TOKEN", {"WWW-Authenticate": "Bearer"})
    header = sent[0] if sent else ""
    if not header and request.cookies.get(SESSION_COOKIE):
        # SameSite=Strict keeps the cookie off cross-site requests; a same-site page of another
        # origin (another port, a sibling subdomain) still sends it, so a change must come from ours.
        if request.method not in SAFE_METHODS and not same_origin(request):
            raise ApiError(403, "cross_origin", f"this {request.method} came from another origin "
                           f"({request.headers.get('origin')}) with the explorer's session cookie",
                           "send it from this commons' own pages, or with Authorization: Bearer TOKEN")
        header = f"Bearer {request.cookies[SESSION_COOKIE]}"
    scheme, _, token = header.partition(" ")
    if not header:
        raise ApiError(401, "unauthorized", "this request needs a token (Authorization: Bearer TOKEN)",
                       "ask an administrator for a token (radcommons admin token create NAME) and pass it "
                       "with --token-file", {"WWW-Authenticate": "Bearer"})
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer TOKEN'",
                       "send the token as: Authorization: Bearer TOKEN", {"WWW-Authenticate": "Bearer"})
    try:
        return await run_in_threadpool(authenticate, context.engine, token)
    except AuthenticationFailed as error:
        def audit() -> None:
            with context.engine.begin() as conn:
                record_audit(conn, actor=None, action="auth.refused", target=request.url.path,
                             client=client_address(request), success=False, detail={"code": error.code})

        await run_in_threadpool(audit)
        raise
