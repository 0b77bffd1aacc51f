"""DICOMweb routes under ``/dicomweb`` (PS3.18): QIDO-RS search, WADO-RS retrieve, STOW-RS store.

The routes parse requests and render answers; the work is in :mod:`radcommons.server.dicomweb`.
Every route needs a bearer token (401 without); reads are limited to the projects
:func:`radcommons.server.access.readable_projects` allows, and anything outside them answers
404, exactly like something that does not exist. See docs/DICOMWEB.md.
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import logging
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydicom import Dataset
from sqlalchemy import Engine
from starlette.requests import ClientDisconnect

from radcommons.dicom.qido import parse_query
from radcommons.dicom.rendering import NoSuchFrame, Viewport, Window, is_image, middle_frame
from radcommons.dicom.uid import UID_MAX_LENGTH, UID_PATTERN
from radcommons.pipelines.submission import check_curator_project, check_project
from radcommons.server.access import readable_projects, require_data_use_agreement
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.dicomweb import qido, stow, wado
from radcommons.server.dicomweb.headers import HeaderCache
from radcommons.server.dicomweb.multipart import (
    OutPart,
    PartSpool,
    content_type,
    new_boundary,
    parse_content_type,
    write_parts,
)
from radcommons.server.errors import ApiError
from radcommons.server.routes.research import audit
from radcommons.store.index.accounts import Principal
from radcommons.store.objects import CorruptObjectError, ObjectNotFoundError

log = logging.getLogger("radcommons.server")

#: Where DICOMweb is served; OHIF's ``qidoRoot``/``wadoRoot``/``wadoUriRoot`` point here.
DICOMWEB_PREFIX = "/dicomweb"
DICOM_JSON = "application/dicom+json"
#: Bytes of a STOW-RS body handed to the multipart parser at a time (on a worker thread).
STOW_FEED_BYTES = 1024 * 1024

#: What a malformed path or query parameter must be, said in the 400 answer (PS3.18 8.5: a malformed
#: target resource or query parameter is 400 Bad Request; 422 is not a DICOMweb status).
_UID_FORM = f"UIDs are digits and dots, at most {UID_MAX_LENGTH} characters, e.g. 1.2.840.113619.2.55"
_PARAMETER_FORMS = {
    "study": ("Study Instance UID", _UID_FORM),
    "series": ("Series Instance UID", _UID_FORM),
    "instance": ("SOP Instance UID", _UID_FORM),
    "frames": ("frame list", "frame numbers from 1 separated by commas, e.g. 1 or 1,3,5"),
    "frame": ("frame number", "a whole number from 1"),
    "quality": ("quality", "a whole number from 1 to 100 (JPEG quality)"),
    "tag": ("bulk data tag", "eight hex digits, e.g. 7FE00010"),
    "project": ("project", "a name of letters, digits, '.', '_' and '-'"),
    "site": ("site", "a name of letters, digits, '.', '_' and '-'"),
    "dataset": ("dataset", "a name of letters, digits, '.', '_' and '-'"),
}


def _bad_parameters(error: RequestValidationError) -> ApiError:
    """A 400 naming each malformed path or query parameter, what it was and what it must be."""
    problems = []
    for item in error.errors():
        loc = [str(p) for p in item.get("loc", ())]
        name = loc[-1] if loc else "request"
        what, form = _PARAMETER_FORMS.get(name, (name, item.get("msg", "")))
        given = item.get("input")
        problems.append(f"{what} {given!r} is malformed ({form})" if isinstance(given, str)
                        else f"{what}: {item.get('msg', 'malformed')} ({form})")
    return ApiError(400, "bad_request", "; ".join(problems) or "malformed request",
                    "see docs/DICOMWEB.md for the DICOMweb paths and parameters")


class _DicomwebRoute(APIRoute):
    """A route whose malformed path and query parameters answer 400 with what each must be, instead of
    the API's generic 422 about a request body (these requests have none)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                raise _bad_parameters(error) from None

        return route


router = APIRouter(prefix=DICOMWEB_PREFIX, tags=["dicomweb"], route_class=_DicomwebRoute)

StudyUID = Path(max_length=UID_MAX_LENGTH, pattern=UID_PATTERN, description="Study Instance UID")
SeriesUID = Path(max_length=UID_MAX_LENGTH, pattern=UID_PATTERN, description="Series Instance UID")
InstanceUID = Path(max_length=UID_MAX_LENGTH, pattern=UID_PATTERN, description="SOP Instance UID")


