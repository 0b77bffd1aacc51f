"""Cohorts over HTTP: save a named query, freeze it into an immutable snapshot, list, read, members, manifest.

A frozen cohort (``rc-cohort-<12 hex>``) holds only records its owner could read when it was
frozen; anyone else sees it only when every member lies in projects they may read, and its
members and manifest are always cut to the reader's projects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field
from sqlalchemy import func, select

from radcommons.errors import UserError
from radcommons.pipelines.export import frozen_files
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, get_context
from radcommons.server.errors import ApiError
from radcommons.server.routes.params import COHORT_KEY
from radcommons.server.routes.research import ExportFormat, Node, StrictBody, audit, manifest_stream, scope_of
from radcommons.store import query as rq
from radcommons.store.index import get_metadata
from radcommons.store.index.accounts import Principal

router = APIRouter(tags=["cohorts"])


class CohortCreate(StrictBody):
    name: str = Field(min_length=1, max_length=256, description="e.g. 'women 50-64, CT'")
    node: Node = Field(description="node type the filter is written for")
    filter: dict[str, Any] | None = Field(default=None, description="JSON filter (docs/QUERY.md)")
    description: str = Field(default="", max_length=4000)
    freeze: bool = Field(default=False, description="freeze at once (returns the snapshot)")


class FreezeBody(StrictBody):
    name: str | None = Field(default=None, min_length=1, max_length=256, description="default: the saved query's")
    description: str = Field(default="", max_length=4000)


def as_json(cohort: rq.Cohort) -> dict[str, Any]:
    return {"id": cohort.id, "identifier": cohort.identifier, "name": cohort.name, "owner": cohort.owner,
            "node": cohort.node, "filter": cohort.filter, "description": cohort.description,
            "frozen": cohort.frozen, "content_hash": cohort.content_hash, "member_count": cohort.member_count,
            "instance_count": cohort.instance_count, "dictionary_version": cohort.dictionary_version,
            "source_id": cohort.source_id, "created_at": cohort.created_at.isoformat() if cohort.created_at else None,
            "frozen_at": cohort.frozen_at.isoformat() if cohort.frozen_at else None}


def _outside(context: ServerContext, cohort: rq.Cohort, projects: list[str] | None) -> bool:
    """True when a member of ``cohort`` lies outside ``projects``."""
    if projects is None:
        return False
    member = get_metadata().tables["cohort_member"]
    statement = select(func.count()).where(member.c.cohort_id == cohort.id, member.c.project_id.not_in(projects))
    with context.engine.connect() as conn:
        return bool(conn.execute(statement).scalar_one())


def visible_cohort(context: ServerContext, principal: Principal, key: str) -> tuple[rq.Cohort, list[str] | None]:
    """The cohort ``key`` if ``principal`` may see it (404 otherwise), and the reader's projects."""
    projects = scope_of(context, principal)
    try:
        cohort = rq.get_cohort(context.engine, int(key) if key.isdigit() else key)
    except UserError:
        cohort = None
    if cohort is not None and (principal.is_curator or cohort.owner == principal.name
                               or (cohort.frozen and not _outside(context, cohort, projects))):
        return cohort, projects
    raise ApiError(404, "not_found", f"no cohort {key!r} that you may read",
                   "list yours with GET /api/v1/cohorts (in Python: Client.cohorts())")


CohortKey = Path(pattern=COHORT_KEY, description="number or rc-cohort-... identifier")


