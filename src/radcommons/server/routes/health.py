"""``GET /api/v1/health``: is the index reachable and migrated, is the object store reachable."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from radcommons import __version__
from radcommons.server.context import ServerContext, get_context
from radcommons.store.index import head_revision
from radcommons.store.index.migrate import engine_revision

router = APIRouter(tags=["health"])


@router.get("/health", summary="Health of the server, its index and object store (no token needed)")
def health(context: ServerContext = Depends(get_context)) -> JSONResponse:
    database: dict[str, Any] = {"reachable": False, "revision": None, "head": head_revision()}
    try:
        with context.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database["reachable"] = True
        database["revision"] = engine_revision(context.engine)
    except SQLAlchemyError as error:
        database["error"] = str(getattr(error, "orig", None) or error).splitlines()[0]
    store: dict[str, Any] = {"reachable": False}
    try:
        context.store.exists("0" * 64)
        store["reachable"] = True
    except Exception as error:  # any fsspec backend error means "not reachable"
        store["error"] = f"{type(error).__name__}: {error}"
    ok = database["reachable"] and database["revision"] == database["head"] and store["reachable"]
    body = {"status": "ok" if ok else "degraded", "version": __version__, "database": database,
            "object_store": store}
    return JSONResponse(body, status_code=200 if ok else 503)