def _headers(request: Request, context: ServerContext) -> HeaderCache:
    """The application's header cache (made on first use; it lives as long as the app)."""
    cache = getattr(request.app.state, "dicomweb_headers", None)
    if cache is None:
        cache = request.app.state.dicomweb_headers = HeaderCache(context.store)
    return cache  # type: ignore[no-any-return]


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + DICOMWEB_PREFIX


def _readable(context: ServerContext, principal: Principal) -> set[str] | None:
    require_data_use_agreement(principal)
    with context.engine.connect() as conn:
        return readable_projects(conn, principal)


def _not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} here that you may read",
                    "search with QIDO-RS (GET /dicomweb/studies) for what you may read")


# ---------------------------------------------------------------------- QIDO-RS (PS3.18 10.6)


def _json_only(request: Request, what: str) -> str:
    """The media type of a JSON answer (results, metadata, a STOW response) by the Accept header:
    ``application/dicom+json``, else ``application/json`` when only that is acceptable (RFC 9110
    12.5.1 ranges and q-values: ``application/jsonx`` is not JSON and ``q=0`` refuses); 406 otherwise,
    since the XML form is not offered (PS3.18 8.7.3)."""
    accept = request.headers.get("accept")
    chosen = wado.first_acceptable(accept, (DICOM_JSON, "application/json"))
    if chosen is None:
        raise ApiError(406, "not_acceptable", f"{what} are {DICOM_JSON} only; the Accept header ({accept}) "
                       "does not take it", f"send Accept: {DICOM_JSON} (XML is not offered)")
    return chosen


def _search(request: Request, context: ServerContext, principal: Principal, level: str,
            scope: qido.Scope) -> Response:
    media_type = _json_only(request, "search results")
    query = parse_query(request.query_params.multi_items())
    readable = _readable(context, principal)
    search = qido.Search(level, scope, query, readable, _base_url(request), context.engine.dialect.name)
    lost: set[str] = set()
    with context.engine.connect() as conn:
        result = search.run(conn, functools.partial(_header_or_empty, _headers(request, context), lost))
    audit(context, request, principal, "dicomweb.search", level, len(result.items),
          detail={"path": request.url.path.removeprefix(DICOMWEB_PREFIX), "query": request.url.query})
    if lost:  # one lost file failed every search (OHIF's study list empty): answered from the index instead
        log.error("QIDO-RS %s: stored file(s) missing or damaged: %s", request.url.path, ", ".join(sorted(lost)))
        result.warnings.append(f"299 radcommons: {len(lost)} stored file(s) could not be read: the attributes "
                               "taken from them are empty and not matched; tell the commons operators")
    headers = {"Warning": ", ".join(result.warnings)} if result.warnings else {}
    # An empty array with 200 (not 204) when nothing matches: CP-2473 and what dicomweb-client and OHIF expect.
    return JSONResponse(result.items, media_type=media_type, headers=headers)


def _header_or_empty(cache: HeaderCache, lost: set[str], object_id: str) -> Dataset:
    """The stored header of ``object_id``, or an empty one when the store no longer holds the file
    whole (its digest added to ``lost``): a search answers from the index what it can."""
    try:
        return cache.get(object_id)
    except (ObjectNotFoundError, CorruptObjectError):
        lost.add(object_id)
        return Dataset()


@router.get("/studies", summary="QIDO-RS: search for studies")
def search_studies(request: Request, principal: Principal = Depends(current_principal),
                   context: ServerContext = Depends(get_context)) -> Response:
    return _search(request, context, principal, "study", qido.Scope())


@router.get("/series", summary="QIDO-RS: search for series")
def search_series(request: Request, principal: Principal = Depends(current_principal),
                  context: ServerContext = Depends(get_context)) -> Response:
    return _search(request, context, principal, "series", qido.Scope())


@router.get("/studies/{study}/series", summary="QIDO-RS: search for series of a study")
def search_study_series(request: Request, study: str = StudyUID, principal: Principal = Depends(current_principal),
                        context: ServerContext = Depends(get_context)) -> Response:
    return _search(request, context, principal, "series", qido.Scope(study))


