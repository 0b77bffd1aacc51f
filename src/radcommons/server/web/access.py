"""What the explorer may show a principal: counted projects, small-cell suppression, records, the DUA.

Counts are the API's rule, asked of the same function: :func:`radcommons.server.access.aggregate_scope`
(``/summary`` and ``/facets`` call it too). Anonymous visitors and users who have not accepted the
current data use agreement count open projects only, with small cells suppressed; once the agreement
is accepted (curators and admins need none) a user counts, unsuppressed, the projects it may read
(:func:`radcommons.server.access.readable_projects`, the one access decision of every read path).
Records (tables, study pages, downloads, cohorts) are shown only after the agreement
(:func:`radcommons.server.access.has_accepted_agreement`, the API's check).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from radcommons.server.access import MIN_COUNT, aggregate_scope, has_accepted_agreement
from radcommons.server.web.session import ANONYMOUS, is_anonymous
from radcommons.store.index.accounts import Principal


@dataclass(frozen=True)
class View:
    """What one request may see."""

    principal: Principal
    #: Project ids counted, and readable once ``records`` holds (None: every project).
    projects: tuple[str, ...] | None
    #: Suppress counts below this (anonymous visitors, users without the agreement), else None.
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
    anonymous = is_anonymous(principal)
    with engine.connect() as conn:
        projects, min_count = aggregate_scope(conn, None if anonymous else principal)
    scope = tuple(projects) if projects is not None else None
    accepted = not anonymous and has_accepted_agreement(principal)
    return View(principal, scope, min_count, records=accepted, needs_dua=not anonymous and not accepted)


def anonymous_view() -> View:
    """The view of a visitor without a session, for pages shown without asking the index."""
    return View(ANONYMOUS, (), MIN_COUNT, records=False, needs_dua=False)
