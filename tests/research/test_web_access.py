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

from research_support import RESTRICTED, SEQUESTERED, ResearchCommons

from radcommons.server.auth import SESSION_COOKIE
from radcommons.store.index import make_engine
from radcommons.store.index.accounts import add_user, create_token


def _user(commons: ResearchCommons, name: str, role: str, projects: list[str]) -> str:
    """A token of a new user ``name`` (made once per commons), who has not accepted the agreement."""
    if name not in commons.server.tokens:
        engine = make_engine(commons.server.db_url)
        try:
            add_user(engine, name, role, projects=projects)
            commons.server.tokens[name] = create_token(engine, name)[0]
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
