"""Placeholder: filled in by its area's work."""

from __future__ import annotations


def command() -> None:
    """Not yet written. Example: none yet."""
