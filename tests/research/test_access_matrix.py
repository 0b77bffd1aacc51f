"""The authorization matrix: every route of the application x every role x every availability.

``ROUTE_POLICY`` is the expected-access table, as plain data. The routes are enumerated from
the application itself, so a new endpoint without an entry here fails
:func:`test_every_route_has_a_policy`. For each research route every user is tried and the
status checked; every successful answer is searched for anything of a project that user may
not read (project name, patient pseudonym, study and SOP UIDs, object ids): nothing of the
sequestered project may ever appear for a researcher, a contributor or a visitor.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from research_support import OPEN, READS, RESTRICTED, SEQUESTERED, USERS, ResearchCommons
from fastapi.routing import iter_route_contexts

from radcommons.server.app import create_app
from radcommons.settings import Settings

#: Policies: public (anyone), aggregate (anyone; counts only, suppressed without the agreement),
#: authenticated (any valid token), research (token + data use agreement; rows of readable
#: projects only), admin, curator (curators and admins), submission (contributors in their
#: projects, curators, admins: tests/server), dicomweb (research rules: tests/dicomweb), web (explorer).
ROUTE_POLICY: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "public", ("GET", "/docs"): "public", ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public", ("GET", "/api/v1/health"): "public", ("GET", "/api/v1/dua"): "public",
    ("GET", "/api/v1/summary"): "aggregate", ("POST", "/api/v1/facets/{node}"): "aggregate",
    ("GET", "/api/v1/whoami"): "authenticated", ("POST", "/api/v1/dua/accept"): "authenticated",
    ("GET", "/api/v1/projects"): "research", ("POST", "/api/v1/query/{node}"): "research",
    **{("GET", f"/api/v1/{p}"): "research" for p in (
        "datasets", "cases", "studies", "series", "instances", "measurements", "visits", "conditions",
        "medications", "procedures", "observations")},
    ("POST", "/api/v1/export/{node}"): "research", ("POST", "/api/v1/manifest"): "research",
    ("GET", "/api/v1/index.parquet"): "research", ("GET", "/api/v1/objects/{sha256}"): "research",
    ("POST", "/api/v1/cohorts"): "research", ("POST", "/api/v1/cohorts/{key}/freeze"): "research",
    ("GET", "/api/v1/cohorts"): "research", ("GET", "/api/v1/cohorts/{key}"): "research",
    ("GET", "/api/v1/cohorts/{key}/members"): "research", ("GET", "/api/v1/cohorts/{key}/manifest"): "research",
    # ML-ready exports: started for cohorts the user may see, read by their owner or an admin only.
    ("POST", "/api/v1/exports"): "research", ("GET", "/api/v1/exports/{export_id}"): "research",
    ("GET", "/api/v1/exports/{export_id}/files/{path:path}"): "research",
    ("DELETE", "/api/v1/exports/{export_id}"): "research",
    ("GET", "/api/v1/admin/audit"): "admin",
    ("GET", "/api/v1/quarantine"): "curator", ("POST", "/api/v1/quarantine/{quarantine_id}/release"): "curator",
    ("DELETE", "/api/v1/quarantine/{quarantine_id}"): "curator",
    ("GET", "/api/v1/harmonization/queue"): "curator", ("GET", "/api/v1/harmonization/decisions"): "curator",
    ("POST", "/api/v1/harmonization/decisions"): "curator",
    ("POST", "/api/v1/submissions"): "submission", ("GET", "/api/v1/submissions"): "submission",
    ("GET", "/api/v1/submissions/{submission_id}"): "submission",
    ("PUT", "/api/v1/submissions/{submission_id}/studies/{study_uid}"): "submission",
    ("POST", "/api/v1/submissions/{submission_id}/clinical/{node}"): "submission",
    ("POST", "/api/v1/submissions/{submission_id}/commit"): "submission",
    ("POST", "/api/v1/submissions/{submission_id}/abandon"): "submission",
    ("GET", "/api/v1/submissions/{submission_id}/receipt"): "submission",
    ("GET", "/api/v1/studies/{study_uid}/versions"): "submission",
    ("HEAD", "/api/v1/submissions/{submission_id}/files/{sha256}"): "submission",
    ("POST", "/api/v1/submissions/{submission_id}/files/states"): "submission",
    ("POST", "/api/v1/submissions/{submission_id}/files/batch"): "submission",
    ("PATCH", "/api/v1/submissions/{submission_id}/files/{sha256}"): "submission",
    ("PUT", "/api/v1/submissions/{submission_id}/files/{sha256}"): "submission",
}
#: The web explorer's pages (server/web; session cookie, same access functions; its own tests).
WEB_ROUTES = [
    ("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("POST", "/logout"), ("GET", "/dua"), ("POST", "/dua"),
    ("GET", "/export/{tab}.csv"), ("GET", "/export/manifest.csv"), ("POST", "/cohorts"),
    ("GET", "/cohorts/{identifier}"), ("GET", "/cohorts/{identifier}/{what}.csv"), ("GET", "/dictionary"),
    ("GET", "/studies/{uid}"), ("GET", "/studies/{uid}/series/{series_uid}/thumbnail.png"), ("GET", "/dashboard"),
    ("GET", "/quarantine/{entry}/preview.png"), ("POST", "/quarantine/{entry}/{action}"),
    ("POST", "/cohorts/{identifier}/exports"), ("GET", "/exports/{export_id}"),  # tests/web/test_ml_export.py
]
ROUTE_POLICY.update({route: "web" for route in WEB_ROUTES})
#: Route prefixes owned by other parts of the server, with their policy (checked in their own tests).
PREFIX_POLICY = {"/dicomweb": "dicomweb", "/viewer/": "web", "/static": "web"}
NO_DUA = {"reader", "uploader"}


def app_routes() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as state:
        app = create_app(Settings(database_url=f"sqlite:///{state}/x.db", object_store_url=f"{state}/objects"),
                         state_dir=state)
    found = []
    for route in iter_route_contexts(app.routes):
        for method in sorted((route.methods or {"GET"}) - {"HEAD"} or {"HEAD"}):
            found.append((method, route.path))
    return found


def policy_of(method: str, path: str) -> str | None:
    if (method, path) in ROUTE_POLICY:
        return ROUTE_POLICY[(method, path)]
    return next((p for prefix, p in PREFIX_POLICY.items() if path.startswith(prefix)), None)


def test_every_route_has_a_policy() -> None:
    missing = [f"{m} {p}" for m, p in app_routes() if policy_of(m, p) is None]
    assert not missing, f"routes without an entry in ROUTE_POLICY (add one, and its tests): {missing}"


def expected_status(policy: str, user: str | None) -> int:
    if policy in ("public", "aggregate"):
        return 200
    if user is None:
        return 401
    if policy == "authenticated":
        return 200
    if policy == "admin":
        return 200 if user == "admin" else 403
    if policy == "research":
        return 403 if user in NO_DUA else 200
    if policy == "curator":
        return 200 if user in ("admin", "curator") else 403
    raise AssertionError(policy)


def _leaks(commons: ResearchCommons, user: str | None, body: bytes, policy: str) -> set[str]:
    text = body.decode("utf-8", "replace")
    # Aggregates count open projects for everyone (small cells suppressed).
    hidden = {OPEN, RESTRICTED, SEQUESTERED} - READS[user] - ({OPEN} if policy == "aggregate" else set())
    return {s for p in hidden for s in commons.secrets_of(p) if s in text}


#: Routes answering with cohorts (one, or a list) as their owner saved them.
COHORT_ANSWERS = {("GET", "/api/v1/cohorts"), ("POST", "/api/v1/cohorts"), ("GET", "/api/v1/cohorts/{key}")}


def _without_own_words(method: str, path: str, user: str | None, body: bytes) -> bytes:
    """``body`` less what ``user`` itself wrote: the name, filter and description of its own cohorts,
    which the cohort routes echo back (freezing members the user froze before answers with that earlier
    snapshot). Another test of the shared commons may have saved one whose filter names a project the
    user may not read (``Seq-X``): the user's own words reveal nothing, while every other field (counts,
    hashes, identifiers) and every other owner's cohort is still searched."""
    if (method, path) not in COHORT_ANSWERS:
        return body
    answer = json.loads(body)
    kept = [{k: v for k, v in c.items() if c["owner"] != user or k not in ("name", "filter", "description")}
            for c in (answer if isinstance(answer, list) else [answer])]
    return json.dumps(kept).encode()


