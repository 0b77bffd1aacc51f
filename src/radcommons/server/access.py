"""Who may read which project's images and records: the ONE access decision of every read path.

DICOMweb (QIDO, WADO, metadata, rendered) and the research API call :func:`readable_projects`
and filter on its answer, so the rule below is written once:

* admins and curators read everything (``None``: no filter);
* researchers read projects whose ``availability`` is ``open``, plus ``restricted`` projects
  granted to them (``radcommons admin user grant NAME --project P``);
* contributors read the same as researchers, plus the non-sequestered projects they submit to;
* a ``sequestered`` project (held back for independent evaluation, DOMAIN.md section 6) is read
  only by curators and admins: never by a researcher or a contributor, whatever the grants.

A project without a ``project`` record yet (no commit so far) holds nothing to read.
:func:`require_data_use_agreement` is where the data use agreement will be enforced.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from radcommons.store.index import node_tables
from radcommons.store.index.accounts import Principal

OPEN, RESTRICTED, SEQUESTERED = "open", "restricted", "sequestered"


def readable_projects(conn: Connection, principal: Principal) -> set[str] | None:
    """The project submitter_ids ``principal`` may read; ``None`` means every project."""
    if principal.is_curator:
        return None
    project = node_tables()["project"]
    rows = conn.execute(select(project.c.submitter_id, project.c.availability)).all()
    readable = set()
    for name, availability in rows:
        if availability == SEQUESTERED:
            continue
        if availability == OPEN:
            readable.add(name)
        elif name in principal.projects and principal.role in ("researcher", "contributor"):
            # restricted projects (and, for a contributor, its own non-sequestered projects)
            readable.add(name)
    return readable


def require_data_use_agreement(principal: Principal) -> None:
    """Hook: refuse a researcher who has not accepted the data use agreement (not recorded yet).

    Every read path calls this before answering, so enforcing the agreement later is a change
    here only (raise a 403 ``dua_required`` error).
    """
    return None
