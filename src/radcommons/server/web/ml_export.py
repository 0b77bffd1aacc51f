"""The cohort page's "Export for ML" form: start an export, follow its status, list its files.

The form posts to :func:`radcommons.server.routes.exports.launch_export`, the one way an export
is started over HTTP (the API's ``POST /api/v1/exports`` calls it too), so the checks (split,
stratify fields, the data use agreement, the cohort's visibility) and the access decision
(:func:`radcommons.pipelines.export.export_scope`: never a sequestered project for a researcher)
are the API's. The status fragment polls itself with htmx until the export is over; every
state (:data:`radcommons.server.exports.STATES`) is told in a sentence that says what happened
and what the researcher can do (:func:`explain`), and the series that failed to convert are
listed with their reasons. The file links are the API's owner-only download route (the session
cookie authenticates it, Range resumes it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from radcommons.server.auth import same_origin
from radcommons.server.context import ServerContext, get_context
from radcommons.server.errors import ApiError
from radcommons.server.exports import ExportJobs
from radcommons.server.routes.exports import EXPORT_ID, ExportStart, jobs_of, launch_export, owned_export
from radcommons.server.web.access import View
from radcommons.server.web.routes import _readable_cohort, _records_or_refuse, _refuse, current_view
from radcommons.server.web.templating import page

router = APIRouter(include_in_schema=False)

#: The form's labels, so a message names the field as the page shows it.
FIELD_LABELS = {"format": "Format", "split": "Split", "stratify": "Stratify on", "seed": "Seed",
                "bits": "PNG bits per sample", "size": "PNG longest side", "cohort": "Cohort"}
#: Files listed first (the rest are the images), in this order.
KEY_FILES = ("README.md", "labels.csv", "labels.parquet", "manifest.csv", "manifest.json")
#: Image files listed on the page at most (the label table and manifest list them all).
MAX_LISTED = 200
_EXPORT_ID = re.compile(EXPORT_ID)


class FormError(Exception):
    """A message for the person who filled the form (it names the field)."""


def _label(field: object) -> str:
    name = str(field).removeprefix("body.")
    return FIELD_LABELS.get(name, name)


def parse_export_form(identifier: str, form: Mapping[str, Any]) -> ExportStart:
    """The API's request body from the form's fields; :class:`FormError` naming the field when one is bad."""
    def text(name: str) -> str:
        return str(form.get(name) or "").strip()

    values: dict[str, Any] = {"cohort": identifier, "format": text("format"), "split": text("split"),
                              "stratify": [s.strip() for s in text("stratify").split(",") if s.strip()]}
    for name in ("seed", "bits", "size"):
        if text(name):  # empty means the default; digits are numbers, anything else is reported as given
            # ASCII only: str.isdigit() also holds for '²', which int() refuses.
            values[name] = int(text(name)) if text(name).isascii() and text(name).isdigit() else text(name)
    try:
        return ExportStart.model_validate(values)
    except ValidationError as error:
        raise FormError("; ".join(f"{_label(e['loc'][0])}: {e['msg']}" for e in error.errors())) from None


def api_message(error: ApiError) -> str:
    """An API error as one sentence for the page: the field's label, the message and the hint."""
    fields = error.extra.get("fields") or []
    message = error.message
    if fields:
        message = f"{_label(fields[0]['field'])}: {fields[0]['message']}"
    return f"{message} ({error.hint})" if error.hint else message


def _when(timestamp: object) -> str:
    """An ISO 8601 timestamp of a status for a person (``2026-12-07 10:55 UTC``), or ``""``."""
    text = str(timestamp or "")
    return f"{text[:10]} {text[11:16]} UTC" if len(text) >= 16 else text


def explain(status: Mapping[str, Any]) -> dict[str, str]:
    """The export's state for a person: ``what`` happened and what they can ``do`` (plain sentences),
    and the ``cohort`` page to start a new export from (``""`` when it was no frozen cohort)."""
    state, message = status.get("state"), str(status.get("message") or "")
    cohort = str(status.get("cohort") or "")
    if not cohort.startswith("rc-cohort-"):
        cohort = ""
    again = "Start a new export from the cohort's page." if cohort else "Start a new export of the cohort."
    failed = status.get("failed_series") or status.get("failures") or []
    if state == "queued":
        what, do = "Waiting to start.", "This page follows it by itself; you may leave and come back to this address."
    elif state == "running":
        what, do = "Converting the cohort's series.", \
            "This page follows it by itself; you may leave and come back to this address."
    elif state == "done" and failed:
        what = (f"Ready, but incomplete: {len(failed)} series could not be exported, so their files are not in it "
                "(listed below; README.md lists them too).")
        do = ("Download the rest below. A DICOM format export holds the files as stored; tell the commons' "
              f"operators the export id ({status.get('id')}) if a stored file is damaged or missing.")
    elif state == "done":
        what = "Ready: download the files below."
        do = "radcommons download or Client.download_export fetches them all, resumably."
    elif state == "failed":
        what, do = f"This export failed: {message[:1].upper() + message[1:]}", again
    elif state == "expired":
        when = f" on {_when(status.get('expires_at') or status.get('retired_at'))}" if \
            status.get("expires_at") or status.get("retired_at") else ""
        what = (f"This export expired{when}: the commons keeps an export's files for a limited time after it "
                "finishes, and then removes them.")
        do = again
    elif state == "withdrawn":
        lost = ", ".join(status.get("lost") or ()) or "a project it holds"
        when = f" on {_when(status['retired_at'])}" if status.get("retired_at") else ""
        what = (f"This export was withdrawn{when}: you may no longer read {lost}, so its files were removed.")
        do = f"{again} A new export holds what you may read now."
    else:  # a state this page does not know yet: the server's own words
        what, do = message, again
    if status.get("state") == "done" and status.get("expires_at"):
        do += f" Its files are kept until {_when(status['expires_at'])}."
    return {"what": what, "do": do, "cohort": cohort}


