"""Placeholder: filled in by its area's work."""

from __future__ import annotations


def synth() -> None:
    """Not yet written."""