@router.post("/cohorts", status_code=201, summary="Save a named query (or freeze it at once with freeze=true)")
def create_cohort(body: CohortCreate, request: Request, principal: Principal = Depends(current_principal),
                  context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    projects = scope_of(context, principal)
    saved = rq.save_query(context.engine, body.name, body.node.value, body.filter, owner=principal.name,
                          description=body.description)
    audit(context, request, principal, "cohort.save", f"cohort {saved.id}", None, detail={"node": saved.node})
    if not body.freeze:
        return as_json(saved)
    return _freeze(context, request, principal, saved, projects, None, body.description)


def _freeze(context: ServerContext, request: Request, principal: Principal, saved: rq.Cohort,
            projects: list[str] | None, name: str | None, description: str) -> dict[str, Any]:
    frozen = rq.freeze(context.engine, saved, owner=principal.name, projects=projects, name=name,
                       description=description)
    audit(context, request, principal, "cohort.freeze", frozen.identifier or "", frozen.member_count,
          detail={"source_id": saved.id, "content_hash": frozen.content_hash, "instances": frozen.instance_count})
    return as_json(frozen)


@router.post("/cohorts/{key}/freeze", status_code=201, summary="Freeze a saved query: an immutable snapshot")
def freeze_cohort(request: Request, key: str = CohortKey, body: FreezeBody | None = None,
                  principal: Principal = Depends(current_principal),
                  context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    saved, projects = visible_cohort(context, principal, key)
    if saved.frozen:
        raise ApiError(409, "already_frozen", f"cohort {key!r} is a frozen snapshot ({saved.identifier})",
                       "freeze its saved query (source_id), or use the snapshot as it is")
    body = body or FreezeBody()
    return _freeze(context, request, principal, saved, projects, body.name, body.description)


@router.get("/cohorts", summary="Your cohorts (curators: all), newest first")
def list_cohorts(frozen: bool | None = Query(default=None), principal: Principal = Depends(current_principal),
                 context: ServerContext = Depends(get_context)) -> list[dict[str, Any]]:
    scope_of(context, principal)
    owner = None if principal.is_curator else principal.name
    return [as_json(c) for c in rq.list_cohorts(context.engine, owner=owner, frozen=frozen)]


@router.get("/cohorts/{key}", summary="One cohort (a snapshot also says whether its content hash still verifies)")
def get_cohort(key: str = CohortKey, principal: Principal = Depends(current_principal),
               context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    cohort, _ = visible_cohort(context, principal, key)
    out = as_json(cohort)
    if cohort.frozen:
        out["verified"] = rq.verify(context.engine, cohort.id)
    return out


@router.get("/cohorts/{key}/members", summary="A snapshot's members (within your projects), paged")
def cohort_members(request: Request, key: str = CohortKey, node: Node | None = Query(default=None),
                   limit: int = Query(default=1000, ge=1, le=10_000), offset: int = Query(default=0, ge=0),
                   principal: Principal = Depends(current_principal),
                   context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    cohort, projects = visible_cohort(context, principal, key)
    if not cohort.frozen:
        raise ApiError(409, "not_frozen", f"cohort {key!r} is a saved query: it has no fixed members",
                       f"freeze it: POST /api/v1/cohorts/{cohort.id}/freeze")
    rows: list[dict[str, Any]] = []
    seen = 0
    for batch in rq.members(context.engine, cohort.id, node=node.value if node else None, projects=projects):
        for m in batch:
            if seen >= offset and len(rows) < limit:
                rows.append({"node": m.node, "project_id": m.project_id, "submitter_id": m.submitter_id,
                             "object_id": m.object_id})
            seen += 1
    audit(context, request, principal, "cohort.members", cohort.identifier or str(cohort.id), len(rows))
    return {"identifier": cohort.identifier, "total": seen, "offset": offset, "members": rows}


@router.get("/cohorts/{key}/manifest", summary="The files of a snapshot (within your projects)",
            response_class=StreamingResponse,
            responses={200: {"content": {t: {} for t in rq.MEDIA_TYPES.values()}}})
def cohort_manifest(request: Request, key: str = CohortKey, format: ExportFormat = Query(default="json"),
                    principal: Principal = Depends(current_principal),
                    context: ServerContext = Depends(get_context)) -> StreamingResponse:
    cohort, _ = visible_cohort(context, principal, key)
    if not cohort.frozen or cohort.identifier is None:
        raise ApiError(409, "not_frozen", f"cohort {key!r} is a saved query: freeze it first",
                       f"POST /api/v1/cohorts/{cohort.id}/freeze")
    chunks = audited_cohort_manifest(context, request, principal, scope_of(context, principal), cohort, format)
    return manifest_stream(chunks, format)


def audited_cohort_manifest(context: ServerContext, request: Request, principal: Principal,
                            projects: list[str] | None, cohort: rq.Cohort, format: str) -> Iterator[bytes]:
    """The files a frozen cohort pinned (within ``projects``), as ``format`` chunks; recorded as
    ``research.manifest`` (this API's cohort manifests and the explorer's).

    The files are the snapshot's (``cohort_member.object_id``), not those its instances hold
    now: a corrected study does not change a frozen cohort. A pinned file that is no longer in
    the commons is a 409 naming it, never replaced by another one.
    """
    found = frozen_files(context.engine, context.store, cohort.id, rq.MANIFEST_COLUMNS, projects=projects)
    if found.gone:
        raise ApiError(409, "files_gone", f"{len(found.gone)} file(s) of cohort {cohort.identifier} are no longer "
                       f"in the commons, so it cannot be obtained as frozen: {'; '.join(found.gone[:5])}",
                       "ask the commons operator (a file removed from the commons cannot be downloaded); "
                       "freeze the cohort's query again for the files the commons holds now")
    audit(context, request, principal, "research.manifest", cohort.identifier or str(cohort.id), len(found.rows),
          detail={"filter": {"in_cohort": cohort.identifier}, "changed_since_freeze": len(found.changed)})
    return rq.write_manifest([found.rows], format)  # type: ignore[arg-type]
