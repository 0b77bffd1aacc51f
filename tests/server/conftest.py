"""Fixtures of the server tests (defined in :mod:`commons_fixtures`, shared with tests/pipelines)."""

from __future__ import annotations

from commons_fixtures import commons, sqlite_commons  # noqa: F401
