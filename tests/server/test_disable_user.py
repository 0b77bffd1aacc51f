"""``radcommons admin user disable/enable``: a disabled account's tokens fail at once, everywhere.

Through the real command line (a subprocess on the commons' database) and real HTTP to a running
server, on SQLite and PostgreSQL: the API, DICOMweb and the explorer answer 401 saying the account
is disabled; enabling it again makes the same token work again.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import httpx
from commons_fixtures import Commons

from radcommons.server.auth import SESSION_COOKIE

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _admin(run_cli: Cli, commons: Commons, *args: str) -> str:
    done = run_cli("admin", "user", *args, "--url", commons.db_url)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _state_of(listing: str, name: str) -> str:
    row = next(line for line in listing.splitlines() if f" {name} " in line)
    return "disabled" if "disabled" in row else "enabled" if "enabled" in row else "?"


def _disabled_error(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "account_disabled"
    assert "'reader' is disabled" in error["message"] and "administrator" in error["hint"]


def test_disable_and_enable_a_user(commons: Commons, run_cli: Cli) -> None:
    token = commons.tokens["reader"]
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=commons.url, timeout=60) as http, \
            httpx.Client(base_url=commons.url, timeout=60, cookies={SESSION_COOKIE: token}) as browser:
        assert http.get("/api/v1/whoami", headers=bearer).status_code == 200
        assert _state_of(_admin(run_cli, commons, "list"), "reader") == "enabled"

        assert "user reader (researcher) is disabled since" in _admin(run_cli, commons, "disable", "reader")
        listing = _admin(run_cli, commons, "list")
        assert _state_of(listing, "reader") == "disabled" and _state_of(listing, "curator") == "enabled"
        _disabled_error(http.get("/api/v1/whoami", headers=bearer))
        _disabled_error(http.get("/dicomweb/studies", headers=bearer))
        # The explorer: a session cookie of the disabled account gets a 401 page saying so.
        page = browser.get("/")
        assert page.status_code == 401 and "text/html" in page.headers["content-type"]
        assert "is disabled" in page.text and "contact an administrator" in page.text
        assert f'{SESSION_COOKIE}=""' in page.headers.get("set-cookie", "")  # the session is dropped
        login = http.post("/login", data={"token": token})
        assert login.status_code == 401 and "is disabled" in login.text
        # Another user is untouched; disabling twice is harmless.
        assert http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {commons.tokens['curator']}"}) \
            .status_code == 200
        assert "is disabled" in _admin(run_cli, commons, "disable", "reader")

        assert "user reader (researcher) is enabled" in _admin(run_cli, commons, "enable", "reader")
        assert http.get("/api/v1/whoami", headers=bearer).json()["name"] == "reader"
        browser.cookies.set(SESSION_COOKIE, token)  # the 401 page dropped it, as a browser would
        assert browser.get("/").status_code == 200


def test_disable_an_unknown_user(migrated_url: str, run_cli: Cli) -> None:
    """Only the command line and the database: no server to start."""
    done = run_cli("admin", "user", "disable", "nobody", "--url", migrated_url)
    assert done.returncode != 0
    assert "no user named 'nobody'" in done.stdout + done.stderr and "Traceback" not in done.stderr
