"""The review queue knows the curators' decisions, as indexing does (SQLite and PostgreSQL).

A decision teaches the matcher of indexing its sibling pairs: once "XR TIBIA AND FIBULA LEFT 2
VWS" is decided, a study "XR TIBIA AND FIBULA LEFT 2 VIEWS" indexed now gets that code. The
queue's matcher ignored the decisions, so the studies of that pair already indexed were listed
with no suggestion at all; then, with the suggestion, they stayed in the queue uncoded while
studies indexed later got the code. Deciding now re-codes the sibling pairs' studies already
indexed too, so the queue no longer lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from queue_site import TIBIA, site  # noqa: F401  (the fixture)


def test_the_queue_suggests_what_a_decision_taught(migrated_url: str, site: Path, tmp_path: Path,  # noqa: F811
                                                   forked_cli: Callable[..., Any]) -> None:
    def ok(*args: str) -> str:
        result = forked_cli(*args, "--url", migrated_url)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    result = forked_cli("ingest", str(site), "--project", "Open-A1", "--site", "SITE_A", "--workers", "1",
                     "--url", migrated_url, "--store", str(tmp_path / "objects"))
    assert result.returncode == 0, result.stderr
    tibia = next(line for line in ok("harmonize", "queue").splitlines() if TIBIA in line)
    assert "37012-9" not in tibia and "│ none " in tibia, tibia
    decided = ok("harmonize", "decide", "CR", "XR TIBIA AND FIBULA LEFT 2 VWS", "37012-9", "--name",
                 "XR Tibia and Fibula - left 2 Views")
    assert "3 indexed study(ies) updated" in " ".join(decided.split()), decided
    assert TIBIA not in ok("harmonize", "queue")
