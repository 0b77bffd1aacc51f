"""``GET /api/v1/projects``: the projects a user may read, with availability and case counts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, get_context
from radcommons.server.routes.research import scope_of
from radcommons.store.index.accounts import Principal
from radcommons.store.index.projects import list_projects

router = APIRouter(tags=["research"])


@router.get("/projects", summary="Projects you may read (curators: all), with availability and cases")
def projects(principal: Principal = Depends(current_principal),
             context: ServerContext = Depends(get_context)) -> list[dict[str, Any]]:
    readable = scope_of(context, principal)
    return [p for p in list_projects(context.engine) if readable is None or p["submitter_id"] in readable]
