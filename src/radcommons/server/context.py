"""What every request needs: the index engine, the object store, the upload spool, the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from sqlalchemy import Engine

from radcommons.server.uploads import UploadSpool
from radcommons.settings import Settings
from radcommons.store.objects import ObjectStore


@dataclass
class ServerContext:
    settings: Settings
    engine: Engine
    store: ObjectStore
    spool: UploadSpool
    state_dir: Path


def get_context(request: Request) -> ServerContext:
    return request.app.state.context  # type: ignore[no-any-return]


def client_address(request: Request) -> str | None:
    """Where the request came from (for the audit log)."""
    return f"{request.client.host}:{request.client.port}" if request.client else None
