"""The explorer's pages: login, the data use agreement, the faceted cohort builder, exports, cohorts.

Every handler computes a :class:`~radcommons.server.web.access.View` first and passes its
projects to the query engine, so what a role may not read never reaches a template: records of
projects outside the view are not queried, not hidden afterwards.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from markupsafe import Markup

from radcommons.dictionary.docs import render_html
from radcommons.errors import UserError
from radcommons.pipelines.export import stratify_fields
from radcommons.server.auth import same_origin
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.routes.cohorts import audited_cohort_manifest
from radcommons.server.routes.research import audit, audited_export, audited_manifest
from radcommons.server.web import facets as fx
from radcommons.server.web.access import View, view_for
from radcommons.server.web.session import clear_session, login_token, set_session, web_principal
from radcommons.server.web.templating import page
from radcommons.store.index import dua
from radcommons.store.index.accounts import AuthenticationFailed, Principal
from radcommons.store.query import (
    MEDIA_TYPES,
    freeze,
    get_cohort,
    list_cohorts,
    query,
    save_query,
)
from radcommons.store.query.facets import suppressed_total

router = APIRouter(include_in_schema=False)

#: Rows per page of the record tables.
PAGE_SIZE = 25

#: Columns of each tab (fields of the tab's node and its parents).
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "case": (("submitter_id", "Case"), ("project_id", "Project"), ("sex", "Sex"), ("age_at_index", "Age"),
             ("race", "Race"), ("ethnicity", "Ethnicity"), ("covid19_positive", "COVID-19"),
             ("site_id", "Site")),
    "imaging_study": (("study_uid", "Study UID"), ("case.submitter_id", "Case"), ("study_modality", "Modalities"),
                      ("loinc_long_common_name", "LOINC name"), ("body_part_examined", "Body part"),
                      ("days_to_study", "Day"), ("project_id", "Project")),
    "series": (("series_uid", "Series UID"), ("imaging_study.study_uid", "Study UID"), ("modality", "Modality"),
               ("series_description", "Description"), ("manufacturer", "Manufacturer"),
               ("number_of_instances", "Instances")),
    "instance": (("sop_instance_uid", "SOP Instance UID"), ("imaging_study.study_uid", "Study UID"),
                 ("series.modality", "Modality"), ("object_id", "Object id (sha256)"), ("size", "Bytes")),
}


async def current_view(request: Request, principal: Principal = Depends(web_principal),
                       context: ServerContext = Depends(get_context)) -> View:
    """The request's :class:`View` (anonymous when there is no valid session)."""
    return await run_in_threadpool(view_for, context.engine, principal)


def _refuse(request: Request, view: View, message: str, status: int = 403) -> HTMLResponse:
    return page(request, "message.html", view, status=status, title="Not available", message=message)


# -- login, logout, data use agreement ---------------------------------------------------------

@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, view: View = Depends(current_view)) -> HTMLResponse:
    return page(request, "login.html", view, title="Log in", error=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: str = Form(default=""), context: ServerContext = Depends(get_context),
          view: View = Depends(current_view)) -> Response:
    if not same_origin(request):
        return _refuse(request, view, "This form must be sent from this site.")
    try:
        principal = login_token(context.engine, token)
    except AuthenticationFailed as error:
        # The message names the failure (expired, revoked, unknown, disabled), never the token.
        return page(request, "login.html", view, status=401, title="Log in", error=f"{error.message}; {error.hint}")
    response = RedirectResponse("/dua" if principal.role == "researcher" and
                                dua.DUA_VERSION not in principal.dua_versions else "/", status_code=303)
    set_session(response, request, token)
    return response


@router.post("/logout")
def logout(request: Request, view: View = Depends(current_view)) -> Response:
    if not same_origin(request):  # another site's form must not end the session (like every form here)
        return _refuse(request, view, "This form must be sent from this site.")
    response = RedirectResponse("/", status_code=303)
    clear_session(response)
    return response


@router.get("/dua", response_class=HTMLResponse)
def dua_page(request: Request, view: View = Depends(current_view)) -> HTMLResponse:
    if view.anonymous:
        return RedirectResponse("/login", status_code=303)  # type: ignore[return-value]
    return page(request, "dua.html", view, title="Data use agreement", text=dua.DUA_TEXT, version=dua.DUA_VERSION,
                accepted=not view.needs_dua)


@router.post("/dua")
def accept_dua(request: Request, agree: str = Form(default=""), view: View = Depends(current_view),
               context: ServerContext = Depends(get_context)) -> Response:
    if view.anonymous or not same_origin(request):
        return _refuse(request, view, "Log in first.", 401)
    if agree != "yes":
        return page(request, "dua.html", view, status=400, title="Data use agreement", text=dua.DUA_TEXT,
                    version=dua.DUA_VERSION, accepted=False, error="Tick the box to accept the agreement.")
    dua.accept(context.engine, view.principal.user_id, view.principal.name, client=client_address(request))
    return RedirectResponse("/", status_code=303)


