"""The dashboard: counts for funders, submission status for contributors, quarantine for curators.

Sections a role may not see are not rendered at all (the template gets no data for them): the
quarantine is listed only for curators and admins, submissions only for contributors and
curators, and every count is scoped to the viewer's readable projects (suppressed below 10 for
anonymous visitors). Quarantine decisions call the same pipeline functions as the API
(``radcommons.pipelines.submission.release`` / ``delete_quarantined``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from radcommons.pipelines import submission as pipeline
from radcommons.pipelines.submission import SubmissionError
from radcommons.server.auth import same_origin
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.errors import KIND_STATUS
from radcommons.server.web.access import View
from radcommons.server.web.charts import bar_chart
from radcommons.server.web.routes import _refuse, current_view
from radcommons.server.web.study import thumbnail_png
from radcommons.server.web.templating import page
from radcommons.store.index.schema import system_table
from radcommons.store.query import Bucket, facets
from radcommons.store.query.facets import suppress

router = APIRouter(include_in_schema=False)


def _chart(context: ServerContext, view: View, title: str, node: str, field: str, unit: str) -> Any:
    buckets = facets(context.engine, node, None, [field], projects=view.projects, min_count=view.min_count,
                     top=15)[field]
    items = [("Not recorded" if b.value is None else str(b.value), b.count) for b in buckets if b.count != 0]
    return {"title": title, "svg": bar_chart(title, items, unit=unit)}


def _months(context: ServerContext, view: View) -> Any:
    """Committed submissions per month (the month of the commit, a system time, not a clinical date)."""
    table = system_table("submission")
    statement = select(table.c.committed_at, table.c.project_id).where(table.c.committed_at.is_not(None))
    with context.engine.connect() as conn:
        rows = conn.execute(statement).all()
    items = month_counts([at for at, project in rows if view.projects is None or project in view.projects],
                         view.min_count)
    return {"title": "Submissions committed per month", "svg": bar_chart("Submissions per month", items,
                                                                          unit="submissions")}


def month_counts(times: list[Any], min_count: int | None) -> list[tuple[str, int | None]]:
    """(YYYY-MM, count) per month of ``times``, oldest first, small counts suppressed as facet cells are
    (:func:`radcommons.store.query.facets.suppress`: a lone small month hides the next smallest too,
    so it cannot be worked out from a total)."""
    months = Counter(at.strftime("%Y-%m") for at in times)
    buckets = [Bucket(month, n) for month, n in sorted(months.items())]
    return [(b.value, b.count) for b in (suppress(buckets, min_count) if min_count else buckets)]


def _submissions(context: ServerContext, view: View) -> list[dict[str, Any]]:
    """The contributor's batches (a curator's: all), each with its receipt's counts and rejections."""
    out = []
    for item in pipeline.list_submissions(context.engine, view.principal)[:50]:
        receipt: dict[str, Any] = {}
        if item.get("status") == "committed":
            try:
                receipt = pipeline.get_receipt(context.engine, view.principal, item["id"])
            except Exception:  # a receipt that cannot be read must not hide the list
                receipt = {}
        problems = [f for s in receipt.get("studies", []) for f in s.get("files", [])]
        clinical = [c for c in receipt.get("clinical", []) if c.get("status") == "rejected"]
        out.append({**item, "receipt": receipt, "file_problems": problems[:20], "clinical_rejected": clinical[:20]})
    return out


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, view: View = Depends(current_view),
              context: ServerContext = Depends(get_context)) -> HTMLResponse:
    charts = [
        _chart(context, view, "Cases by site", "case", "site_id", "cases"),
        _chart(context, view, "Series by modality", "series", "modality", "series"),
        _chart(context, view, "Cases by project", "case", "project_id", "cases"),
        _months(context, view),
    ]
    role = view.principal.role
    submissions = _submissions(context, view) if role in ("contributor", "curator", "admin") else None
    quarantine = pipeline.list_quarantine(context.engine, view.principal) if view.principal.is_curator else None
    return page(request, "dashboard.html", view, title="Dashboard", charts=charts, submissions=submissions,
                quarantine=quarantine, notice=_decision_notice(request))


#: A curator's quarantine decisions (the URL's action) and the word for the outcome.
DECISIONS = {"release": "released", "delete": "deleted"}


def _decision_notice(request: Request) -> str | None:
    """The outcome of the curator's last decision, rebuilt from the redirect's entry number and
    decision: never a sentence taken from the URL, which anyone could write into a link."""
    entry, decision = _entry_number(request.query_params.get("quarantine", "")), request.query_params.get("decision")
    if entry is None or decision not in DECISIONS.values():
        return None
    return f"Quarantine entry {entry}: {decision}."


def _entry_number(text: str) -> int | None:
    """A quarantine entry's number from a URL (ASCII digits), else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


@router.get("/quarantine/{entry}/preview.png")
def quarantine_preview(entry: str, view: View = Depends(current_view),
                       context: ServerContext = Depends(get_context)) -> Response:
    number = _entry_number(entry)
    if not view.principal.is_curator or number is None:
        return Response(status_code=404)
    held = [q for q in pipeline.list_quarantine(context.engine, view.principal, status="all") if q["id"] == number]
    if not held:
        return Response(status_code=404)
    try:
        data = thumbnail_png(context.store, held[0]["sha256"])
    except Exception:  # no pixels, or not DICOM at all: the page says so
        return Response(status_code=422)
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-store"})


@router.post("/quarantine/{entry}/{action}")
def quarantine_decide(entry: str, action: str, request: Request, view: View = Depends(current_view),
                      context: ServerContext = Depends(get_context)) -> Response:
    if not view.principal.is_curator or not same_origin(request) or action not in DECISIONS:
        return _refuse(request, view, "Only curators decide on quarantined instances.", 403)
    number = _entry_number(entry)
    if number is None:
        return _refuse(request, view, f"No quarantine entry {entry[:40]!r}.", 404)
    client = client_address(request)
    decide = pipeline.release if action == "release" else pipeline.delete_quarantined
    try:
        decide(context.engine, context.store, view.principal, number, client=client)
    except SubmissionError as error:  # not held any more, superseded, held elsewhere: the page says so
        message = f"Quarantine entry {number} was not {DECISIONS[action]}: {error.message}"
        return _refuse(request, view, message + (f" ({error.hint})" if error.hint else ""),
                       KIND_STATUS.get(error.kind, 400))
    return RedirectResponse(f"/dashboard?quarantine={number}&decision={DECISIONS[action]}#quarantine",
                            status_code=303)