@pytest.fixture(scope="module")
def cohorts(research_commons: ResearchCommons) -> dict[str, Any]:
    """An admin snapshot over every project (sequestered included) and a researcher's over open data."""
    made = {}
    for user in ("admin", "researcher"):
        with httpx.Client(base_url=research_commons.url + "/api/v1", headers=research_commons.headers(user)) as http:
            made[user] = http.post("/cohorts", json={"name": f"all of {user}", "node": "case", "freeze": True}).json()
    with httpx.Client(base_url=research_commons.url + "/api/v1", headers=research_commons.headers("researcher")) as http:
        started = http.post("/exports", json={"cohort": made["researcher"]["identifier"], "format": "dicom"})
        assert started.status_code == 202, started.text
        for _ in range(600):
            status = http.get(f"/exports/{started.json()['id']}").json()
            if status["state"] in ("done", "failed"):
                break
            time.sleep(0.1)
        assert status["state"] == "done", status
        made["export"] = status
    return made


def requests_for(method: str, path: str, cohorts: dict[str, Any], commons: ResearchCommons) -> list[dict[str, Any]]:
    """Concrete requests for a route: (url, json, params, expected override per user)."""
    node_body = {
        "/api/v1/query/{node}": {"limit": 1000, "count": True, "facets": ["project_id"]},
        "/api/v1/facets/{node}": {"fields": ["project_id", "submitter_id"]},
        "/api/v1/export/{node}": {},
    }
    if "{node}" in path:
        # Counts by record identifiers are for full readers; aggregate-only callers get 400 (and no values).
        override = ({user: 400 for user in USERS if user is None or user in NO_DUA}
                    if path == "/api/v1/facets/{node}" else {})
        return [{"url": path.replace("{node}", node), "json": node_body[path], "override": override,
                 "params": {"format": "json"} if "export" in path else {}} for node in ("case", "instance")]
    if path == "/api/v1/objects/{sha256}":
        out = []
        for project in (OPEN, RESTRICTED, SEQUESTERED):
            status = {u: (404 if project not in READS[u] else 200) for u in USERS if u and u not in NO_DUA}
            out.append({"url": path.replace("{sha256}", commons.object_ids[project][0]), "override": status})
        return out
    if "{key}" in path:
        out = []
        for owner, cohort in ((o, c) for o, c in cohorts.items() if o != "export"):
            visible = {"admin", "curator"} | ({"researcher", "contrib", "granted"} if owner == "researcher" else set())
            status = {u: 200 if u in visible else 404 for u in USERS if u and u not in NO_DUA}
            if path.endswith("/freeze"):  # a snapshot cannot be frozen again
                status = {u: 409 if s == 200 else s for u, s in status.items()}
            out.append({"url": path.replace("{key}", cohort["identifier"] if not path.endswith("/freeze")
                                             else str(cohort["id"])), "override": status})
        return out
    if path.startswith("/api/v1/exports"):
        if method == "DELETE":
            return []  # deleting changes the export the other routes read: tests/server/test_exports_robustness.py
        if method == "POST":  # visible cohorts only: the admin's (sequestered members) is not, to a researcher
            return [{"url": path, "json": {"cohort": cohorts["admin"]["identifier"], "format": "dicom"},
                     "override": {u: 202 if u in ("admin", "curator") else 404
                                  for u in USERS if u and u not in NO_DUA}}]
        export = cohorts["export"]  # the researcher's: its owner and admins read it, nobody else
        url = path.replace("{export_id}", export["id"]).replace("{path:path}", "labels.csv")
        return [{"url": url, "override": {u: 200 if u in ("researcher", "admin") else 404
                                          for u in USERS if u and u not in NO_DUA}}]
    if path == "/api/v1/cohorts" and method == "POST":
        return [{"url": path, "json": {"name": "matrix", "node": "case", "freeze": True},
                 "override": {u: 201 for u in USERS if u and u not in NO_DUA}}]
    if path == "/api/v1/manifest":
        return [{"url": path, "json": {"node": "instance"}, "params": {"format": "json"}}]
    if path == "/api/v1/dua/accept":
        return []  # accepting changes the user's state: covered in test_research_api
    if path == "/api/v1/harmonization/decisions" and method == "POST":  # a pair no study carries: changes nothing else
        return [{"url": path, "json": {"modality": "MR", "description": "MATRIX NO SUCH STUDY", "not_mappable": True}}]
    return [{"url": path}]