def failed_series(status: Mapping[str, Any]) -> list[dict[str, str]]:
    """The series (or files) the export left out, each with its reason: ``failed_series``, or for an
    export made before that field, its ``failures`` lines (``project/uid: reason``)."""
    if status.get("failed_series") is not None:
        return [dict(f) for f in status["failed_series"]]
    found = []
    for line in status.get("failures") or ():
        key, _, reason = str(line).partition(": ")
        project, _, uid = key.partition("/")
        found.append({"project_id": project, "series_uid": uid, "sop_instance_uid": "", "reason": reason})
    return found


def file_groups(status: Mapping[str, Any]) -> dict[str, Any]:
    """The export's files for the page: the datasheet, label tables and manifest first, then images."""
    files = list(status.get("files") or ())
    key = sorted((f for f in files if f["path"] in KEY_FILES), key=lambda f: KEY_FILES.index(f["path"]))
    images = [f for f in files if f["path"] not in KEY_FILES]
    folders: dict[str, list[dict[str, Any]]] = {}
    for entry in images[:MAX_LISTED]:  # one heading per folder: the paths are long, their folders shared
        folder, _, name = entry["path"].rpartition("/")
        folders.setdefault(folder, []).append({**entry, "name": name})
    return {"key_files": key, "image_folders": list(folders.items()), "more_images": max(len(images) - MAX_LISTED, 0),
            "image_count": len(images), "image_bytes": sum(f["size"] for f in images)}


def _status(request: Request, view: View, status: Mapping[str, Any] | None = None, error: str | None = None,
            code: int = 200) -> HTMLResponse:
    """The status fragment for htmx, or the whole export page for a browser without JavaScript."""
    # "export", not "status": page() takes status= for the HTTP status code.
    data: dict[str, Any] = {"export": status, "error": error, **(file_groups(status) if status else {})}
    if status:
        data.update(explained=explain(status), failed_series=failed_series(status))
    if request.headers.get("HX-Request") == "true":
        # htmx swaps only 2xx answers: an error is still a fragment to show, so it is sent as 200.
        return page(request, "export_status.html", view, **data)
    return page(request, "export.html", view, status=code, title="Export for ML", **data)


@router.post("/cohorts/{identifier}/exports", response_class=HTMLResponse)
async def start_cohort_export(identifier: str, request: Request, view: View = Depends(current_view),
                              context: ServerContext = Depends(get_context)) -> Response:
    refused = _records_or_refuse(request, view)
    if refused or not same_origin(request):
        return refused or _refuse(request, view, "This form must be sent from this site.")
    cohort = await run_in_threadpool(_readable_cohort, context, view, identifier)
    if cohort is None:
        return _refuse(request, view, f"No frozen cohort {identifier} that you may read: an export is made of a "
                       "frozen cohort of yours, or of one wholly inside the projects you may read. Freeze one in "
                       "the explorer, then use Export for ML on its page.", 404)
    try:
        body = parse_export_form(cohort.identifier, await request.form())
        jobs: ExportJobs = jobs_of(request, context)
        status = await run_in_threadpool(launch_export, context, request, view.principal, jobs, body)
    except FormError as error:
        return _status(request, view, error=str(error), code=422)
    except ApiError as error:
        return _status(request, view, error=api_message(error), code=error.status)
    return _status(request, view, status, code=202)


@router.get("/exports/{export_id}", response_class=HTMLResponse)
def export_status(export_id: str, request: Request, view: View = Depends(current_view),
                  context: ServerContext = Depends(get_context)) -> Response:
    refused = _records_or_refuse(request, view)
    if refused:
        return refused
    try:
        if not _EXPORT_ID.match(export_id):
            raise ApiError(404, "not_found", f"no export {export_id!r} of yours")
        status = owned_export(jobs_of(request, context), view.principal, export_id)
    except ApiError as error:
        message = error.message[:1].upper() + error.message[1:]
        if error.status == 404:  # the API's hint names its route: the page says where to go
            message += (": an export is shown only to whoever started it (and to administrators), until it is "
                        "deleted. Start one with Export for ML on a frozen cohort's page.")
        else:
            message += f" ({error.hint})." if error.hint else "."
        # A fragment for htmx too (not a 4xx it would not swap), so a polling page stops asking.
        return _status(request, view, error=message, code=error.status)
    return _status(request, view, status)
