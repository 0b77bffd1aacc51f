"""The Data Explorer: server-rendered pages (Jinja2 + htmx) at ``/``, and the OHIF viewer at ``/viewer/``.

Pages (docs/EXPLORER.md): the faceted cohort builder (``/``), study pages (``/studies/{uid}``), the
dashboard (``/dashboard``), the data dictionary (``/dictionary``), login and the data use
agreement. :func:`install` adds them to the application: ``web.install(app)`` in ``create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from radcommons.server.web import dashboard, ml_export, routes, study, viewer
from radcommons.server.web.access import anonymous_view
from radcommons.server.web.session import DisabledSession, clear_session
from radcommons.server.web.templating import STATIC_DIR, page


def _disabled_page(request: Request, error: Exception) -> HTMLResponse:
    """401: the session's account is disabled (the page says so, and the cookie is dropped)."""
    assert isinstance(error, DisabledSession)
    failure = error.failure
    response = page(request, "message.html", anonymous_view(), status=401, title="Account disabled",
                    message=f"{failure.message[:1].upper()}{failure.message[1:]}: {failure.hint}.")
    clear_session(response)
    return response


def install(app: FastAPI) -> None:
    """Mount the static assets and the explorer's routes on ``app``."""
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    for router in (routes.router, ml_export.router, study.router, dashboard.router, viewer.router):
        app.include_router(router)
    app.add_exception_handler(DisabledSession, _disabled_page)
