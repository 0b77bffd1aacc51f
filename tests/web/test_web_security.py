"""The explorer's session against requests from other origins and hostile links, over real HTTP.

Against the commons of :mod:`web_fixtures`. SameSite=Strict keeps the session cookie off
cross-site requests only: a page on another port of the same host, or on a sibling subdomain,
is the same *site*, so its browser requests still carry the cookie.
"""

from __future__ import annotations

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

