"""``GET /api/v1/whoami``: the token's user, role, site and projects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from radcommons.server.auth import current_principal
from radcommons.store.index.accounts import Principal

router = APIRouter(tags=["auth"])


@router.get("/whoami", summary="The user of the token")
def whoami(principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    return {"name": principal.name, "role": principal.role, "site_id": principal.site_id,
            "projects": sorted(principal.projects), "token_id": principal.token_id,
            "token_expires_at": principal.token_expires_at.isoformat() if principal.token_expires_at else None}
