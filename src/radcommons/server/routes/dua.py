"""The data use agreement: ``GET /api/v1/dua`` (no token needed) and ``POST /api/v1/dua/accept``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from radcommons.server.access import has_accepted_agreement, optional_principal
from radcommons.server.auth import current_principal
from radcommons.server.context import ServerContext, client_address, get_context
from radcommons.store.index import dua
from radcommons.store.index.accounts import Principal

router = APIRouter(tags=["research"])


@router.get("/dua", summary="The current data use agreement (text and version)")
def get_dua(principal: Principal | None = Depends(optional_principal)) -> dict[str, Any]:
    return {"version": dua.DUA_VERSION, "text": dua.DUA_TEXT,
            "accepted": has_accepted_agreement(principal) if principal is not None else None}


@router.post("/dua/accept", summary="Accept the current data use agreement (recorded with time and address)")
async def accept_dua(request: Request, principal: Principal = Depends(current_principal),
                     context: ServerContext = Depends(get_context)) -> dict[str, Any]:
    when = await run_in_threadpool(dua.accept, context.engine, principal.user_id, principal.name,
                                   client=client_address(request))
    return {"user": principal.name, "version": dua.DUA_VERSION, "accepted_at": when.isoformat()}
