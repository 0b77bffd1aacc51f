"""The commons HTTP server (FastAPI): submission API, later the research API, DICOMweb and the explorer.

``create_app(settings)`` builds the application; ``radcommons serve`` runs it with uvicorn.
"""

from __future__ import annotations

from radcommons.server.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
