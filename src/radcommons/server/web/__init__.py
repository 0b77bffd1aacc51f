"""The Data Explorer: server-rendered pages (Jinja2 + htmx) at ``/``, and the OHIF viewer at ``/viewer/``.

Pages (docs/EXPLORER.md): the faceted cohort builder (``/``), study pages (``/studies/{uid}``), the
dashboard (``/dashboard``), the data dictionary (``/dictionary``), login and the data use
agreement. :func:`install` adds them to the application: ``web.install(app)`` in ``create_app``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from radcommons.server.web import dashboard, routes, study, viewer
from radcommons.server.web.templating import STATIC_DIR


def install(app: FastAPI) -> None:
    """Mount the static assets and the explorer's routes on ``app``."""
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    for router in (routes.router, study.router, dashboard.router, viewer.router):
        app.include_router(router)