@router.get("/instances", summary="QIDO-RS: search for instances")
def search_instances(request: Request, principal: Principal = Depends(current_principal),
                     context: ServerContext = Depends(get_context)) -> Response:
    return _search(request, context, principal, "instance", qido.Scope())


@router.get("/studies/{study}/instances", summary="QIDO-RS: search for instances of a study")
def search_study_instances(request: Request, study: str = StudyUID,
                           principal: Principal = Depends(current_principal),
                           context: ServerContext = Depends(get_context)) -> Response:
    return _search(request, context, principal, "instance", qido.Scope(study))


@router.get("/studies/{study}/series/{series}/instances", summary="QIDO-RS: search for instances of a series")
def search_series_instances(request: Request, study: str = StudyUID, series: str = SeriesUID,
                            principal: Principal = Depends(current_principal),
                            context: ServerContext = Depends(get_context)) -> Response:
    return _search(request, context, principal, "instance", qido.Scope(study, series))


# ---------------------------------------------------------------------- WADO-RS (PS3.18 10.4)


def _instances(context: ServerContext, principal: Principal, study: str, series: str | None = None,
               instance: str | None = None) -> list[wado.StoredInstance]:
    """The readable instances a WADO-RS request names (404 when none). Not audited here: the route
    records the read with :func:`_audit_retrieve` once nothing can refuse it any more."""
    readable = _readable(context, principal)
    with context.engine.connect() as conn:
        found = wado.find_instances(conn, readable, study, series, instance)
    if not found:
        raise _not_found("instance" if instance else "series" if series else "study")
    return found


def _audit_retrieve(request: Request, context: ServerContext, principal: Principal,
                    found: Sequence[wado.StoredInstance], study: str, series: str | None = None,
                    instance: str | None = None) -> None:
    """Record a WADO-RS read as one ``dicomweb.retrieve`` event: every read of images is accounted for,
    as the research API's are. Called after the last check that can answer 404, 406 or 422 (no image,
    no such frame, an unacceptable Accept header, undecodable pixels), so the log never names a read
    that returned nothing; for a streamed body, once its first part's content is read
    (:func:`_started`: a stream that fails before any content is an error answer) and before the
    answer starts, so a long stream, or one broken later, is recorded all the same."""
    projects = sorted({i.project for i in found})
    audit(context, request, principal, "dicomweb.retrieve", instance or series or study, len(found),
          project=projects[0] if len(projects) == 1 else None,
          detail={"path": request.url.path.removeprefix(DICOMWEB_PREFIX), "projects": projects})


def _started(body: Iterable[bytes], items: int = 2) -> Iterator[bytes]:
    """``body`` with its first ``items`` read now, before the answer starts: a multipart body's first
    part header and the first content of that part (a JSON array's opening and first element), so a
    stream that would fail before any content (its first object missing from the store, or unreadable)
    is an error answer, and is not audited as a read (:func:`_audit_retrieve` is called after this)."""
    rest = iter(body)
    return itertools.chain(list(itertools.islice(rest, items)), rest)


def _retrieve(request: Request, context: ServerContext, principal: Principal, study: str,
              series: str | None = None, instance: str | None = None) -> Response:
    found = _instances(context, principal, study, series, instance)
    accept = request.headers.get("accept")
    syntaxes = wado.accepted_syntaxes(accept)
    refused = sorted({i.transfer_syntax for i in found if wado.delivery(i, syntaxes) is None})
    hint = ('accept multipart/related; type="application/dicom"; transfer-syntax=* (as stored), '
            "or without transfer-syntax for Explicit VR Little Endian")
    if not syntaxes:
        raise ApiError(406, "not_acceptable", 'WADO-RS retrieve answers multipart/related; type="application/dicom" '
                       f"only, which the Accept header ({accept}) does not take", hint)
    if refused:
        raise ApiError(406, "not_acceptable",
                       f"the instances are stored as {', '.join(refused)} and can be sent as stored or as Explicit "
                       f"VR Little Endian, not in the transfer syntax the Accept header asks ({', '.join(sorted(syntaxes))})",
                       hint)
    boundary = new_boundary()
    body = _started(write_parts(wado.instance_parts(context.store, found, syntaxes, _base_url(request)), boundary))
    _audit_retrieve(request, context, principal, found, study, series, instance)
    return StreamingResponse(body, media_type=content_type("application/dicom", boundary))


