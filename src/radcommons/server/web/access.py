"""What the explorer may show a principal: readable projects, record-level access, the DUA.

The project rule is :func:`radcommons.server.access.readable_projects` (the one access decision
of every read path); this module only adds what is particular to pages: anonymous visitors see
aggregates of open projects with small cells suppressed, and researchers see records only once
they accepted the current data use agreement
(:func:`radcommons.roles.agreement_accepted`, the same rule as the API's).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from radcommons.roles import agreement_accepted
from radcommons.server.access import readable_projects
from radcommons.server.web.session import ANONYMOUS, is_anonymous
from radcommons.store.index import dua
from radcommons.store.index.accounts import Principal

#: Counts from 1 to 9 are hidden from anonymous visitors (DOMAIN.md section 6: small cells).
ANONYMOUS_MIN_COUNT = 10


@dataclass(frozen=True)
class View:
    """What one request may see."""

    principal: Principal
    #: Project ids readable (None: every project).
    projects: tuple[str, ...] | None
    #: Suppress counts below this (anonymous visitors), else None.
    min_count: int | None
    #: Row-level tables, study pages, downloads and cohorts.
    records: bool
    #: The data use agreement must be accepted before records are shown.
    needs_dua: bool

    @property
    def anonymous(self) -> bool:
        return is_anonymous(self.principal)


def view_for(engine: Engine, principal: Principal) -> View:
    """The :class:`View` of ``principal``."""
    with engine.connect() as conn:
        readable = readable_projects(conn, principal)
    projects = tuple(sorted(readable)) if readable is not None else None
    if is_anonymous(principal):
        return View(principal, projects, ANONYMOUS_MIN_COUNT, records=False, needs_dua=False)
    accepted = agreement_accepted(principal.role, principal.dua_versions, dua.DUA_VERSION)
    return View(principal, projects, None, records=accepted, needs_dua=not accepted)


def anonymous_view() -> View:
    """The view of a visitor without a session, for pages shown without asking the index."""
    return View(ANONYMOUS, (), ANONYMOUS_MIN_COUNT, records=False, needs_dua=False)
