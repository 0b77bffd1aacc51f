"""The study page: series thumbnails, the case's clinical timeline, series attributes, a viewer link.

Thumbnails are rendered here from the stored DICOM with :mod:`radcommons.dicom.rendering` (the
same windowing as DICOMweb ``/rendered``), shrunk to a thumbnail and cached by the browser; they
obey the same project scope as the page (a study outside it answers 404, like one that does not
exist).
"""

from __future__ import annotations

import io
from typing import Any

import pydicom
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from radcommons.dicom.rendering import THUMBNAIL_SIZE, Viewport, encode_image, fit_viewport, render_frame
from radcommons.server.context import ServerContext, get_context
from radcommons.server.routes.research import audit
from radcommons.server.web.access import View
from radcommons.server.web.routes import _records_or_refuse, _refuse, current_view
from radcommons.server.web.templating import page
from radcommons.server.web.timeline import events_of, timeline_svg
from radcommons.server.web.viewer import viewer_installed, viewer_url
from radcommons.store.objects import ObjectStore
from radcommons.store.query import query

router = APIRouter(include_in_schema=False)

_UID = r"^[0-9]+(\.[0-9]+)*$"

SERIES_FIELDS = ("series_uid", "series_number", "modality", "series_description", "body_part_examined",
                 "manufacturer", "manufacturer_model_name", "number_of_instances", "view_position",
                 "photometric_interpretation", "rows", "columns", "pixel_spacing", "slice_thickness",
                 "convolution_kernel", "contrast_bolus_agent", "kvp", "lossy_image_compression")


def _study(context: ServerContext, view: View, uid: str) -> dict[str, Any] | None:
    rows = query(context.engine, "imaging_study", {"=": {"study_uid": uid}}, limit=1, projects=view.projects,
                 fields=["id", "study_uid", "project_id", "submitter_id", "study_description", "study_modality",
                         "body_part_examined", "days_to_study", "study_year", "age_at_imaging", "loinc_code",
                         "loinc_long_common_name", "case.submitter_id", "case.sex", "case.age_at_index",
                         "case.covid19_positive", "case.site_id"]).rows
    return rows[0] if rows else None


def _case_rows(context: ServerContext, view: View, node: str, case: str, project: str) -> list[dict[str, Any]]:
    flt = {"and": [{"=": {"case.submitter_id": case}}, {"=": {"project_id": project}}]}
    return query(context.engine, node, flt, limit=500, projects=view.projects).rows


@router.get("/studies/{uid}", response_class=HTMLResponse)
def study_page(uid: str, request: Request, view: View = Depends(current_view),
               context: ServerContext = Depends(get_context)) -> HTMLResponse:
    refused = _records_or_refuse(request, view)
    if refused:
        return refused
    study = _study(context, view, uid)
    if study is None:
        return _refuse(request, view, f"No study {uid} that you may read.", 404)
    series = query(context.engine, "series", {"=": {"imaging_study.study_uid": uid}}, fields=list(SERIES_FIELDS),
                   sort=[("series_number", "asc")], limit=200, projects=view.projects).rows
    case, project = study["case.submitter_id"], study["project_id"]
    audit(context, request, view.principal, "research.query", "imaging_study", 1, project=project,
          detail={"filter": {"=": {"study_uid": uid}}, "page": "study"})
    events = events_of(_case_rows(context, view, "measurement", case, project),
                       _case_rows(context, view, "visit", case, project),
                       _case_rows(context, view, "procedure", case, project),
                       _case_rows(context, view, "imaging_study", case, project), current_study=uid)
    return page(request, "study.html", view, title=f"Study {uid}", study=study, series=series,
                timeline=timeline_svg(events, f"Clinical timeline of case {case}"),
                viewer_href=viewer_url(uid), viewer_ready=viewer_installed())


def thumbnail_png(store: ObjectStore, object_id: str, size: int = THUMBNAIL_SIZE) -> bytes:
    """A PNG thumbnail of the first frame of stored instance ``object_id`` (windowed, MONOCHROME1 inverted),
    rendered and fitted as DICOMweb's ``/thumbnail`` is (:func:`radcommons.dicom.rendering.fit_viewport`)."""
    with store.open(object_id) as handle:
        # The verifying reader streams (no seek); pydicom needs a seekable file.
        ds = pydicom.dcmread(io.BytesIO(handle.read()))
    return encode_image(fit_viewport(render_frame(ds), Viewport(size, size)), "image/png")


@router.get("/studies/{uid}/series/{series_uid}/thumbnail.png")
def series_thumbnail(uid: str, series_uid: str, request: Request, view: View = Depends(current_view),
                     context: ServerContext = Depends(get_context)) -> Response:
    if not view.records:
        return Response(status_code=403)
    # The middle instance by number: for a CT that is a slice through the body, not the first edge.
    flt = {"and": [{"=": {"series.series_uid": series_uid}}, {"=": {"imaging_study.study_uid": uid}}]}
    rows = query(context.engine, "instance", flt, fields=["object_id", "instance_number", "project_id"],
                 sort=[("instance_number", "asc")], limit=1000, projects=view.projects).rows
    if not rows:
        return Response(status_code=404)
    middle = rows[len(rows) // 2]
    try:
        data = thumbnail_png(context.store, middle["object_id"])
    except Exception:  # an image that cannot be decoded: the page shows its alt text instead
        return Response(status_code=422)
    # A picture of a stored file: the event of GET /api/v1/objects/{sha256}.
    audit(context, request, view.principal, "research.object", middle["object_id"], 1,
          project=middle["project_id"], detail={"rendered": "thumbnail", "series_uid": series_uid})
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
