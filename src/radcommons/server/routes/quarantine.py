"""The quarantine, for curators: list held instances, release (index) or delete them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from radcommons.pipelines import submission as pipeline
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.server.routes.params import RowId
from radcommons.store.index.accounts import Principal

router = APIRouter(tags=["quarantine"])


@router.get("/quarantine", summary="Quarantined instances with the reasons")
def list_quarantine(project: str | None = Query(default=None),
                    status: str = Query(default="held", pattern="^(held|released|deleted|all)$"),
                    principal: Principal = Depends(current_principal),
                    context: ServerContext = Depends(get_context)) -> list[dict[str, Any]]:
    return pipeline.list_quarantine(context.engine, principal, project, status)


@router.post("/quarantine/{quarantine_id}/release", summary="Publish a held instance (index it)")
def release(quarantine_id: RowId, request: Request, principal: Principal = Depends(current_principal),
            context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    return pipeline.release(context.engine, context.store, principal, quarantine_id, client=client_address(request))


@router.delete("/quarantine/{quarantine_id}", summary="Delete a held instance")
def delete(quarantine_id: RowId, request: Request, principal: Principal = Depends(current_principal),
           context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    return pipeline.delete_quarantined(context.engine, context.store, principal, quarantine_id,
                                       client=client_address(request))
