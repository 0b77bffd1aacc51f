"""The research API: query, list, count, facet and export records; manifests; objects; whole-index Parquet.

Every route reads through :mod:`radcommons.server.access` (the one access decision) and
hands its project list to :mod:`radcommons.store.query`, which applies it to every table a
query touches. Every data access is appended to the audit log (who, what, from where, how
many records). See docs/API.md ("Research API").
"""

from __future__ import annotations

import enum
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Text, cast, select
from starlette.background import BackgroundTask

from radcommons.dictionary import load_dictionary
from radcommons.server.access import aggregate_scope, optional_principal, research_projects
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.errors import ApiError
from radcommons.store import query as rq
from radcommons.store.index import node_tables
from radcommons.store.index.accounts import Principal, record_audit
from radcommons.store.index.schema import system_table
from radcommons.store.objects import ObjectNotFoundError

router = APIRouter(tags=["research"])

#: Node types of the data dictionary (path parameter ``{node}``): an unknown one is a 422 naming it.
Node = enum.StrEnum("Node", {name: name for name in load_dictionary().node_names})  # type: ignore[misc]
ManifestNode = Literal["case", "imaging_study", "series", "instance"]
ExportFormat = Literal["csv", "tsv", "jsonl", "json", "parquet"]
#: Rows per page over HTTP (the engine allows more; an export streams everything).
MAX_PAGE = 1000
#: The listing resources: URL path -> node type.
LISTINGS = {
    "datasets": "dataset", "cases": "case", "studies": "imaging_study", "series": "series",
    "instances": "instance", "measurements": "measurement", "visits": "visit", "conditions": "condition",
    "medications": "medication", "procedures": "procedure", "observations": "observation",
}
_FIELD = r"^[A-Za-z_][A-Za-z0-9_.]*$"


class StrictBody(BaseModel):
    """A request body that refuses fields it does not define (422 naming them): a misspelt
    ``"filters"`` was ignored, and the answer (or a frozen cohort) held every readable record."""

    model_config = ConfigDict(extra="forbid")


class SortKey(StrictBody):
    field: str = Field(min_length=1, max_length=128, pattern=_FIELD, description="A field, e.g. age_at_index")
    direction: Literal["asc", "desc"] = "asc"


class QueryBody(StrictBody):
    """A query of one node type (docs/QUERY.md)."""

    filter: dict[str, Any] | None = Field(default=None, description="JSON filter, e.g. {\"=\": {\"sex\": \"Female\"}}")
    fields: list[str] | None = Field(default=None, max_length=200,
                                     description="Fields of the node and its parents (case.sex); default: all")
    sort: list[SortKey] = Field(default_factory=list, max_length=10)
    limit: int = Field(default=rq.DEFAULT_LIMIT, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=4096, description="next_cursor of the previous page")
    count: bool = Field(default=False, description="also return the number of matching records")
    facets: list[str] | None = Field(default=None, max_length=50, description="also count these fields")
    bins: dict[str, list[float]] | None = Field(default=None, description="numeric facet edges, per field")


class FacetBody(StrictBody):
    filter: dict[str, Any] | None = None
    fields: list[str] = Field(min_length=1, max_length=50, description="Fields to count, e.g. sex, case.age_at_index")
    bins: dict[str, list[float]] | None = Field(default=None, description="e.g. {\"age_at_index\": [0, 18, 65]}")
    top: int | None = Field(default=None, ge=1, le=1000, description="keep the N largest values per field")


class ExportBody(StrictBody):
    filter: dict[str, Any] | None = None
    fields: list[str] | None = Field(default=None, max_length=200)
    sort: list[SortKey] = Field(default_factory=list, max_length=10)


class ManifestBody(StrictBody):
    node: ManifestNode = Field(default="instance", description="the node type the filter is written for")
    filter: dict[str, Any] | None = None


