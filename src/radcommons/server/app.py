"""The FastAPI application of the commons: :func:`create_app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from radcommons import __version__
from radcommons.server.context import ServerContext
from radcommons.server.errors import install_error_handlers
from radcommons.server.routes import auth, dicomweb, health, quarantine, submissions, uploads
from radcommons.server.uploads import UploadSpool
from radcommons.settings import Settings, load_settings
from radcommons.store.index import make_engine
from radcommons.store.objects import ObjectStore

API_PREFIX = "/api/v1"
#: Where the server keeps its state (upload spools) unless told otherwise.
DEFAULT_STATE_DIR = Path("var/server")

DESCRIPTION = """The RadCommons commons server.

* **Submission API**: sites send de-identified studies (resumable uploads named by sha256),
  study manifests and clinical records, then commit: every instance is re-checked
  (verification gate), indexed or quarantined, and a receipt says what happened.
* Every request needs `Authorization: Bearer TOKEN` (except `/api/v1/health`).
* Errors: `{"error": {"code", "message", "hint"}}`. See docs/API.md.
"""


def create_app(settings: Settings | None = None, *, state_dir: Path | None = None) -> FastAPI:
    """The application for ``settings`` (default: the effective configuration).

    ``state_dir`` holds the upload spools (default ``var/server``); it must be on a disk that
    survives restarts, since a resumed upload continues from what is there.
    """
    settings = settings or load_settings()
    state = Path(state_dir or DEFAULT_STATE_DIR).resolve()
    (state / "uploads").mkdir(parents=True, exist_ok=True)
    store = ObjectStore(settings.object_store_url, **settings.object_store_options)
    store.clean_temp()  # what killed ingests, uploads and STOW-RS requests left in the store's tmp/
    engine = make_engine(settings.database_url)
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="RadCommons", version=__version__, description=DESCRIPTION,
                  openapi_url="/openapi.json", docs_url="/docs", lifespan=lifespan)
    app.state.context = ServerContext(settings, engine, store, UploadSpool(state / "uploads", store), state)
    install_error_handlers(app)
    for router in (health.router, auth.router, submissions.router, uploads.router, quarantine.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(dicomweb.router)  # /dicomweb (PS3.18), docs/DICOMWEB.md
    from radcommons.server.routes import audit, cohorts, dua, projects, research  # research API, docs/API.md
    for router in (dua.router, projects.router, research.router, cohorts.router, audit.router):
        app.include_router(router, prefix=API_PREFIX)
    from radcommons.server.routes import harmonization  # the curators' queue: docs/HARMONIZATION.md
    app.include_router(harmonization.router, prefix=API_PREFIX)
    from radcommons.server.routes import exports  # ML-ready exports for researchers: docs/EXPORT.md
    app.include_router(exports.router, prefix=API_PREFIX)
    from radcommons.server import web; web.install(app)  # explorer pages at /, viewer at /viewer/: docs/EXPLORER.md

    logging.getLogger("radcommons.server").setLevel(logging.INFO)
    return app
