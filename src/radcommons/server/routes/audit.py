"""``GET /api/v1/admin/audit``: the append-only audit log, for administrators (no update or delete API)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from radcommons.server.access import require_admin
from radcommons.server.context import ServerContext, get_context
from radcommons.store.index.accounts import Principal
from radcommons.store.index.audit import search_events

router = APIRouter(tags=["admin"])


@router.get("/admin/audit", summary="Audit events, newest first (admins only)")
def audit_log(user: str | None = Query(default=None, max_length=128, description="only this user's events"),
              since: float | None = Query(default=None, ge=0, le=100_000, description="only the last N days"),
              action: str | None = Query(default=None, max_length=64,
                                         description="an action (research.query) or a prefix ending in '.'"),
              limit: int = Query(default=1000, ge=1, le=10_000),
              principal: Principal = Depends(require_admin),
              context: ServerContext = Depends(get_context)) -> list[dict[str, Any]]:
    return search_events(context.engine, user=user, since_days=since, action=action, limit=limit)