RESEARCH_ROUTES = sorted(k for k, v in ROUTE_POLICY.items() if v in ("public", "aggregate", "authenticated",
                                                                      "research", "admin"))
#: Curator routes tried here for every role too (the quarantine's need held entries: tests/server).
RESEARCH_ROUTES += sorted(k for k, v in ROUTE_POLICY.items() if v == "curator" and "/harmonization/" in k[1])


@pytest.fixture(scope="module")
def clients(research_commons: ResearchCommons) -> Iterator[dict[str | None, httpx.Client]]:
    """Each user's client for the matrix's requests: making an httpx.Client (its SSL context) took
    about 35 ms, and the matrix made 412 of them, half of its time."""
    with contextlib.ExitStack() as stack:
        yield {user: stack.enter_context(httpx.Client(base_url=research_commons.url,
                                                      headers=research_commons.headers(user), timeout=60))
               for user in USERS}


@pytest.mark.parametrize(("method", "path"), RESEARCH_ROUTES, ids=[f"{m} {p}" for m, p in RESEARCH_ROUTES])
def test_matrix(method: str, path: str, research_commons: ResearchCommons, cohorts: dict[str, Any],
                clients: dict[str | None, httpx.Client]) -> None:
    policy = ROUTE_POLICY[(method, path)]
    for request in requests_for(method, path, cohorts, research_commons):
        for user in USERS:
            want = request.get("override", {}).get(user, expected_status(policy, user))
            if policy == "research" and user is not None and user in NO_DUA:
                want = 403
            http = clients[user]
            http.cookies.clear()  # each request carries the user's token and nothing an earlier answer set
            response = http.request(method, request["url"], json=request.get("json"), params=request.get("params"))
            where = f"{method} {request['url']} as {user}"
            assert response.status_code == want, f"{where}: {response.status_code} {response.text[:300]}"
            if response.status_code == 403 and user in NO_DUA and policy == "research":
                assert response.json()["error"]["code"] == "dua_required", where
            if response.status_code < 300:
                body = response.content
                if request["url"].endswith("index.parquet"):
                    projects = set(pq.read_table(io.BytesIO(body)).column("project_id").to_pylist())
                    assert projects == READS[user], where
                    continue
                leaks = _leaks(research_commons, user, _without_own_words(method, path, user, body), policy)
                if path in ("/api/v1/admin/audit", "/api/v1/whoami"):
                    continue  # the audit log names what admins did; whoami names the user's own grants
                assert not leaks, f"{where} shows data it may not: {sorted(leaks)[:5]}"