# -- the explorer -------------------------------------------------------------------------------

def _tab(request: Request) -> str:
    tab = request.query_params.get("tab", "cases")
    return tab if tab in fx.TAB_NODES else "cases"


def explorer_context(context: ServerContext, view: View, request: Request) -> dict[str, Any]:
    """Everything the explorer page shows for the request's selection and tab."""
    known = fx.all_facets()
    left_out: list[str] = []
    selection = fx.parse_selection(request.query_params.multi_items(), known, left_out)
    tab = _tab(request)
    node = fx.TAB_NODES[tab]
    engine = context.engine
    totals = {name: suppressed_total(engine, n, fx.to_filter(selection, n, known), projects=view.projects,
                                     min_count=view.min_count) for name, n, _ in fx.TABS}
    views = fx.facet_views(engine, selection, known, projects=view.projects, min_count=view.min_count, tab=tab)
    rows: list[dict[str, Any]] = []
    next_cursor = None
    if view.records:
        cursor = request.query_params.get("cursor") or None
        fields = [name for name, _ in COLUMNS[node]]
        flt = fx.to_filter(selection, node, known)
        try:
            result = query(engine, node, flt, fields=fields, limit=PAGE_SIZE, cursor=cursor, projects=view.projects)
        except UserError:  # a stale cursor (another query): start again at the first page
            cursor = None
            result = query(engine, node, flt, fields=fields, limit=PAGE_SIZE, projects=view.projects)
        rows, next_cursor = result.rows, result.next_cursor
        # The page of records is what POST /api/v1/query/{node} answers: the same audit event.
        audit(context, request, view.principal, "research.query", node, len(rows),
              detail={"filter": flt, "cursor": bool(cursor)})
    qs = fx.query_string(selection)
    cohorts = list_cohorts(engine, owner=view.principal.name) if view.records else []
    return {
        "selection": selection, "qs": qs, "tab": tab, "node": node, "tabs": fx.TABS, "totals": totals,
        "featured": [v for v in views if v.facet.featured], "more": [v for v in views if not v.facet.featured],
        "more_open": any(v.selected for v in views if not v.facet.featured),
        "chips": fx.describe(selection, known, tab), "columns": COLUMNS[node], "rows": rows,
        "next_href": "/?" + fx.query_string(selection, tab=tab, cursor=next_cursor) if next_cursor else None,
        "first_href": "/?" + fx.query_string(selection, tab=tab) if request.query_params.get("cursor") else None,
        "filter_json": json.dumps(fx.to_filter(selection, node, known), indent=1),
        "share_url": str(request.base_url).rstrip("/") + "/?" + fx.query_string(selection, tab=tab),
        "cohorts": cohorts[:10],
        # Only the name of a query this user saved: a link's free text is never shown as ours.
        "saved": next((c.name for c in cohorts if c.name == request.query_params.get("saved")), None),
        "left_out": left_out,
    }


@router.get("/", response_class=HTMLResponse)
def explorer(request: Request, view: View = Depends(current_view),
             context: ServerContext = Depends(get_context)) -> HTMLResponse:
    data = explorer_context(context, view, request)
    # htmx swaps only the explorer region: the partial is enough (and half the bytes).
    template = "explorer_body.html" if request.headers.get("HX-Request") == "true" else "explorer.html"
    return page(request, template, view, title="Explorer", **data)


# -- downloads and cohorts ----------------------------------------------------------------------

def _records_or_refuse(request: Request, view: View) -> HTMLResponse | None:
    if view.anonymous:
        return _refuse(request, view, "Log in to download records or build cohorts.", 401)
    if view.needs_dua:
        return _refuse(request, view, "Accept the data use agreement first (Data use agreement, top right).")
    return None