@router.get("/studies/{study}", summary="WADO-RS: retrieve a study (multipart/related application/dicom)")
def retrieve_study(request: Request, study: str = StudyUID, principal: Principal = Depends(current_principal),
                   context: ServerContext = Depends(get_context)) -> Response:
    return _retrieve(request, context, principal, study)


@router.get("/studies/{study}/series/{series}", summary="WADO-RS: retrieve a series")
def retrieve_series(request: Request, study: str = StudyUID, series: str = SeriesUID,
                    principal: Principal = Depends(current_principal),
                    context: ServerContext = Depends(get_context)) -> Response:
    return _retrieve(request, context, principal, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}", summary="WADO-RS: retrieve an instance")
def retrieve_instance(request: Request, study: str = StudyUID, series: str = SeriesUID,
                      instance: str = InstanceUID, principal: Principal = Depends(current_principal),
                      context: ServerContext = Depends(get_context)) -> Response:
    return _retrieve(request, context, principal, study, series, instance)


def _metadata(request: Request, context: ServerContext, principal: Principal, study: str,
              series: str | None = None, instance: str | None = None) -> Response:
    media_type = _json_only(request, "metadata")
    found = _instances(context, principal, study, series, instance)
    body = _started(wado.metadata_chunks(found, _headers(request, context).get, _base_url(request)))
    _audit_retrieve(request, context, principal, found, study, series, instance)
    return StreamingResponse(body, media_type=media_type)


@router.get("/studies/{study}/metadata", summary="WADO-RS: metadata of a study (DICOM JSON, no bulk data)")
def study_metadata(request: Request, study: str = StudyUID, principal: Principal = Depends(current_principal),
                   context: ServerContext = Depends(get_context)) -> Response:
    return _metadata(request, context, principal, study)


@router.get("/studies/{study}/series/{series}/metadata", summary="WADO-RS: metadata of a series")
def series_metadata(request: Request, study: str = StudyUID, series: str = SeriesUID,
                    principal: Principal = Depends(current_principal),
                    context: ServerContext = Depends(get_context)) -> Response:
    return _metadata(request, context, principal, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata",
            summary="WADO-RS: metadata of an instance")
def instance_metadata(request: Request, study: str = StudyUID, series: str = SeriesUID,
                      instance: str = InstanceUID, principal: Principal = Depends(current_principal),
                      context: ServerContext = Depends(get_context)) -> Response:
    return _metadata(request, context, principal, study, series, instance)


#: Query parameters of /rendered (PS3.18 8.3.5.1, and 8.3.3.1's ``accept``) and of /thumbnail (10.4.1.1.4:
#: ``viewport``, 8.3.5.1.3), and what is done with them.
RENDERED_PARAMETERS = frozenset({"window", "quality", "accept"})
THUMBNAIL_PARAMETERS = frozenset({"viewport", "accept"})
_RENDERED_UNSUPPORTED = {"viewport": "viewport (scaling and cropping) is not supported on /rendered: the image has "
                                     "the instance's Rows and Columns (/thumbnail takes viewport=width,height)",
                         "annotation": "annotation (burning in patient or technique text) is not supported",
                         "iccprofile": "iccprofile is not supported: images are sent without an ICC profile"}
_NOT_AN_IMAGE_TYPE = "(video, PDF and text renderings are not offered)"


def _image_type(request: Request, supported: frozenset[str], what: str,
                negotiate: Callable[[str | None], str | None] = wado.rendered_media_type) -> str:
    """The media type of a rendered image or thumbnail by its Accept: the ``accept`` query parameter (PS3.18
    8.3.3.1, for user agents that cannot set headers, such as ``<img src>``) replaces the header; 406 when it
    takes neither image/jpeg nor image/png. Query parameters other than ``supported`` are refused rather
    than ignored."""
    for name in request.query_params:
        if name in supported:
            continue
        hint = "leave it out; supported: " + ", ".join(sorted(supported)) + "; see docs/DICOMWEB.md"
        if name in _RENDERED_UNSUPPORTED:
            raise ApiError(400, "bad_request", _RENDERED_UNSUPPORTED[name], hint)
        raise ApiError(400, "bad_request", f"unknown query parameter {name!r} for {what}", hint)
    given = request.query_params.getlist("accept")
    accept = ", ".join(given) if given else request.headers.get("accept")
    media_type = negotiate(accept)
    if media_type is None:
        raise ApiError(406, "not_acceptable", f"{what} are image/jpeg or image/png {_NOT_AN_IMAGE_TYPE}, not {accept}",
                       "send Accept: image/jpeg or image/png (or ?accept=image/png)")
    return media_type


