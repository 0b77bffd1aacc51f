"""ML-ready exports over HTTP: start one for a cohort, follow its status, download its files.

``POST /exports`` takes the access decision of the operator's ``radcommons export --for USER``
(:func:`radcommons.pipelines.export.export_scope` for the requesting user: never a sequestered
project for a researcher, the data use agreement required) and runs
:func:`radcommons.pipelines.export.export_cohort` in the background (:mod:`radcommons.server.exports`).
An export is read only by its owner or an administrator; anyone else gets 404. A file link
followed by the explorer's page (session cookie, HTML accepted) of an export that is no longer
done, or not the user's, goes to the export's page (303), which says what happened and what to do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import Field

from radcommons.errors import UserError
from radcommons.export.splits import parse_weights
from radcommons.pipelines.export import check_stratify, cohort_selection, export_scope
from radcommons.server.access import require_data_use_agreement, research_projects
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, get_context
from radcommons.server.errors import ApiError
from radcommons.server.exports import ExportJobs, ExportRequest
from radcommons.server.routes.cohorts import visible_cohort
from radcommons.server.routes.params import COHORT_KEY
from radcommons.server.routes.research import StrictBody, audit, parse_range, read_range
from radcommons.store.index.accounts import Principal

router = APIRouter(tags=["exports"])
EXPORT_ID = r"^rc-export-[0-9a-f]{16}$"
_JOBS_LOCK = threading.Lock()


class ExportStart(StrictBody):
    cohort: str = Field(pattern=COHORT_KEY,
                        description="a frozen cohort (rc-cohort-...) or a saved query (its number)")
    format: Literal["dicom", "nifti", "png"] = Field(description="dicom, nifti (volumes) or png (radiographs)")
    split: str = Field(default="", max_length=1000, description="patient-level splits, e.g. train=0.8,test=0.2")
    stratify: list[str] = Field(default_factory=list, max_length=20, description="fields to stratify the split on")
    seed: int = Field(default=0, ge=0, le=2**31)
    bits: Literal[8, 16] = Field(default=8, description="png: bits per sample")
    size: int | None = Field(default=None, ge=1, le=16384, description="png: longest side in pixels")


def jobs_of(request: Request, context: ServerContext = Depends(get_context)) -> ExportJobs:
    """The server's exports (``STATE/exports``), made on first use."""
    with _JOBS_LOCK:
        jobs = getattr(request.app.state, "exports", None)
        if jobs is None:
            jobs = request.app.state.exports = ExportJobs(context.state_dir / "exports", context.engine, context.store,
                                                          retention_hours=context.settings.export_retention_hours)
    return jobs  # type: ignore[no-any-return]


def _invalid(field: str, error: UserError) -> ApiError:
    return ApiError(422, "validation_error", f"invalid request: {field}: {error.message}", error.hint,
                    fields=[{"field": f"body.{field}", "message": error.message}])


def launch_export(context: ServerContext, request: Request, principal: Principal, jobs: ExportJobs,
                  body: ExportStart) -> dict[str, Any]:
    """Check ``body``, take the access decision and start the export; its first status.

    The one way an export is started over HTTP (the API's ``POST /exports`` and the explorer's
    export form): :class:`ApiError` naming the field for a bad split or stratify field, 403 when
    the data use agreement is missing, 404 for a cohort the user may not see.
    """
    require_data_use_agreement(principal)
    try:
        weights = parse_weights(body.split) if body.split else None
    except UserError as error:
        raise _invalid("split", error) from None
    stratify = tuple(s.strip() for s in body.stratify if s.strip())
    try:
        if stratify and not weights:
            raise UserError("stratify needs split", 'e.g. "split": "train=0.8,test=0.2", "stratify": ["sex"]')
        check_stratify(stratify)
    except UserError as error:
        raise _invalid("stratify", error) from None
    cohort, _ = visible_cohort(context, principal, body.cohort)
    try:
        selection = cohort_selection(context.engine, cohort.identifier or str(cohort.id))
    except UserError as error:
        raise _invalid("cohort", error) from None
    try:
        scope = export_scope(context.engine, for_user=principal.name)
    except UserError as error:
        raise ApiError(403, "forbidden", error.message, error.hint) from None
    status = jobs.start(principal.name, scope, selection,
                        ExportRequest(body.format, weights, body.split, stratify, body.seed, body.bits, body.size))
    audit(context, request, principal, "research.export_start", status["id"], None,
          detail={"cohort": selection.label, "format": body.format})
    return status


@router.post("/exports", status_code=202, summary="Start an ML-ready export of a cohort (docs/EXPORT.md)")
def start_export(body: ExportStart, request: Request, principal: Principal = Depends(current_principal),
                 context: ServerContext = Depends(get_context), jobs: ExportJobs = Depends(jobs_of)) -> dict[str, Any]:
    return launch_export(context, request, principal, jobs, body)


