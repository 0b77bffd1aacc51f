"""Errors of the machine, not of radcommons (a file where a folder is needed, a number out of
range, text that is not UTF-8): a message naming the path or value and what to do, exit 2,
never "internal error ... this is a bug"."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["keygen", "afile/site.key"], "afile: File exists"),
        (["objects", "put", "afile", "--store", "afile"], "afile/tmp: Not a directory"),
        (["synth", "afile/out", "--sites", "1", "--patients", "1", "--small"], "Not a directory"),
        (["deid", "afile", "out", "--site", "S", "--key-file", "site.key", "--workers", "9" * 25],
         "Invalid value for '--workers'"),
        (["deid", "afile", "out", "--site", "S", "--key-file", "utf16.key"], "not UTF-8"),
    ],
)
def test_an_environment_error_is_a_message(run_cli, tmp_path: Path, args: list[str], expected: str) -> None:
    (tmp_path / "afile").write_text("x")
    assert run_cli("keygen", "site.key").returncode == 0
    (tmp_path / "utf16.key").write_bytes((tmp_path / "site.key").read_text().encode("utf-16"))
    result = run_cli(*args)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["admin", "token", "create", "bob", "--expires-days", "inf"], "--expires-days must be more than 0"),
        (["admin", "token", "create", "bob", "--expires-days", "nan"], "--expires-days must be more than 0"),
        (["admin", "audit", "--since", "nan"], "--since must be between 0 and 36500 days"),
        (["admin", "token", "revoke", "9" * 30], "no token with id 9999"),  # PostgreSQL: "bigint out of range"
        # Names with line breaks forged rows of the token list and the audit log; 300 characters were a
        # DataError on PostgreSQL.
        (["admin", "user", "add", "new\nline", "--role", "researcher"], "cannot name a user"),
        (["admin", "user", "add", "<script>alert(1)</script>", "--role", "researcher"], "cannot name a user"),
        (["admin", "user", "add", "x" * 300, "--role", "researcher"], "cannot name a user"),
        (["gateway", "--ae-title", "RC\\GW", "--site", "S", "--project", "P", "--key-file", "site.key", "--server",
          "http://127.0.0.1:9", "--token-file", "t"], "invalid AE title 'RC\\\\GW'"),  # pynetdicom's ValueError: "a bug"
        (["serve", "--log-level", "loud"], "unknown --log-level 'loud'"),
        (["synth", "out", "--seed", "-1", "--small"], "Invalid value for '--seed'"),
        (["export", "out", "--query", "deep.json", "--as-admin"], "JSON nested too deeply"),
        (["export", "out", "--query", "q.json", "--as-admin", "--split", "train=nan"], "bad split 'train=nan'"),
        (["export", "out", "--query", "q.json", "--as-admin", "--format", "png", "--size", "999999999"],
         "Input should be less than or equal to 16384"),
        (["export", "out", "--query", "q.json", "--as-admin", "--size", "64"], "--bits and --size are PNG options"),
        (["export", "", "--query", "q.json", "--as-admin"], "DEST is empty or the current folder"),
        (["ingest", "x", "--project", "P", "--workers", "-5"], "Invalid value for '--workers'"),
        (["dictionary", "docs", "/dev/full"], "/dev/full: No space left on device"),  # no path, a generic hint
        (["deid", "a", "b", "--site", "S", "--key-file", "k", "--workers", "100000"], "Invalid value for '--workers'"),
        (["download", "d", "--cohort", "rc-cohort-0123456789ab", "--split", "train=1", "--server",
          "http://127.0.0.1:9", "--token-file", "t"], "--split only apply to an export: add --format"),
        (["download", "d", "--cohort", "mycohort", "--server", "http://127.0.0.1:9", "--token-file", "t"],
         "--cohort 'mycohort' is not a cohort identifier"),  # "no manifest file at mycohort"
    ],
)
def test_a_value_out_of_range_is_a_message(run_cli, tmp_path: Path, args: list[str], expected: str) -> None:
    """inf, nan and huge numbers reached datetime and SQLite: OverflowError, "internal error"."""
    env = {"RADCOMMONS_DATABASE_URL": f"sqlite:///{tmp_path / 'index.db'}"}
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "q.json").write_text('{"node": "series", "filter": {}}')
    (tmp_path / "t").write_text("rc_token\n")
    assert run_cli("db", "upgrade", env=env).returncode == 0
    assert run_cli("admin", "user", "add", "bob", "--role", "admin", env=env).returncode == 0
    result = run_cli(*args, env=env)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["admin", "user", "add", "carol", "--role", "contributor", "--project", "../x y"], "cannot name a project"),
        (["admin", "user", "add", "dave", "--role", "contributor", "--project", "P1", "--site", "../x"],
         "invalid site identifier"),
        (["admin", "project", "add", "x" * 500], "cannot name a project"),
    ],
)
def test_names_that_cannot_be_identifiers_are_refused(run_cli, tmp_path: Path, args: list[str], expected: str) -> None:
    env = {"RADCOMMONS_DATABASE_URL": f"sqlite:///{tmp_path / 'index.db'}"}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    result = run_cli(*args, env=env)
    assert result.returncode == 2 and expected in " ".join(result.stderr.split()), result.stderr


def test_serve_on_a_port_in_use_or_a_foreign_host_says_what_to_do(run_cli, tmp_path: Path) -> None:
    """uvicorn logged its own error line and exited 3, naming neither the port nor what to do."""
    env = {"RADCOMMONS_DATABASE_URL": f"sqlite:///{tmp_path / 'index.db'}"}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run_cli("serve", "--port", port, env=env)
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}: Address already in use" in busy.stderr
    assert "choose another --port" in busy.stderr
    foreign = run_cli("serve", "--host", "999.1.1.1", "--port", port, env=env)
    assert foreign.returncode == 2 and "is not an address or a name of this machine" in foreign.stderr
