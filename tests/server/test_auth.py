"""401 without / with a bad, expired or revoked token; 403 for the wrong project, site or role."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import insert
from commons_fixtures import PROJECT, Commons
from serve_support import free_port

from radcommons.store.index import make_engine, upgrade
from radcommons.store.index.accounts import add_user, create_token, grant_projects, revoke_token, utcnow
from radcommons.store.index.schema import system_table


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "hint"} <= set(body["error"])
    assert "Traceback" not in response.text
    return body["error"]


def test_tokens_and_roles(sqlite_commons: Commons) -> None:
    c = sqlite_commons
    with c.http(None) as anonymous:
        assert anonymous.get("/health").json()["status"] == "ok"
        response = anonymous.post("/submissions", json={"project": PROJECT, "dataset": "D1"})
        assert response.status_code == 401 and _error(response)["code"] == "unauthorized"
        assert _error(response)["hint"]
        response = anonymous.get("/whoami", headers={"Authorization": "Bearer rc_not-a-token"})
        assert response.status_code == 401 and _error(response)["code"] == "invalid_token"
        response = anonymous.get("/whoami", headers={"Authorization": "Basic abc"})
        assert response.status_code == 401

    engine = make_engine(c.db_url)
    try:
        short, _ = create_token(engine, "uploader", expires_days=0.5 / 86400)
        revoked, info = create_token(engine, "uploader")
        revoke_token(engine, info.id)
    finally:
        engine.dispose()
    time.sleep(0.6)
    with c.http(None) as anonymous:
        response = anonymous.get("/whoami", headers={"Authorization": f"Bearer {short}"})
        assert response.status_code == 401 and _error(response)["code"] == "token_expired"
        assert "expired" in _error(response)["message"]
        response = anonymous.get("/whoami", headers={"Authorization": f"Bearer {revoked}"})
        assert response.status_code == 401 and _error(response)["code"] == "token_revoked"

    with c.http("uploader") as http:
        assert http.get("/whoami").json()["projects"] == [PROJECT]
        response = http.post("/submissions", json={"project": "Open-B1", "dataset": "D1"})
        assert response.status_code == 403 and _error(response)["code"] == "forbidden"
        response = http.post("/submissions", json={"project": PROJECT, "dataset": "D1", "site_id": "SITE_B"})
        assert response.status_code == 403
        own = http.post("/submissions", json={"project": PROJECT, "dataset": "D1"}).json()
        assert http.get("/quarantine").status_code == 403
    with c.http("other-site") as http:
        assert http.get(f"/submissions/{own['id']}").status_code == 403
    with c.http("reader") as http:
        assert http.post("/submissions", json={"project": PROJECT, "dataset": "D1"}).status_code == 403
    with c.http("curator") as http:
        assert http.get(f"/submissions/{own['id']}").status_code == 200
        # A curator may submit anywhere: a mistyped project made a new, open project at the commit.
        typo = http.post("/submissions", json={"project": "Opne-A1", "dataset": "D1", "site_id": "SITE_A"})
        assert typo.status_code == 404 and "admin project add Opne-A1" in _error(typo)["hint"], typo.text
    # tokens never reach the log
    log = (c.root / "server.log").read_text()
    assert all(token not in log for token in c.tokens.values())


def test_two_authorization_headers_are_refused(sqlite_commons: Commons) -> None:
    """The server used the first of two Authorization headers and ignored the other; now a 401 saying to send one."""
    token = sqlite_commons.tokens["uploader"]
    with sqlite_commons.http(None) as anonymous:
        for (first, second), path in itertools.product(((token, "rc_not-a-token"), ("rc_not-a-token", token),
                                                         (token, token)), ("/whoami", "/summary")):
            response = anonymous.get(path, headers=[("Authorization", f"Bearer {first}"),
                                                    ("Authorization", f"Bearer {second}")])
            assert response.status_code == 401, response.text
            error = _error(response)
            assert error["code"] == "unauthorized" and "2 Authorization headers" in error["message"], error
            assert "send one" in error["hint"] and response.headers["WWW-Authenticate"] == "Bearer"


def test_admin_cli(tmp_path) -> None:
    from typer.testing import CliRunner

    from radcommons.cli import app
    from radcommons.store.index import upgrade

    url = f"sqlite:///{tmp_path / 'index.db'}"
    upgrade(url)
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(app, [*args, "--url", url])

    done = cli("admin", "user", "add", "site-a", "--role", "contributor", "--project", PROJECT, "--site", "SITE_A")
    assert done.exit_code == 0, done.output
    assert cli("admin", "user", "add", "site-a", "--role", "contributor", "--project", "X").exit_code != 0
    assert cli("admin", "user", "add", "bob", "--role", "king").exit_code != 0
    done = cli("admin", "token", "create", "site-a", "--expires-days", "7")
    assert done.exit_code == 0, done.output
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("rc_") and len(token) > 40
    listing = cli("admin", "token", "list")
    assert listing.exit_code == 0 and token not in listing.stdout and "active" in listing.stdout
    assert cli("admin", "token", "revoke", "1").exit_code == 0
    assert "revoked" in cli("admin", "token", "list").stdout
    assert "site-a" in cli("admin", "user", "list").stdout


def test_a_token_in_a_query_string_is_not_in_the_access_log(tmp_path: Path) -> None:
    """`radcommons serve` at its default log level wrote ``?token=rc_...`` verbatim into its access
    log (the request is refused, 401, but the token was on disk): secret-named query values and
    anything in the token format are redacted, the rest of the request line stays."""
    db_url = f"sqlite:///{tmp_path / 'index.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        add_user(engine, "leaky", "researcher")
        token, _ = create_token(engine, "leaky")
    finally:
        engine.dispose()
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "RADCOMMONS_DATABASE_URL": db_url, "RADCOMMONS_OBJECT_STORE_URL": str(tmp_path / "objects")}
    with log.open("wb") as out:  # the default --log-level (info), as an operator runs it
        server = subprocess.Popen([sys.executable, "-m", "radcommons", "serve", "--port", str(port),
                                   "--state-dir", str(tmp_path / "state")], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        secrets = [token, "plain-secret-1", "plain-secret-2", "plain-secret-3"]
        paths = [f"/api/v1/whoami?token={token}", f"/api/v1/cases?access_token={token}&limit=5",
                 "/api/v1/cases?api_key=plain-secret-1&fields=sex", "/api/v1/cases?Token=plain-secret-2",
                 f"/?case.sex=Female&q={token}", "/api/v1/whoami?password=plain-secret-3"]
        answers = [httpx.get(url + path, timeout=10).status_code for path in paths]
        assert answers[:2] == [401, 401], answers
    finally:
        server.terminate()
        server.wait(15)
    text = log.read_text()
    assert "/api/v1/whoami?token=REDACTED" in text and "limit=5" in text and "case.sex=Female" in text, text
    assert not [s for s in secrets if s in text], text
    assert "rc_" not in text.replace("rc_session", ""), text


def test_a_contributor_submits_only_for_its_own_site(sqlite_commons: Commons, run_cli) -> None:
    """A contributor made without --site submitted for whichever site it named (and so counted that
    site's indexed files as its own, and listed its submissions); now the CLI refuses to make one,
    and an account made before that rule may not submit at all."""
    made = run_cli("admin", "user", "add", "no-site", "--role", "contributor", "--project", PROJECT,
                   "--url", sqlite_commons.db_url)
    assert made.returncode == 2, (made.stdout, made.stderr)
    assert "needs the site it submits for" in made.stderr and "--site" in made.stderr
    assert "Traceback" not in made.stderr
    engine = make_engine(sqlite_commons.db_url)
    try:  # an account made before a site was required
        with engine.begin() as conn:
            conn.execute(insert(system_table("user")).values(name="old-no-site", role="contributor", site_id=None,
                                                             created_at=utcnow()))
        grant_projects(engine, "old-no-site", [PROJECT])
        token = create_token(engine, "old-no-site")[0]
    finally:
        engine.dispose()
    with sqlite_commons.http("uploader") as uploader:
        theirs = uploader.post("/submissions", json={"project": PROJECT, "dataset": "SITE-A-OWN"})
        assert theirs.status_code in (200, 201), theirs.text
    with sqlite_commons.http(None) as http:
        http.headers["Authorization"] = f"Bearer {token}"
        for site in ("SITE_A", "SITE_B", None):
            answer = http.post("/submissions", json={"project": PROJECT, "dataset": "NO-SITE-1", "site_id": site})
            assert answer.status_code == 403, answer.text
            assert "has no site" in _error(answer)["message"] and "--site" in _error(answer)["hint"]
        listing = http.get("/submissions")
        assert listing.status_code == 403 and "has no site" in _error(listing)["message"]
        stow = http.post(f"{sqlite_commons.url}/dicomweb/studies", params={"project": PROJECT, "site": "SITE_B"},
                         headers={"Content-Type": "multipart/related; type=\"application/dicom\"; boundary=x"},
                         content=b"--x--\r\n")
        assert stow.status_code == 403, stow.text


def test_a_refused_token_on_a_long_path_is_401_and_audited_whole(commons: Commons) -> None:
    """The refusal is audited with the request's path as target; a path longer than the column
    (256) made PostgreSQL refuse the event, and the 401 became a 500. The target is cut to fit
    and the whole path kept in the event's detail."""
    path = "/exports/" + "x" * 400
    with commons.http(None) as anonymous:
        refused = anonymous.get(path, headers={"Authorization": "Bearer rc_not-a-token"})
    assert refused.status_code == 401 and _error(refused)["code"] == "invalid_token", refused.text
    with commons.http("admin") as admin:
        event = admin.get("/admin/audit", params={"action": "auth.refused", "limit": 1}).json()[0]
    assert len(event["target"]) == 256 and event["detail"]["target"] == "/api/v1" + path, event
