"""The Jinja2 environment of the explorer's pages (autoescaped; templates ship in the package)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from radcommons import __version__
from radcommons.server.web.access import View
from radcommons.server.web.charts import bar_percent, count_text

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.globals["version"] = __version__
templates.env.filters["count"] = count_text
templates.env.globals["bar_percent"] = bar_percent


#: Headers of every page. Pages show records and who is logged in: a browser keeps none of them
#: (Back after logging out asks the server again), and no other site may frame them to steer clicks.
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'"}


def page(request: Request, template: str, view: View, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the request, the viewer's :class:`View` and ``context``."""
    return templates.TemplateResponse(request, template, {"view": view, "user": view.principal, **context},
                                      status_code=status, headers=PAGE_HEADERS)