@pytest.mark.parametrize("user", [u for u in USERS if u not in NO_DUA and u is not None])
def test_rows_per_availability(user: str, research_commons: ResearchCommons) -> None:
    """Each user's rows of every node come exactly from the projects it may read."""
    with httpx.Client(base_url=research_commons.url + "/api/v1", headers=research_commons.headers(user)) as http:
        for node in ("case", "imaging_study", "series", "instance"):
            rows = http.post(f"/query/{node}", json={"fields": ["project_id"], "limit": 1000}).json()["rows"]
            assert {r["project_id"] for r in rows} == READS[user], (user, node)


def test_anonymous_counts_are_open_and_suppressed(research_commons: ResearchCommons) -> None:
    with httpx.Client(base_url=research_commons.url + "/api/v1") as http:
        summary = http.get("/summary").json()
        facets = http.post("/facets/series", json={"fields": ["project_id", "modality"]}).json()
    assert summary["min_count"] == 10 and summary["projects"] == 1
    assert summary["cases"] is None  # one open case: a small cell
    values = {b["value"] for b in facets["facets"]["project_id"]}
    assert values <= {OPEN}
    assert all(b["count"] is None or b["count"] == 0 or b["count"] >= 10
               for buckets in facets["facets"].values() for b in buckets)
    with httpx.Client(base_url=research_commons.url + "/api/v1") as http:
        pseudonyms = http.post("/facets/case", json={"fields": ["submitter_id"]})
        one = http.post("/facets/case", json={"fields": ["age_at_index"],
                                              "filter": {"=": {"submitter_id": "anyone"}}})
    assert pseudonyms.status_code == 400 and "identifies single records" in pseudonyms.text, pseudonyms.text
    assert one.status_code == 400, one.text


def test_sequestered_grant_opens_nothing(research_commons: ResearchCommons) -> None:
    """A grant to a sequestered project (researcher or contributor) gives no access to it."""
    for user in ("granted", "contrib"):
        with httpx.Client(base_url=research_commons.url + "/api/v1", headers=research_commons.headers(user)) as http:
            rows = http.post("/query/case", json={"filter": {"=": {"project_id": SEQUESTERED}}}).json()["rows"]
            assert rows == []
            sop = research_commons.instances[SEQUESTERED][0]
            assert http.get(f"/objects/{research_commons.object_ids[SEQUESTERED][0]}").status_code == 404
            found = http.post("/query/instance", json={"filter": {"=": {"sop_instance_uid": sop.sop_uid}}})
            assert found.json()["rows"] == []