def _window(window: str | None) -> Window | None:
    try:
        return wado.parse_window(window)
    except ValueError as error:
        raise ApiError(400, "bad_request", f"window: {error}", "window=center,width (linear)") from None


def _render(ds: Dataset, frame: int, window: Window | None, media_type: str, quality: int,
            viewport: Viewport | None = None) -> Response:
    try:
        image = wado.render(ds, frame, window, media_type, quality, viewport)
    except NoSuchFrame as error:
        raise ApiError(404, "not_found", str(error), "frames are numbered from 1") from None
    except ValueError as error:  # pixel data pydicom cannot decode (short, damaged): the stored file's fault
        raise ApiError(422, "unrenderable", f"the instance cannot be rendered: {error}", _UNREADABLE_HINT) from None
    return Response(image, media_type=media_type)


def _rendered(request: Request, context: ServerContext, principal: Principal, study: str, series: str,
              instance: str, frame: int, window: str | None, quality: int) -> Response:
    media_type = _image_type(request, RENDERED_PARAMETERS, "rendered images")
    voi = _window(window)
    found = _instances(context, principal, study, series, instance)
    ds = wado.read_instance(context.store, found[0])
    if not is_image(ds):  # a report or key object selection: 404, as for its study's or series' /rendered
        raise _no_image("instance")
    response = _render(ds, frame, voi, media_type, quality)  # 404 for a missing frame, 422 for damaged pixels
    _audit_retrieve(request, context, principal, found, study, series, instance)
    return response


def _no_image(what: str) -> ApiError:
    return ApiError(404, "not_found", f"the {what} holds no image to render",
                    "its instances have no pixel data (reports, key object selections): retrieve them with WADO-RS")


def _rendered_parts(request: Request, context: ServerContext, principal: Principal, study: str,
                    series: str | None, window: str | None, quality: int) -> Response:
    """A study or series rendered (PS3.18 10.4.1.1.3): ``multipart/related`` with one image part per image
    instance, each rendered when its part is sent (the body is streamed, never held whole)."""
    media_type = _image_type(request, RENDERED_PARAMETERS, "rendered images", wado.rendered_part_type)
    voi = _window(window)
    found = _instances(context, principal, study, series)
    if wado.representative(found, _headers(request, context).get) is None:
        raise _no_image("series" if series else "study")
    boundary = new_boundary()
    parts = wado.rendered_parts(context.store, found, voi, media_type, quality, _base_url(request))
    body = _started(write_parts(parts, boundary))
    _audit_retrieve(request, context, principal, found, study, series)
    return StreamingResponse(body, media_type=content_type(media_type, boundary))


@router.get("/studies/{study}/rendered",
            summary="WADO-RS: the study rendered, one JPEG or PNG part per instance (multipart/related)")
def study_rendered(request: Request, study: str = StudyUID, window: str | None = Query(default=None),
                   quality: int = Query(default=90, ge=1, le=100), principal: Principal = Depends(current_principal),
                   context: ServerContext = Depends(get_context)) -> Response:
    return _rendered_parts(request, context, principal, study, None, window, quality)


@router.get("/studies/{study}/series/{series}/rendered",
            summary="WADO-RS: the series rendered, one JPEG or PNG part per instance (multipart/related)")
def series_rendered(request: Request, study: str = StudyUID, series: str = SeriesUID,
                    window: str | None = Query(default=None), quality: int = Query(default=90, ge=1, le=100),
                    principal: Principal = Depends(current_principal),
                    context: ServerContext = Depends(get_context)) -> Response:
    return _rendered_parts(request, context, principal, study, series, window, quality)


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered",
            summary="WADO-RS: the instance rendered (first frame) as JPEG or PNG")
def instance_rendered(request: Request, study: str = StudyUID, series: str = SeriesUID,
                      instance: str = InstanceUID, window: str | None = Query(default=None),
                      quality: int = Query(default=90, ge=1, le=100),
                      principal: Principal = Depends(current_principal),
                      context: ServerContext = Depends(get_context)) -> Response:
    return _rendered(request, context, principal, study, series, instance, 1, window, quality)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
            summary="WADO-RS: one frame rendered as JPEG or PNG")
