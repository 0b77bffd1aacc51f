"""The explorer's session against requests from other origins and hostile links, over real HTTP.

Against the commons of :mod:`web_fixtures`. SameSite=Strict keeps the session cookie off
cross-site requests only: a page on another port of the same host, or on a sibling subdomain,
is the same *site*, so its browser requests still carry the cookie.
"""

from __future__ import annotations

import re

import httpx

from web_fixtures import WebCommons

from radcommons.server.auth import SESSION_COOKIE

ELSEWHERE = "http://127.0.0.1:9"  # same site (host), another origin (port)


def test_the_api_refuses_a_cookie_change_from_another_origin(web_commons: WebCommons) -> None:
    """A plain form on another port of the host froze a cohort (or released a quarantined image, or
    accepted the agreement) through the API with the victim's session cookie: 201/200."""
    cookie = {SESSION_COOKIE: web_commons.tokens["curator"]}
    body = {"name": "from elsewhere", "node": "case"}
    with httpx.Client(base_url=web_commons.url + "/api/v1", cookies=cookie, headers={"Origin": ELSEWHERE}) as http:
        refused = http.post("/cohorts", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "cross_origin"
        assert http.get("/cohorts").status_code == 200  # reading stays open to the session
    with httpx.Client(base_url=web_commons.url + "/api/v1", cookies=cookie,
                      headers={"Origin": web_commons.url}) as http:
        assert http.post("/cohorts", json=body).status_code == 201  # the explorer's own origin
    # A bearer token is not sent by a browser on its own: another origin may use it (scripts, notebooks).
    with httpx.Client(base_url=web_commons.url + "/api/v1", headers={
            "Origin": ELSEWHERE, "Authorization": f"Bearer {web_commons.tokens['curator']}"}) as http:
        assert http.post("/cohorts", json=body).status_code == 201


def _page(web_commons: WebCommons, user: str) -> httpx.Client:
    """The explorer as ``user``'s browser asks for it (session cookie, this site's Origin)."""
    return httpx.Client(base_url=web_commons.url, cookies={SESSION_COOKIE: web_commons.tokens[user]},
                        headers={"Origin": web_commons.url}, timeout=60, follow_redirects=True)


def _total(page: str, tab: str = "cases") -> str:
    found = re.search(rf'id="total-{tab}">([^<]*)<', page)
    assert found, page[:2000]
    return found.group(1)


def test_a_value_a_facet_does_not_have_drops_only_itself(web_commons: WebCommons) -> None:
    """``?case.sex=Female&series.modality=BOGUS`` showed every case: the good filter went with the bad
    value, and the message named the engine's filter path (filter.and[1].in...), not the link's."""
    with _page(web_commons, "curator") as web:
        female = web.get("/?case.sex=Female").text
        both = web.get("/?case.sex=Female&series.modality=BOGUS")
        assert both.status_code == 200
        assert _total(both.text) == _total(female) != _total(web.get("/").text)
        left_out = re.search(r'id="left-out">([^<]*)<', both.text)
        assert left_out and "series.modality=BOGUS" in left_out.group(1), both.text[:3000]
        assert "filter." not in left_out.group(1) and "Sex</strong> is Female" in both.text
        # A form built from such a link (freeze, save) and the downloads leave it out too, not a JSON 400.
        saved = web.post("/cohorts", data={"name": "bogus modality", "action": "freeze", "tab": "cases",
                                           "qs": "case.sex=Female&series.modality=BOGUS"})
        assert saved.status_code == 200 and "/cohorts/rc-cohort-" in str(saved.url), saved.text[:500]
        download = web.get("/export/cases.csv?case.sex=Female&series.modality=BOGUS")
        assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")


def test_save_says_saved_and_links_cannot_speak_for_the_site(web_commons: WebCommons) -> None:
    """After "Save query" the page said "Not understood, so left out of the filters: saved=NAME";
    and ``?saved=`` / ``?notice=`` printed any sentence a link carried in the site's status box."""
    with _page(web_commons, "curator") as web:
        saved = web.post("/cohorts", data={"name": "CT women", "action": "save", "tab": "cases",
                                           "qs": "case.sex=Female"})
        assert saved.status_code == 200 and "saved=" in str(saved.url)
        assert 'id="left-out"' not in saved.text, saved.text[:3000]
        assert "Saved query “CT women”" in saved.text
        spoof = "Your account is locked, call 555-0100"
        assert spoof not in web.get("/", params={"saved": spoof}).text
        assert spoof not in web.get("/dashboard", params={"notice": spoof}).text


def test_quarantine_decisions_answer_pages(web_commons: WebCommons) -> None:
    """A decision the pipeline refuses, or an entry that is not a number, answered the API's JSON."""
    with _page(web_commons, "curator") as web:
        for path in ("/quarantine/999999/delete", "/quarantine/abc/release"):
            answer = web.post(path)
            assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html"), answer.text
            assert "<html" in answer.text and "quarantine entry" in answer.text.lower()
        assert web.get("/quarantine/abc/preview.png").status_code == 404


def test_another_origin_cannot_log_the_user_out(web_commons: WebCommons) -> None:
    """POST /logout was the one form without the Origin check: any same-site page ended the session."""
    with _page(web_commons, "reader") as web:
        refused = web.post("/logout", headers={"Origin": ELSEWHERE})
        assert refused.status_code == 403 and SESSION_COOKIE not in refused.headers.get("set-cookie", "")
        logged_out = web.post("/logout", follow_redirects=False)
        assert logged_out.status_code == 303 and f'{SESSION_COOKIE}=""' in logged_out.headers["set-cookie"]
