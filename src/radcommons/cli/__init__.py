"""The ``radcommons`` command line: one Typer application with a sub-application per area."""

from __future__ import annotations

from radcommons.cli.app import app, main

__all__ = ["app", "main"]