def frame_rendered(request: Request, study: str = StudyUID, series: str = SeriesUID,
                   instance: str = InstanceUID, frame: int = Path(ge=1),
                   window: str | None = Query(default=None), quality: int = Query(default=90, ge=1, le=100),
                   principal: Principal = Depends(current_principal),
                   context: ServerContext = Depends(get_context)) -> Response:
    return _rendered(request, context, principal, study, series, instance, frame, window, quality)


#: JPEG quality of thumbnails (the client has no say: PS3.18 10.4.1.1.4 takes no quality parameter).
THUMBNAIL_QUALITY = 90


def _thumbnail(request: Request, context: ServerContext, principal: Principal, study: str,
               series: str | None = None, instance: str | None = None, frame: int | None = None) -> Response:
    """A thumbnail (PS3.18 10.4.1.1.4, Supplement 203): the representative image of the study, series or
    instance (:func:`wado.representative`; its middle frame) or the frame, in its default window, fitted
    into ``viewport`` (8.3.5.1.3) or a THUMBNAIL_SIZE square, never enlarged."""
    media_type = _image_type(request, THUMBNAIL_PARAMETERS, "thumbnails")
    given = request.query_params.getlist("viewport")
    try:
        if len(given) > 1:
            raise ValueError("give it once")
        viewport = wado.parse_viewport(given[0] if given else None)
    except ValueError as error:
        raise ApiError(400, "bad_request", f"viewport: {error}", "viewport=width,height in pixels, e.g. 128,128") from None
    found = _instances(context, principal, study, series, instance)
    chosen = wado.representative(found, _headers(request, context).get)
    if chosen is None:
        raise _no_image("instance" if instance else "series" if series else "study")
    ds = wado.read_instance(context.store, chosen)
    response = _render(ds, frame or middle_frame(ds), None, media_type, THUMBNAIL_QUALITY, viewport)
    _audit_retrieve(request, context, principal, found, study, series, instance)
    return response


@router.get("/studies/{study}/thumbnail", summary="WADO-RS: a thumbnail of the study (JPEG or PNG)")
def study_thumbnail(request: Request, study: str = StudyUID, principal: Principal = Depends(current_principal),
                    context: ServerContext = Depends(get_context)) -> Response:
    return _thumbnail(request, context, principal, study)


@router.get("/studies/{study}/series/{series}/thumbnail", summary="WADO-RS: a thumbnail of the series")
def series_thumbnail(request: Request, study: str = StudyUID, series: str = SeriesUID,
                     principal: Principal = Depends(current_principal),
                     context: ServerContext = Depends(get_context)) -> Response:
    return _thumbnail(request, context, principal, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            summary="WADO-RS: a thumbnail of the instance (its middle frame)")
def instance_thumbnail(request: Request, study: str = StudyUID, series: str = SeriesUID,
                       instance: str = InstanceUID, principal: Principal = Depends(current_principal),
                       context: ServerContext = Depends(get_context)) -> Response:
    return _thumbnail(request, context, principal, study, series, instance)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/thumbnail",
            summary="WADO-RS: a thumbnail of one frame")
def frame_thumbnail(request: Request, study: str = StudyUID, series: str = SeriesUID, instance: str = InstanceUID,
                    frame: int = Path(ge=1), principal: Principal = Depends(current_principal),
                    context: ServerContext = Depends(get_context)) -> Response:
    return _thumbnail(request, context, principal, study, series, instance, frame)


def _octet_stream(request: Request, context: ServerContext, principal: Principal, study: str, series: str,
                  instance: str, what: str) -> tuple[wado.StoredInstance, Dataset, str]:
    """The instance (as found and as read) and how its pixels go out (:func:`wado.frame_delivery`) for a
    frames or bulk data request; 406 when the Accept header takes nothing we can send. Not yet audited:
    the route does that once it has the pixels."""
    accept = request.headers.get("accept")
    syntaxes = wado.accepted_syntaxes(accept, "application/octet-stream")
    hint = ('send Accept: multipart/related; type="application/octet-stream"; transfer-syntax=* (as stored), '
            "or without transfer-syntax for native (uncompressed) pixels")
    if not syntaxes:
        raise ApiError(406, "not_acceptable", f'{what} are sent as multipart/related; type="application/octet-stream",'
                       f" which the Accept header ({accept}) does not take", hint)
    stored = _instances(context, principal, study, series, instance)[0]
    how = wado.frame_delivery(stored.transfer_syntax, syntaxes)
    if how is None:
        # Never native pixels under a 200 to a client that named only a compressed syntax (PS3.18 8.7.3.5).
        raise ApiError(406, "not_acceptable",
                       f"the {what} are stored as {stored.transfer_syntax} and can be sent as stored or as native "
                       f"pixels (Explicit VR Little Endian), not as {', '.join(sorted(syntaxes))}", hint)
    return stored, wado.read_instance(context.store, stored), how