def audit(context: ServerContext, request: Request, principal: Principal | None, action: str, target: str,
          records: int | None, *, project: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """Append one data-access event (who, what, when, from where, how many records)."""
    with context.engine.begin() as conn:
        record_audit(conn, actor=principal.name if principal else None, action=action, target=target,
                     project=project, client=client_address(request), records=records, detail=detail)


def scope_of(context: ServerContext, principal: Principal) -> list[str] | None:
    """The projects ``principal`` may read (403 ``dua_required`` first when the agreement is missing)."""
    with context.engine.connect() as conn:
        return research_projects(conn, principal)


def _sort(keys: list[SortKey]) -> list[tuple[str, Any]]:
    return [(key.field, key.direction) for key in keys]


def _buckets(found: dict[str, list[rq.Bucket]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [{"value": b.value, "count": b.count} for b in buckets] for name, buckets in found.items()}


def _page(context: ServerContext, principal: Principal, node: str, body: QueryBody) -> dict[str, Any]:
    projects = scope_of(context, principal)
    page = rq.query(context.engine, node, body.filter, fields=body.fields, sort=_sort(body.sort), limit=body.limit,
                    cursor=body.cursor, projects=projects)
    out: dict[str, Any] = {"node": node, "fields": list(page.fields), "rows": jsonable_encoder(page.rows),
                           "next_cursor": page.next_cursor}
    if body.count:
        out["count"] = rq.count(context.engine, node, body.filter, projects=projects)
    if body.facets:
        out["facets"] = _buckets(rq.facets(context.engine, node, body.filter, body.facets, bins=body.bins,
                                           projects=projects))
    return out


@router.post("/query/{node}", summary="Query records of one node type (filter, fields, sort, cursor pages)")
def query_node(node: Node, body: QueryBody, request: Request, principal: Principal = Depends(current_principal),
               context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    out = _page(context, principal, node.value, body)
    audit(context, request, principal, "research.query", node.value, len(out["rows"]),
          detail={"filter": body.filter, "cursor": bool(body.cursor)})
    return out


def _listing(node: str) -> Any:
    def listing(request: Request,
                limit: int = Query(default=rq.DEFAULT_LIMIT, ge=1, le=MAX_PAGE),
                cursor: str | None = Query(default=None, max_length=4096),
                fields: str | None = Query(default=None, max_length=4096,
                                           description="comma-separated fields (default: all)"),
                sort: str | None = Query(default=None, max_length=1024,
                                         description="comma-separated fields, '-' for descending: -age_at_index"),
                principal: Principal = Depends(current_principal),
                context: ServerContext = Depends(get_context)) -> dict[str, Any]:
        # Field names are checked by the query engine (a 400 naming the field and close matches).
        keys = [SortKey.model_construct(field=s.strip().lstrip("-"), direction="desc" if s.strip().startswith("-")
                                        else "asc") for s in (sort or "").split(",") if s.strip().lstrip("-")]
        names = [f.strip() for f in (fields or "").split(",") if f.strip()] or None
        body = QueryBody.model_construct(limit=limit, cursor=cursor, fields=names, sort=keys, filter=None, count=False,
                                         facets=None, bins=None)
        out = _page(context, principal, node, body)
        audit(context, request, principal, "research.list", node, len(out["rows"]))
        return out

    listing.__name__ = f"list_{node}"
    return listing


for _path, _node in LISTINGS.items():
    router.add_api_route(f"/{_path}", _listing(_node), methods=["GET"], summary=f"List {_node} records (cursor pages)")


@router.get("/summary", summary="Counts of the commons (no token needed; small counts suppressed)")
def summary(request: Request, principal: Principal | None = Depends(optional_principal),
            context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    with context.engine.connect() as conn:
        projects, min_count = aggregate_scope(conn, principal)
    counts = {node: rq.suppressed_count(rq.count(context.engine, node, None, projects=projects), min_count)
              for node in ("case", "imaging_study", "series", "instance")}
    return {"projects": len(projects) if projects is not None else _all_projects(context),
            "cases": counts["case"], "studies": counts["imaging_study"], "series": counts["series"],
            "instances": counts["instance"], "min_count": min_count}


def _all_projects(context: ServerContext) -> int:
    with context.engine.connect() as conn:
        return len(conn.execute(select(node_tables()["project"].c.id)).all())


@router.post("/facets/{node}", summary="Counts per value of fields (no token: open projects, small cells hidden)")
def facet_node(node: Node, body: FacetBody, request: Request, principal: Principal | None = Depends(optional_principal),
               context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    with context.engine.connect() as conn:
        projects, min_count = aggregate_scope(conn, principal)
    found = rq.facets(context.engine, node.value, body.filter, body.fields, bins=body.bins, projects=projects,
                      min_count=min_count, top=body.top)
    audit(context, request, principal, "research.facets", node.value, None,
          detail={"fields": body.fields, "filter": body.filter})
    return {"node": node.value, "facets": _buckets(found), "min_count": min_count}


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@router.post("/export/{node}", summary="Every matching record as CSV, TSV, JSON (lines) or Parquet, streamed",
             response_class=StreamingResponse,
             responses={200: {"content": {t: {} for t in rq.MEDIA_TYPES.values()}}})
def export_node(node: Node, body: ExportBody, request: Request, format: ExportFormat = Query(default="csv"),
                principal: Principal = Depends(current_principal),
                context: ServerContext = Depends(get_context)) -> StreamingResponse:
    chunks = audited_export(context, request, principal, scope_of(context, principal), node.value, body.filter,
                            format, fields=body.fields, sort=_sort(body.sort))
    return StreamingResponse(chunks, media_type=rq.MEDIA_TYPES[format],
                             headers=_attachment(f"{node.value}.{format}"))


def audited_export(context: ServerContext, request: Request, principal: Principal, projects: Sequence[str] | None,
                   node: str, filter: dict[str, Any] | None, format: str, *, fields: list[str] | None = None,
                   sort: list[tuple[str, Any]] | None = None) -> Iterator[bytes]:
    """The records of ``node`` matching ``filter`` in ``projects``, as ``format`` chunks; recorded as
    ``research.export`` (this API's exports and the explorer's CSV downloads).

    Started here, so a bad filter or field is a 400 before the first byte is sent.
    """
    chunks = rq.export(context.engine, node, filter, format=format, fields=fields,  # type: ignore[arg-type]
                       sort=sort or [], projects=projects)
    total = rq.count(context.engine, node, filter, projects=projects)
    audit(context, request, principal, "research.export", node, total, detail={"format": format, "filter": filter})
    return chunks


def audited_manifest(context: ServerContext, request: Request, principal: Principal, projects: Sequence[str] | None,
                     node: str, filter: dict[str, Any] | None, format: str, target: str) -> Iterator[bytes]:
    """The file manifest of ``node`` records matching ``filter`` in ``projects``, as ``format`` chunks;
    recorded as ``research.manifest`` of ``target`` (this API's manifests and the explorer's)."""
    chunks = rq.export_manifest(context.engine, node, filter, format=format, projects=projects)  # type: ignore[arg-type]
    files = rq.count(context.engine, "instance", filter if node == "instance" else
                     {"exists": {"node": node, "filter": filter or {}}}, projects=projects)
    audit(context, request, principal, "research.manifest", target, files, detail={"filter": filter})
    return chunks


def manifest_response(context: ServerContext, request: Request, principal: Principal, node: str,
                      filter: dict[str, Any] | None, format: str, target: str) -> StreamingResponse:
    """The file manifest of ``node`` records matching ``filter`` in the readable projects."""
    chunks = audited_manifest(context, request, principal, scope_of(context, principal), node, filter, format, target)
    return manifest_stream(chunks, format)


def manifest_stream(chunks: Iterator[bytes], format: str) -> StreamingResponse:
    """A manifest's ``format`` chunks as a ``manifest.FORMAT`` attachment."""
    return StreamingResponse(chunks, media_type=rq.MEDIA_TYPES[format], headers=_attachment(f"manifest.{format}"))


@router.post("/manifest", summary="The files (object id, sha256, size, UIDs) of a query's records",
             response_class=StreamingResponse,
             responses={200: {"content": {t: {} for t in rq.MEDIA_TYPES.values()}}})
def manifest(body: ManifestBody, request: Request, format: ExportFormat = Query(default="json"),
             principal: Principal = Depends(current_principal),
             context: ServerContext = Depends(get_context)) -> StreamingResponse:
    return manifest_response(context, request, principal, body.node, body.filter, format, body.node)


@router.get("/index.parquet", summary="The whole index of the readable projects, one row per series (DuckDB-ready)",
            response_class=FileResponse,
            responses={200: {"content": {"application/vnd.apache.parquet": {}}}})
def index_parquet(request: Request, principal: Principal = Depends(current_principal),
                  context: ServerContext = Depends(get_context)) -> FileResponse:
    projects = scope_of(context, principal)
    folder = context.state_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(suffix=".parquet", dir=folder)
    os.close(handle)
    try:
        rows = rq.export_index_parquet(context.engine, name, projects)
    except BaseException:
        os.unlink(name)
        raise
    audit(context, request, principal, "research.index_parquet", "index.parquet", rows)
    return FileResponse(name, media_type="application/vnd.apache.parquet", filename="index.parquet",
                        background=BackgroundTask(os.unlink, name))


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``Range: bytes=`` header, None for the whole file; 416 when unsatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges, or another unit: RFC 9110 lets us send the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ApiError(416, "range_not_satisfiable", f"the range {header!r} is outside the object ({size} bytes)",
                       "resume from an offset smaller than the object's size",
                       {"Content-Range": f"bytes */{size}"})
    return start, end


def _object_project(context: ServerContext, principal: Principal, sha256: str) -> str:
    """The project of an indexed instance with this content that ``principal`` may read, or of a
    file a frozen cohort they may see pinned (replaced in the index since: a corrected study);
    404 otherwise."""
    projects = scope_of(context, principal)
    instance = node_tables()["instance"]
    statement = select(instance.c.project_id).where(instance.c.object_id == sha256).limit(1)
    if projects is not None:
        statement = statement.where(instance.c.project_id.in_(projects))
    with context.engine.connect() as conn:
        project = conn.execute(statement).scalar()
    if project is None:
        project = rq.pinning_project(context.engine, sha256, reader=principal.name, projects=projects)
    if project is None and principal.is_curator:
        project = _curated_project(context, sha256)
    if project is None:
        # 404 whether it is absent or unreadable: a digest's existence is not disclosed.
        raise ApiError(404, "not_found", f"no readable object {sha256}",
                       "take object ids from a manifest of your query or cohort")
    return str(project)


def _curated_project(context: ServerContext, sha256: str) -> str | None:
    """For curators and administrators only: the project of a file an older study version names,
    or of a quarantined file (held or decided), so the history and the quarantine can be inspected;
    researchers never get these (the download is audited like any other)."""
    versions, quarantine = system_table("study_version"), system_table("quarantine")
    with context.engine.connect() as conn:
        for statement in (
            select(quarantine.c.project_id).where(quarantine.c.sha256 == sha256),
            # the object ids of a version are in its JSON list of instances (a digest is hex: no LIKE wildcard)
            select(versions.c.project_id).where(cast(versions.c.instances, Text).like(f"%{sha256}%")),
        ):
            project = conn.execute(statement.limit(1)).scalar()
            if project is not None:
                return str(project)
    return None


def read_range(handle: Any, start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of an open binary file from ``start``, in chunks (fewer when the file ends first)."""
    handle.seek(start)
    left = length
    while left > 0:
        chunk = handle.read(min(1024 * 1024, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def _stream(context: ServerContext, sha256: str, start: int, length: int) -> Iterator[bytes]:
    with context.store.open_unverified(sha256) as handle:
        yield from read_range(handle, start, length)


@router.get("/objects/{sha256}", summary="Download a file by its sha256 (Range requests resume downloads)",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/dicom": {}}}, 206: {"description": "Partial Content"},
                       416: {"description": "Range Not Satisfiable"}})
def get_object(request: Request, sha256: str = Path(pattern=r"^[0-9a-f]{64}$"),
               principal: Principal = Depends(current_principal),
               context: ServerContext = Depends(get_context)) -> Response:
    project = _object_project(context, principal, sha256)
    try:
        size = context.store.size(sha256)
    except ObjectNotFoundError:
        # As the cohort manifest says of a pinned file that has gone; the store's location is the operator's.
        raise ApiError(409, "files_gone", f"file {sha256} is no longer in the commons",
                       "ask the commons operator (a file removed from the commons cannot be downloaded); "
                       "freeze the cohort's query again for the files the commons holds now") from None
    wanted = parse_range(request.headers.get("Range"), size)
    if wanted is not None and request.headers.get("If-Range") not in (None, f'"{sha256}"'):
        wanted = None  # the client's partial copy is of another version: send everything
    start, end = wanted if wanted is not None else (0, size - 1)
    length = max(end - start + 1, 0)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{sha256}"', "Content-Length": str(length),
               "Cache-Control": "private, max-age=31536000, immutable"}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    audit(context, request, principal, "research.object", sha256, 1, project=project,
          detail={"range": [start, end] if wanted else None})
    return StreamingResponse(_stream(context, sha256, start, length), status_code=206 if wanted else 200,
                             media_type="application/dicom", headers=headers)

