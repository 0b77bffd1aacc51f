"""Fixtures of the browser tests (in :mod:`web_fixtures`)."""

from __future__ import annotations

from web_fixtures import web_commons  # noqa: F401
