"""Fixtures of the research API tests (helpers in :mod:`research_support`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
sys.path.insert(0, str(Path(__file__).parent))

from research_support import ResearchCommons, serving  # noqa: E402


@pytest.fixture(scope="session")
def research_commons(deid_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResearchCommons]:
    """The SQLite-backed commons shared by the research tests (read-mostly; each test makes its own cohorts)."""
    root = tmp_path_factory.mktemp("research-commons")
    with serving(root, f"sqlite:///{root / 'index.db'}", deid_tree) as commons:
        yield commons