def owned_export(jobs: ExportJobs, principal: Principal, export_id: str) -> dict[str, Any]:
    """The status of ``export_id`` when ``principal`` owns it or is an administrator (404 otherwise)."""
    require_data_use_agreement(principal)
    try:
        status = jobs.status(export_id)
    except KeyError:
        status = None
    if status is None or (status["owner"] != principal.name and principal.role != "admin"):
        raise ApiError(404, "not_found", f"no export {export_id!r} of yours",
                       "start one with POST /api/v1/exports")
    if status["owner"] == principal.name and status["state"] == "done":
        # Its files are data access like /objects: the owner's access now, not when it was made.
        with jobs.engine.connect() as conn:
            readable = research_projects(conn, principal)
        lost = sorted(set(status.get("holds", status["projects"])) - set(readable)) if readable is not None else []
        if lost:
            status = jobs.retire(status, "withdrawn", f"you may no longer read {', '.join(lost)}, which this export "
                                 "holds, so its files were removed; start a new export: it holds what you may read now",
                                 lost=lost)
    return status


ExportId = Path(pattern=EXPORT_ID, description="rc-export-... as POST /api/v1/exports answered")


@router.get("/exports/{export_id}", summary="An export's state (queued, running, done, failed, expired, "
                                          "withdrawn) and, when done, its files and the series that failed")
def get_export(export_id: str = ExportId, principal: Principal = Depends(current_principal),
               jobs: ExportJobs = Depends(jobs_of)) -> dict[str, Any]:
    return owned_export(jobs, principal, export_id)


def _page_asked(request: Request) -> bool:
    """Whether a person's browser asked (the explorer's session cookie, an HTML page accepted): a
    link of the export's page, which the explorer's status page answers better than JSON."""
    return "authorization" not in request.headers and "text/html" in request.headers.get("accept", "")


def _filename(path: str) -> str:
    """The file's own name for Content-Disposition (ASCII letters, digits and ``._-``)."""
    name = path.rsplit("/", 1)[-1]
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name) or "file"


def _read(path: Any, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from read_range(handle, start, length)


@router.get("/exports/{export_id}/files/{path:path}", summary="One file of a finished export (Range resumes)",
            response_class=StreamingResponse,
            responses={206: {"description": "Partial Content"}, 416: {"description": "Range Not Satisfiable"}})
def get_export_file(request: Request, path: str, export_id: str = ExportId,
                    principal: Principal = Depends(current_principal),
                    context: ServerContext = Depends(get_context), jobs: ExportJobs = Depends(jobs_of)) -> Response:
    try:
        status = owned_export(jobs, principal, export_id)
    except ApiError as error:
        if error.status == 404 and _page_asked(request):  # the explorer's page says it, with what to do
            return RedirectResponse(f"/exports/{export_id}", status_code=303)
        raise
    if status["state"] != "done" and _page_asked(request):
        # A link of a page opened before the export expired or was withdrawn: its page says what
        # happened and what to do (JSON, or a failed download, would not).
        return RedirectResponse(f"/exports/{export_id}", status_code=303)
    if status["state"] in ("expired", "withdrawn"):
        raise ApiError(410, "gone", f"export {export_id} is {status['state']}: {status['message']}",
                       "start a new export: POST /api/v1/exports")
    if status["state"] != "done":
        raise ApiError(409, "not_ready", f"export {export_id} is {status['state']}: its files are not ready",
                       f"wait until GET /api/v1/exports/{export_id} says done")
    try:
        file, entry = jobs.file(status, path)
    except ValueError:
        raise ApiError(400, "bad_path", f"{path!r} is not a relative path inside the export",
                       "take paths from the export's file list") from None
    except KeyError:
        raise ApiError(404, "not_found", f"export {export_id} has no file {path!r}",
                       "take paths from the export's file list") from None
    size, etag = entry["size"], f'"{entry["sha256"]}"'
    wanted = parse_range(request.headers.get("Range"), size) if size else None
    if wanted is not None and request.headers.get("If-Range") not in (None, etag):
        wanted = None
    start, end = wanted if wanted is not None else (0, size - 1)
    length = max(end - start + 1, 0)
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Content-Length": str(length),
               # a link of the explorer's page saves the file under its name
               "Content-Disposition": f"attachment; filename=\"{_filename(path)}\""}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    audit(context, request, principal, "research.export_file", f"{export_id}/{path}", 1,
          detail={"range": [start, end] if wanted else None})
    return StreamingResponse(_read(file, start, length), status_code=206 if wanted else 200,
                             media_type="application/octet-stream", headers=headers)


@router.delete("/exports/{export_id}", summary="Delete an export, its files and its status (owner or administrator)")
def delete_export(request: Request, export_id: str = ExportId, principal: Principal = Depends(current_principal),
                  context: ServerContext = Depends(get_context),
                  jobs: ExportJobs = Depends(jobs_of)) -> dict[str, Any]:
    owned_export(jobs, principal, export_id)
    jobs.delete(export_id)
    audit(context, request, principal, "research.export_delete", export_id, None)
    return {"id": export_id, "deleted": True}
