"""Reuse the server tests' de-identified tree fixture (a small synthetic site, de-identified)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

from commons_fixtures import deid_tree  # noqa: E402,F401
