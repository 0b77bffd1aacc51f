"""The curators' harmonization queue over HTTP, against a real ``radcommons serve``, on SQLite and PostgreSQL.

A de-identified synthetic site is ingested with the command line, with some study descriptions
rewritten so the queue has work (the ``site`` fixture of tests/harmonize/queue_site.py), into the
``commons`` of commons_fixtures.py (its users: curator, admin, the researcher ``reader``, the
contributor ``uploader``). A curator lists the queue, decides, sees the decision listed and the
indexed studies' code fields change (read back through the research API); a researcher, a
contributor and a visitor are refused; bad input is a 422 naming the field.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from commons_fixtures import PROJECT, SITE, Commons

sys.path.insert(0, str(Path(__file__).parent.parent / "harmonize"))
# The site with study descriptions rewritten so the queue has work (shared with the CLI's test).
from queue_site import TIBIA, site  # noqa: E402,F401


@pytest.fixture
def served(commons: Commons, site: Path, run_cli: Callable[..., Any]) -> Any:
    """(base URL, tokens by user): the running commons with the site ingested through the command line."""
    result = run_cli("ingest", str(site), "--project", PROJECT, "--site", SITE, "--workers", "1",
                     "--url", commons.db_url, "--store", str(commons.store_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    return commons.url + "/api/v1", commons.tokens


def client(url: str, token: str | None) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=60)


def codes_by_description(http: httpx.Client) -> dict[str, list[dict[str, Any]]]:
    """Description -> the code fields of its studies, through the research API."""
    answer = http.get("/studies", params={"fields": "study_description,loinc_code,loinc_long_common_name,"
                                                    "loinc_method,loinc_system", "limit": 1000})
    assert answer.status_code == 200, answer.text
    out: dict[str, list[dict[str, Any]]] = {}
    for row in answer.json()["rows"]:
        out.setdefault(row["study_description"], []).append(row)
    return out


def test_curator_works_the_queue_over_http(served: Any) -> None:
    url, tokens = served
    curator = client(url, tokens["curator"])

    queue = curator.get("/harmonization/queue")
    assert queue.status_code == 200, queue.text
    body = queue.json()
    assert (body["total"], body["studies"]) == (2, 4), body
    first, second = body["items"]
    assert (first["rank"], first["studies"]) == (1, 3) and first["description"].upper().split() == TIBIA.split()
    assert first["modality"] == "CR" and first["suggestion"] is None  # no candidate in MIDRC's catalogue
    assert second["description"] == "XR CHEST PA ERECT" and second["suggestion"]["code"] == "24648-8"
    assert 0 < second["suggestion"]["confidence"] < 0.9 and second["suggestion"]["method"]
    page = curator.get("/harmonization/queue", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 2 and [i["rank"] for i in page["items"]] == [2]
    before = codes_by_description(curator)
    assert before["XR CHEST 2 VIEWS"][0]["loinc_code"] == "42272-5"  # the matcher's exact answer

    # Everyone but curators and admins is refused, and nothing is recorded.
    decision = {"modality": "DX", "description": "XR CHEST 2 VIEWS", "code": "36643-5",
                "note": "2 views, not PA and lateral"}
    for user in ("reader", "uploader", None):
        with client(url, tokens.get(user or "")) as http:
            for method, path, json in (("GET", "/harmonization/queue", None), ("GET", "/harmonization/decisions", None),
                                       ("POST", "/harmonization/decisions", decision)):
                answer = http.request(method, path, json=json)
                want = (401, "unauthorized") if user is None else (403, "forbidden")
                assert (answer.status_code, answer.json()["error"]["code"]) == want, (user, path, answer.text)
                assert answer.json()["error"]["hint"]
    assert curator.get("/harmonization/decisions").json()["total"] == 0

    # Bad input: 422 naming the field, with what to do; nothing recorded.
    for bad, field, words in (
        ({**decision, "code": "99999-9"}, "body.code", "not in the catalogue"),
        ({**decision, "code": "tibia"}, "body.code", "is not a LOINC code"),
        ({**decision, "description": "   "}, "body.description", "description is empty"),
        ({**decision, "modality": "CT, MR"}, "body.modality", "give exactly one modality"),
        ({**decision, "modality": "CR\\DX"}, "body.modality", "is not a DICOM modality"),
        ({**decision, "modality": "FOO"}, "body.modality", "is not a DICOM modality"),
        ({**decision, "not_mappable": True}, "body", "not both"),
        ({"modality": "DX", "description": TIBIA}, "body", "give the code"),
    ):
        answer = curator.post("/harmonization/decisions", json=bad)
        assert answer.status_code == 422, (bad, answer.text)
        error = answer.json()["error"]
        assert [f["field"] for f in error["fields"]] == [field], error
        assert words in error["fields"][0]["message"] and error["hint"], error
    assert curator.get("/harmonization/decisions").json()["total"] == 0

    # Decided: the indexed study changes at once, the decider is the token's user.
    answer = curator.post("/harmonization/decisions", json=decision)
    assert answer.status_code == 200, answer.text
    outcome = answer.json()
    assert (outcome["studies"], outcome["by_project"], outcome["replaced"]) == (1, {PROJECT: 1}, False)
    assert outcome["decision"]["decided_by"] == "curator" and outcome["decision"]["long_common_name"] == "XR Chest 2 Views"
    chest = codes_by_description(curator)["XR CHEST 2 VIEWS"][0]
    assert (chest["loinc_code"], chest["loinc_long_common_name"], chest["loinc_method"], chest["loinc_system"]) == \
        ("36643-5", "XR Chest 2 Views", "XR", "Chest")

    # Not mappable: the pair leaves the queue; an admin may decide too.
    answer = client(url, tokens["admin"]).post("/harmonization/decisions",
                                               json={"modality": "CR", "description": TIBIA.lower(),
                                                     "not_mappable": True, "note": "no code in the catalogue"})
    assert answer.status_code == 200 and answer.json()["studies"] == 0, answer.text
    assert answer.json()["decision"]["not_mappable"] is True
    queue = curator.get("/harmonization/queue").json()
    assert (queue["total"], [i["description"] for i in queue["items"]]) == (1, ["XR CHEST PA ERECT"])

    # Deciding again replaces; the suggestion accepted takes the pair off the queue and codes its study.
    answer = curator.post("/harmonization/decisions", json={"modality": "DX", "description": "xr chest pa  erect",
                                                              "code": second["suggestion"]["code"]})
    assert answer.status_code == 200 and answer.json()["studies"] == 1, answer.text
    assert [s["loinc_code"] for s in codes_by_description(curator)["XR CHEST PA ERECT"]] == ["24648-8"]
    answer = curator.post("/harmonization/decisions", json={**decision, "note": "again"})
    assert answer.json()["replaced"] is True and answer.json()["previous_code"] == "36643-5"
    assert answer.json()["studies"] == 0  # already coded
    assert curator.get("/harmonization/queue").json()["total"] == 0

    listed = curator.get("/harmonization/decisions").json()
    assert listed["total"] == 3
    newest = listed["decisions"][0]
    assert (newest["description"], newest["code"], newest["note"], newest["decided_by"]) == \
        ("XR CHEST 2 VIEWS", "36643-5", "again", "curator")
    assert {d["decided_by"] for d in listed["decisions"]} == {"curator", "admin"}
    assert [d["not_mappable"] for d in listed["decisions"]].count(True) == 1
    assert curator.get("/harmonization/decisions", params={"limit": 1, "offset": 2}).json()["decisions"][0][
        "decided_by"] == "admin"

    # Audited as the CLI audits: who, the pair, the code; one restudy event per project changed.
    events = client(url, tokens["admin"]).get("/admin/audit", params={"action": "harmonization."}).json()
    decide = [e for e in events if e["action"] == "harmonization.decide"]
    restudy = [e for e in events if e["action"] == "harmonization.restudy"]
    assert len(decide) == 4 and len(restudy) == 2, events
    assert {e["actor"] for e in decide} == {"curator", "admin"}
    assert {e["project_id"] for e in restudy} == {PROJECT}
    curator.close()