def _octet_parts(found: list[tuple[str, bytes]]) -> Response:
    boundary = new_boundary()
    parts = (OutPart({"Content-Type": kind, "Content-Length": str(len(data))}, [data]) for kind, data in found)
    return StreamingResponse(write_parts(parts, boundary),
                             media_type=content_type("application/octet-stream", boundary))


_UNREADABLE_HINT = "its pixel data is damaged or incomplete: fetch the instance itself, or tell the curators"


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            summary="WADO-RS: frames as multipart/related application/octet-stream")
def retrieve_frames(request: Request, study: str = StudyUID, series: str = SeriesUID,
                    instance: str = InstanceUID, frames: str = Path(pattern=r"^[0-9]+(,[0-9]+)*$"),
                    principal: Principal = Depends(current_principal),
                    context: ServerContext = Depends(get_context)) -> Response:
    stored, ds, how = _octet_stream(request, context, principal, study, series, instance, "frames")
    try:
        found = wado.frame_bytes(ds, [int(n) for n in frames.split(",")], how)
    except NoSuchFrame as error:
        raise ApiError(404, "not_found", str(error), "frames are numbered from 1") from None
    except ValueError as error:
        raise ApiError(422, "unrenderable", f"the frames cannot be read: {error}", _UNREADABLE_HINT) from None
    _audit_retrieve(request, context, principal, [stored], study, series, instance)
    return _octet_parts(found)


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
            summary="WADO-RS: bulk data (the BulkDataURI of Pixel Data in /metadata)")
def retrieve_bulkdata(request: Request, study: str = StudyUID, series: str = SeriesUID,
                      instance: str = InstanceUID, tag: str = Path(pattern=r"^[0-9A-Fa-f]{8}$"),
                      principal: Principal = Depends(current_principal),
                      context: ServerContext = Depends(get_context)) -> Response:
    if tag.upper() != wado.PIXEL_DATA_KEY:
        raise ApiError(404, "not_found", f"no bulk data {tag} here: /metadata gives Pixel Data ({wado.PIXEL_DATA_KEY}) "
                       "as bulk data, other binary values inline", "use the BulkDataURI that /metadata gives")
    stored, ds, how = _octet_stream(request, context, principal, study, series, instance, "bulk data")
    try:
        found = wado.pixel_data_parts(ds, how)
    except ValueError as error:
        raise ApiError(422, "unrenderable", f"the pixel data cannot be read: {error}", _UNREADABLE_HINT) from None
    if not found:
        raise ApiError(404, "not_found", "the instance has no Pixel Data", "its /metadata has no BulkDataURI")
    _audit_retrieve(request, context, principal, [stored], study, series, instance)
    return _octet_parts(found)


# ---------------------------------------------------------------------- STOW-RS (PS3.18 10.5)


def _target(principal: Principal, project: str | None, site: str | None) -> tuple[str, str]:
    """The project and site a STOW request stores into (see docs/DICOMWEB.md)."""
    if principal.role not in ("admin", "curator", "contributor"):
        raise ApiError(403, "forbidden", f"a {principal.role} may not store instances",
                       "STOW-RS is for contributors and curators")
    if project is None:
        if len(principal.projects) != 1:
            granted = ", ".join(sorted(principal.projects)) or "none"
            raise ApiError(400, "bad_request", "name the project to store into: ?project=P",
                           f"projects granted to you: {granted}")
        project = next(iter(principal.projects))
    check_project(principal, project)
    if principal.site_id and site and site != principal.site_id and not principal.is_curator:
        raise ApiError(403, "forbidden", f"user {principal.name!r} stores for site {principal.site_id}, not {site}",
                       "leave ?site= out")
    site = site or principal.site_id
    if not site:
        raise ApiError(400, "bad_request", "name the contributing site: ?site=S",
                       "your account has no site; say which site the instances come from")
    return project, site


