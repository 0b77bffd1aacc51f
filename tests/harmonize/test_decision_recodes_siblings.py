"""A curator's decision re-codes every indexed study the matcher now answers by it, over HTTP
against a real ``radcommons serve`` (SQLite and PostgreSQL).

A decision is stored under its pair's key (case and spaces ignored, CR/DX one), and the matcher
learns it as a curated row, so pairs that are the same words otherwise written ("... 2 VWS" for
"... 2 VIEWS") are answered by it too. Only the studies of the decided key were re-coded: the
studies of such a sibling pair kept no code (and stayed in the review queue) while the same pair
indexed a minute later got the decision's code, and a replaced decision left them with the old
one. Now the index says, for every pair, what indexing it now would.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from queue_site import TIBIA, site  # noqa: F401  (the fixture)

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from commons_fixtures import PROJECT, SITE, Commons, commons  # noqa: E402,F401  (the fixture)

SIBLING = "XR TIBIA AND FIBULA LEFT 2 VWS"  # no indexed study carries it


def codes(http: Any) -> dict[str, set[str | None]]:
    """Study description -> the codes its studies carry, through the research API."""
    answer = http.get("/studies", params={"fields": "study_description,loinc_code", "limit": 1000})
    assert answer.status_code == 200, answer.text
    out: dict[str, set[str | None]] = {}
    for row in answer.json()["rows"]:
        out.setdefault(row["study_description"], set()).add(row["loinc_code"])
    return out


def test_a_decision_recodes_the_pairs_the_matcher_answers_by_it(commons: Commons, site: Path,  # noqa: F811
                                                                  forked_cli: Callable[..., Any]) -> None:
    result = forked_cli("ingest", str(site), "--project", PROJECT, "--site", SITE, "--workers", "1",
                     "--url", commons.db_url, "--store", str(commons.store_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    variants = (TIBIA, "xr  tibia and fibula left 2 views")  # CR and DX studies: one key
    with commons.http("curator") as curator:
        before = codes(curator)
        assert all(before[d] == {None} for d in variants), before
        answer = curator.post("/harmonization/decisions", json={
            "modality": "CR", "description": SIBLING, "code": "37012-9", "name": "XR Tibia and Fibula - left 2 Views"})
        assert answer.status_code == 200, answer.text
        assert (answer.json()["studies"], answer.json()["by_project"]) == (3, {PROJECT: 3}), answer.text
        after = codes(curator)
        assert all(after[d] == {"37012-9"} for d in variants), after
        assert {d: c for d, c in after.items() if d not in variants} == \
            {d: c for d, c in before.items() if d not in variants}  # nothing else changed
        assert TIBIA not in [i["description"].upper() for i in curator.get("/harmonization/queue").json()["items"]]

        # Replaced: the siblings follow the decision, not the code it replaced.
        answer = curator.post("/harmonization/decisions", json={
            "modality": "CR", "description": SIBLING.lower(), "code": "36643-5"})
        assert answer.status_code == 200 and answer.json()["studies"] == 3, answer.text
        assert all(codes(curator)[d] == {"36643-5"} for d in variants)

        # Not mappable teaches no code: the siblings get what the matcher says without it (nothing),
        # and are in the queue again.
        answer = curator.post("/harmonization/decisions", json={"modality": "DX", "description": SIBLING,
                                                                "not_mappable": True})
        assert answer.status_code == 200 and answer.json()["studies"] == 3, answer.text
        assert all(codes(curator)[d] == {None} for d in variants)
        queue = curator.get("/harmonization/queue").json()["items"]
        assert [i["studies"] for i in queue if i["description"].upper().split() == TIBIA.split()] == [3], queue
    with commons.http("admin") as admin:  # each re-coding audited, the sibling pair's studies with it
        events = admin.get("/admin/audit", params={"action": "harmonization.restudy"}).json()
    assert len(events) == 3 and all(e["records"] == 3 for e in events), events