def _download(chunks: Any, filename: str, media_type: str) -> StreamingResponse:
    return StreamingResponse(chunks, media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store"})


# Before /export/{tab}.csv, which would otherwise take manifest.csv as a table named "manifest".
@router.get("/export/manifest.csv")
def export_files(request: Request, view: View = Depends(current_view),
                 context: ServerContext = Depends(get_context)) -> Response:
    refused = _records_or_refuse(request, view)
    if refused:
        return refused
    known = fx.all_facets()
    selection = fx.parse_selection(request.query_params.multi_items(), known)
    chunks = audited_manifest(context, request, view.principal, view.projects, "case",
                              fx.to_filter(selection, "case", known), "csv", "case")
    return _download(chunks, "radcommons-manifest.csv", MEDIA_TYPES["csv"])


_NAME = re.compile(r"[^\w .,()+-]")


@router.get("/export/{tab}.csv")
def export_table(tab: str, request: Request, view: View = Depends(current_view),
                 context: ServerContext = Depends(get_context)) -> Response:
    refused = _records_or_refuse(request, view)
    if refused or tab not in fx.TAB_NODES:
        return refused or _refuse(request, view, f"No table {tab!r}.", 404)
    known = fx.all_facets()
    node = fx.TAB_NODES[tab]
    selection = fx.parse_selection(request.query_params.multi_items(), known)
    chunks = audited_export(context, request, view.principal, view.projects, node,
                            fx.to_filter(selection, node, known), "csv")
    return _download(chunks, f"radcommons-{tab}.csv", MEDIA_TYPES["csv"])


@router.post("/cohorts")
async def make_cohort(request: Request, view: View = Depends(current_view),
                      context: ServerContext = Depends(get_context)) -> Response:
    refused = _records_or_refuse(request, view)
    if refused or not same_origin(request):
        return refused or _refuse(request, view, "This form must be sent from this site.")
    form = await request.form()
    known = fx.all_facets()
    qs = str(form.get("qs", ""))
    selection = fx.parse_selection(parse_qsl(qs), known)
    tab = str(form.get("tab", "cases"))
    node = fx.TAB_NODES.get(tab, "case")
    name = _NAME.sub("", str(form.get("name", "")).strip())[:120] or "Untitled cohort"
    flt = fx.to_filter(selection, node, known)
    if form.get("action") == "save":
        await run_in_threadpool(save_query, context.engine, name, node, flt, owner=view.principal.name)
        return RedirectResponse("/?" + fx.query_string(selection, tab=tab, saved=name), status_code=303)
    cohort = await run_in_threadpool(lambda: freeze(context.engine, node=node, filter=flt, name=name,
                                                    owner=view.principal.name, projects=view.projects))
    return RedirectResponse(f"/cohorts/{cohort.identifier}", status_code=303)


def _readable_cohort(context: ServerContext, view: View, identifier: str) -> Any:
    """The frozen cohort ``identifier`` when the viewer owns it or may read all its projects."""
    try:
        cohort = get_cohort(context.engine, identifier)
    except UserError:
        return None
    if not cohort.frozen:
        return None
    if cohort.owner == view.principal.name or view.projects is None:
        return cohort
    # Someone else's cohort: shown only when every project it covers is readable.
    if cohort.projects is not None and set(cohort.projects) <= set(view.projects):
        return cohort
    return None


@router.get("/cohorts/{identifier}", response_class=HTMLResponse)
def cohort_page(identifier: str, request: Request, view: View = Depends(current_view),
                context: ServerContext = Depends(get_context)) -> HTMLResponse:
    refused = _records_or_refuse(request, view)
    if refused:
        return refused
    cohort = _readable_cohort(context, view, identifier)
    if cohort is None:
        return _refuse(request, view, f"No frozen cohort {identifier} that you may read.", 404)
    # The export form is the API's rule (launch_export): records access, which this page already
    # required; the form is rendered only when it holds, never rendered and hidden.
    return page(request, "cohort.html", view, title=cohort.name, cohort=cohort,
                filter_json=json.dumps(cohort.filter, indent=1), may_export=view.records,
                stratify_fields=stratify_fields())


@router.get("/cohorts/{identifier}/{what}.csv")
def cohort_download(identifier: str, what: str, request: Request, view: View = Depends(current_view),
                    context: ServerContext = Depends(get_context)) -> Response:
    refused = _records_or_refuse(request, view)
    if refused:
        return refused
    cohort = _readable_cohort(context, view, identifier)
    if cohort is None or what not in ("table", "manifest"):
        return _refuse(request, view, "No such download.", 404)
    # The same events as the API's export of the cohort's records and GET /cohorts/{key}/manifest.
    flt = {"in_cohort": cohort.identifier}
    if what == "table":
        chunks = audited_export(context, request, view.principal, view.projects, cohort.node, flt, "csv")
    else:
        chunks = audited_cohort_manifest(context, request, view.principal, view.projects, cohort, "csv")
    return _download(chunks, f"{cohort.identifier}-{what}.csv", MEDIA_TYPES["csv"])


# -- the data dictionary ------------------------------------------------------------------------

_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)
_STYLE = re.compile(r"<style[^>]*>.*?</style>", re.S | re.I)


@router.get("/dictionary", response_class=HTMLResponse)
def dictionary(request: Request, view: View = Depends(current_view)) -> HTMLResponse:
    html = render_html()
    match = _BODY.search(html)
    body = _STYLE.sub("", match.group(1) if match else html)
    return page(request, "dictionary.html", view, title="Data dictionary", body=Markup(body))