def _project_exists(engine: Engine, principal: Principal, project: str) -> None:
    with engine.connect() as conn:
        check_curator_project(conn, principal, project)


async def _store(request: Request, context: ServerContext, principal: Principal, study: str | None,
                 project: str | None, site: str | None, dataset: str | None) -> Response:
    project, site = _target(principal, project, site)
    await run_in_threadpool(_project_exists, context.engine, principal, project)
    answer_type = _json_only(request, "Store Instances Responses")
    media, params = parse_content_type(request.headers.get("content-type", ""))
    if media != "multipart/related":
        raise ApiError(415, "unsupported_media_type", f"STOW-RS takes multipart/related, not {media or 'nothing'}",
                       'send Content-Type: multipart/related; type="application/dicom"; boundary=...')
    if not params.get("boundary"):
        raise ApiError(400, "bad_request", "the multipart/related Content-Type has no boundary parameter: the parts "
                       "cannot be told apart", 'send Content-Type: multipart/related; type="application/dicom"; '
                       "boundary=... with the boundary the body uses (RFC 2046 5.1.1)")
    if params.get("type", "application/dicom").lower() != "application/dicom":
        raise ApiError(415, "unsupported_media_type",
                       f"only application/dicom parts are supported, not {params['type']}",
                       "send DICOM Part 10 files; the JSON/XML metadata + bulk data forms are not supported")
    if not 1 <= len(params["boundary"]) <= 70:  # RFC 2046 5.1.1: 1 to 70 characters
        raise ApiError(400, "bad_request", f"a multipart boundary of {len(params['boundary'])} characters",
                       "a boundary has 1 to 70 characters (RFC 2046)")
    with PartSpool(params["boundary"], context.state_dir / "dicomweb") as spool:
        try:
            pending = bytearray()  # fed to the parser a megabyte at a time: one thread hop each
            async for chunk in request.stream():
                pending += chunk
                if len(pending) >= STOW_FEED_BYTES:
                    await run_in_threadpool(spool.feed, bytes(pending))
                    pending.clear()
            await run_in_threadpool(spool.feed, bytes(pending))
            parts = await run_in_threadpool(spool.finish)
        except ValueError as error:
            raise ApiError(400, "bad_request", f"malformed multipart body: {error}",
                           "check the boundary and the part headers, and that the body ends with --boundary--; "
                           "nothing of this request was stored: send it again") from None
        except ClientDisconnect:
            raise ApiError(400, "bad_request", "the client went away during the upload", "send it again") from None
        if not parts:
            raise ApiError(400, "bad_request", "the request holds no instance", "send at least one part")
        outcomes = await run_in_threadpool(lambda: [stow.receive(part, study) for part in parts])
        await run_in_threadpool(stow.publish, context.store, outcomes)
    dataset = dataset or stow.default_dataset(site, _dt.date.today())
    await run_in_threadpool(stow.index, context.engine, principal, outcomes, project=project, dataset=dataset,
                            site_id=site, client=client_address(request))
    status, body = stow.response(outcomes, _base_url(request), study)
    return JSONResponse(body, status_code=status, media_type=answer_type)


_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ProjectQuery = Query(default=None, max_length=64, pattern=_NAME, description="Project (default: your only one)")
SiteQuery = Query(default=None, max_length=64, pattern=_NAME, description="Site (default: your site)")
DatasetQuery = Query(default=None, max_length=128, pattern=_NAME,
                     description="Batch (default: STOW_<site>_<YYYYMMDD>)")


@router.post("/studies", summary="STOW-RS: store instances (multipart/related application/dicom)")
async def store_instances(request: Request, project: str | None = ProjectQuery, site: str | None = SiteQuery,
                          dataset: str | None = DatasetQuery, principal: Principal = Depends(current_principal),
                          context: ServerContext = Depends(get_context)) -> Response:
    return await _store(request, context, principal, None, project, site, dataset)


@router.post("/studies/{study}", summary="STOW-RS: store instances of one study")
async def store_study_instances(request: Request, study: str = StudyUID, project: str | None = ProjectQuery,
                                site: str | None = SiteQuery, dataset: str | None = DatasetQuery,
                                principal: Principal = Depends(current_principal),
                                context: ServerContext = Depends(get_context)) -> Response:
    return await _store(request, context, principal, study, project, site, dataset)

