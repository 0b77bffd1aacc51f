"""The explorer's pages (cookie session) against the research commons: the API's access rules, asked of the same functions.

Counts (``/``, ``/dashboard``) follow :func:`radcommons.server.access.aggregate_scope` as
``/api/v1/summary`` and ``/facets`` do: without the data use agreement a logged-in user counts
open projects only, small cells suppressed, whatever its grants.
"""

from __future__ import annotations

import html
import re

import httpx
import pytest

from research_support import OPEN, RESTRICTED, SEQUESTERED, ResearchCommons

from radcommons.server.auth import SESSION_COOKIE
from radcommons.store.index import make_engine
from radcommons.store.index.accounts import add_user, create_token, get_user
from radcommons.store.index.dua import accept


def _user(commons: ResearchCommons, name: str, role: str, projects: list[str], *, agreed: bool = False) -> str:
    """A token of a new user ``name`` (made once per commons), who has accepted the agreement when ``agreed``."""
    if name not in commons.server.tokens:
        engine = make_engine(commons.server.db_url)
        try:
            add_user(engine, name, role, projects=projects)
            commons.server.tokens[name] = create_token(engine, name)[0]
            if agreed:
                accept(engine, get_user(engine, name).id, name)
        finally:
            engine.dispose()
    return commons.server.tokens[name]


def _pages(commons: ResearchCommons, token: str | None) -> tuple[str, str]:
    """The explorer and the dashboard as ``token``'s session sees them."""
    cookies = {SESSION_COOKIE: token} if token else {}
    with httpx.Client(base_url=commons.url, cookies=cookies) as web:
        explorer, dashboard = web.get("/"), web.get("/dashboard")
    assert explorer.status_code == 200 and dashboard.status_code == 200
    return explorer.text, dashboard.text


def _shown_counts(page: str) -> list[str]:
    """The counts a page shows: the totals, the facet values and the dashboard's bars."""
    counts = re.findall(r'id="total-\w+">([^<]*)<', page)
    counts += re.findall(r'class="fc">([^<]*)<', page)
    counts += [m.rsplit(" ", 2)[-2] for m in re.findall(r"<title>([^<]*: [^<]*)</title>", page)]
    return [html.unescape(c).strip() for c in counts]


@pytest.mark.parametrize("who", ["reader", "granted-no-dua"])
def test_explorer_counts_without_the_agreement_are_the_apis(who: str, research_commons: ResearchCommons) -> None:
    """A logged-in user without the agreement saw exact small counts ("Open-X: 1 cases") and its
    restricted project's counts in the explorer and the dashboard, which the API hides from it."""
    token = _user(research_commons, who, "researcher", [RESTRICTED]) if who != "reader" else \
        research_commons.server.tokens["reader"]
    with httpx.Client(base_url=research_commons.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}) as api:
        summary = api.get("/summary").json()
    assert summary["min_count"] == 10 and summary["cases"] is None  # the API's answer, for comparison
    explorer, dashboard = _pages(research_commons, token)
    for page in (explorer, dashboard):
        assert RESTRICTED not in page and SEQUESTERED not in page
        shown = _shown_counts(page)
        assert shown, page[:2000]
        assert all(c == "<10" or c == "0" or int(c.replace(",", "")) >= 10 for c in shown), shown
    assert re.search(r'id="total-cases">&lt;10<', explorer), explorer[:2000]
    assert "to see records" in explorer


def test_explorer_counts_after_the_agreement(research_commons: ResearchCommons) -> None:
    """The same pages for a user who accepted it: its readable projects, exact counts (the test above can fail)."""
    explorer, dashboard = _pages(research_commons, research_commons.server.tokens["granted"])
    assert RESTRICTED in explorer and f"{RESTRICTED}: 1 cases" in dashboard
    assert SEQUESTERED not in explorer and SEQUESTERED not in dashboard
    assert re.search(r'id="total-cases">2<', explorer), explorer[:2000]


def test_explorer_records_and_downloads_are_audited_like_the_apis(research_commons: ResearchCommons) -> None:
    """Downloads, record tables, study pages and thumbnails of the explorer left no audit event;
    they now record what the API's equivalents record (research.export, research.manifest,
    research.query, research.object)."""
    name = "web-auditee"
    token = _user(research_commons, name, "researcher", [], agreed=True)
    api = httpx.Client(base_url=research_commons.url + "/api/v1", headers={"Authorization": f"Bearer {token}"})
    admin = httpx.Client(base_url=research_commons.url + "/api/v1", headers=research_commons.headers("admin"))
    web = httpx.Client(base_url=research_commons.url, cookies={SESSION_COOKIE: token})
    with api, admin, web:
        series = api.post("/query/series", json={"fields": ["series_uid", "imaging_study.study_uid"],
                                                  "limit": 1}).json()["rows"][0]
        cohort = api.post("/cohorts", json={"name": "audited", "node": "case", "freeze": True}).json()["identifier"]
        study, series_uid = series["imaging_study.study_uid"], series["series_uid"]
        expected = [
            ("/export/cases.csv", "research.export", "case"),
            ("/export/studies.csv?series.modality=CR", "research.export", "imaging_study"),
            ("/export/manifest.csv", "research.manifest", "case"),
            ("/?tab=cases", "research.query", "case"),
            (f"/studies/{study}", "research.query", "imaging_study"),
            (f"/studies/{study}/series/{series_uid}/thumbnail.png", "research.object", None),
            (f"/cohorts/{cohort}/table.csv", "research.export", "case"),
            (f"/cohorts/{cohort}/manifest.csv", "research.manifest", cohort),
        ]
        for path, action, target in expected:
            newest = admin.get("/admin/audit", params={"user": name, "limit": 1}).json()
            last = newest[0]["id"] if newest else 0
            answer = web.get(path)
            assert answer.status_code == 200, (path, answer.text[:300])
            events = [e for e in admin.get("/admin/audit", params={"user": name, "limit": 50}).json()
                      if e["id"] > last]
            assert [e["action"] for e in events] == [action], (path, events)
            assert target is None or events[0]["target"] == target, (path, events)
            assert events[0]["client"].startswith("127.0.0.1") and events[0]["records"] is not None, events
            if action == "research.object":
                assert events[0].get("project_id", OPEN) == OPEN and len(events[0]["target"]) == 64
