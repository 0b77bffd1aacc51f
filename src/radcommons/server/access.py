"""Who may read which project's images and records: the ONE access decision of every read path.

DICOMweb (QIDO, WADO, metadata, rendered) and the research API call :func:`readable_projects`
and filter on its answer. The rule itself is the pure :func:`radcommons.roles.readable_projects`
(the ML export of ``radcommons.pipelines.export`` asks it too), so it is written once:

* admins and curators read everything (``None``: no filter);
* researchers read projects whose ``availability`` is ``open``, plus ``restricted`` projects
  granted to them (``radcommons admin user grant NAME --project P``);
* contributors read the same as researchers, plus the non-sequestered projects they submit to;
* a ``sequestered`` project (held back for independent evaluation, DOMAIN.md section 6) is read
  only by curators and admins: never by a researcher or a contributor, whatever the grants.

A project without a ``project`` record yet (no commit so far) holds nothing to read.

Before any record, researchers and contributors must accept the current data use agreement
(``GET /api/v1/dua``, ``POST /api/v1/dua/accept``): :func:`require_data_use_agreement` answers
403 ``dua_required`` otherwise, and :func:`research_projects` calls it first.

Aggregates (``/summary``, ``/facets``) need no token (:func:`aggregate_scope`): anonymous
visitors and users who have not accepted the agreement count open projects only, with
counts under :data:`MIN_COUNT` suppressed; a sequestered project never enters a count that a
researcher, contributor or visitor sees.
"""

from __future__ import annotations

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.engine import Connection

from radcommons import roles
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, get_context
from radcommons.server.errors import ApiError
from radcommons.store.index import node_tables
from radcommons.store.index.accounts import Principal
from radcommons.store.index.dua import DUA_VERSION

OPEN, RESTRICTED, SEQUESTERED = roles.OPEN, roles.RESTRICTED, roles.SEQUESTERED


def readable_projects(conn: Connection, principal: Principal) -> set[str] | None:
    """The project submitter_ids ``principal`` may read; ``None`` means every project."""
    if principal.is_curator:
        return None
    project = node_tables()["project"]
    availability = dict(conn.execute(select(project.c.submitter_id, project.c.availability)).all())
    return roles.readable_projects(principal.role, principal.projects, availability)


#: Counts from 1 to MIN_COUNT - 1 are hidden from anonymous visitors (small-cell suppression).
MIN_COUNT = 10


def has_accepted_agreement(principal: Principal) -> bool:
    """Curators and admins need no agreement; others must have accepted the current version."""
    return roles.agreement_accepted(principal.role, principal.dua_versions, DUA_VERSION)


def require_data_use_agreement(principal: Principal) -> None:
    """Refuse (403 ``dua_required``) a user who has not accepted the current data use agreement.

    Every read path of records or files calls this before answering.
    """
    if not has_accepted_agreement(principal):
        raise ApiError(403, "dua_required",
                       f"{principal.name!r} has not accepted the data use agreement (version {DUA_VERSION})",
                       "read it at GET /api/v1/dua and accept it with POST /api/v1/dua/accept "
                       "(Python: Client.accept_dua())", dua_version=DUA_VERSION)


def research_projects(conn: Connection, principal: Principal) -> list[str] | None:
    """The projects whose records ``principal`` may read (``None``: all), after the agreement check."""
    require_data_use_agreement(principal)
    readable = readable_projects(conn, principal)
    return None if readable is None else sorted(readable)


def open_projects(conn: Connection) -> list[str]:
    """The projects whose availability is ``open`` (what anonymous counts cover)."""
    project = node_tables()["project"]
    return sorted(conn.execute(select(project.c.submitter_id).where(project.c.availability == OPEN)).scalars())


def aggregate_scope(conn: Connection, principal: Principal | None) -> tuple[list[str] | None, int | None]:
    """(projects, min_count) of a count for ``principal`` (None: anonymous).

    Curators and admins count everything, unsuppressed; a user who accepted the agreement counts
    what it may read, unsuppressed (it may read those rows anyway); everyone else counts open
    projects with small cells suppressed.
    """
    if principal is not None and has_accepted_agreement(principal):
        readable = readable_projects(conn, principal)
        return (None if readable is None else sorted(readable)), None
    return open_projects(conn), MIN_COUNT


async def optional_principal(request: Request, context: ServerContext = Depends(get_context)) -> Principal | None:
    """The token's user, or ``None`` without credentials (a bad token is still a 401)."""
    from radcommons.server import auth

    cookie = getattr(auth, "SESSION_COOKIE", None)  # the explorer's session cookie, when there is one
    if not request.headers.get("Authorization") and not (cookie and request.cookies.get(cookie)):
        return None
    return await current_principal(request, context)


def require_admin(principal: Principal = Depends(current_principal)) -> Principal:
    """Admins only (403 otherwise)."""
    if principal.role != "admin":
        raise ApiError(403, "forbidden", f"{principal.name!r} ({principal.role}) may not do this: admins only",
                       "ask a commons administrator")
    return principal
