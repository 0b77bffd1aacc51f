"""A curator's decision with values the index cannot keep, on SQLite and PostgreSQL: refused with
the field and what to do, over HTTP (a real ``radcommons serve``) and from the command line.

Before: a NUL character was stored on SQLite (a description no study can carry) and was a 500
on PostgreSQL; a description too long once its white space is collapsed was a 400 naming no
field; a decider's name, modality or code name longer than its column was a database error
on PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from commons_fixtures import Commons, commons  # noqa: E402,F401  (the fixture)

DECISION = {"modality": "DX", "description": "XR CHEST 2 VIEWS", "code": "36643-5"}


def test_the_api_refuses_what_the_index_cannot_keep(commons: Commons) -> None:
    with commons.http("curator") as curator:
        for bad, field, words in (
            ({**DECISION, "description": "XR\x00CHEST"}, "body.description", "NUL character"),
            ({**DECISION, "note": "see\x00ticket"}, "body.note", "NUL character"),
            ({**DECISION, "code": "12345-6", "name": "XR\x00Made up"}, "body.name", "NUL character"),
            ({**DECISION, "description": "XR  " * 100}, "body.description", "299 characters long once white space"),
        ):
            answer = curator.post("/harmonization/decisions", json=bad)
            assert answer.status_code == 422, (bad, answer.text)
            error = answer.json()["error"]
            assert [f["field"] for f in error["fields"]] == [field], error
            assert words in error["fields"][0]["message"], error
        assert curator.get("/harmonization/decisions").json()["total"] == 0
        # 256 characters once collapsed are kept, however many spaces the curator typed.
        kept = curator.post("/harmonization/decisions", json={**DECISION, "description": "X  " * 128})
        assert kept.status_code == 200 and len(kept.json()["decision"]["description"]) == 255, kept.text
    with commons.http("admin") as admin:  # the audit target is cut to its column, the whole pair kept in detail
        event, = [e for e in admin.get("/admin/audit", params={"action": "harmonization.decide"}).json()]
    assert len(event["target"]) == 256 and event["detail"]["target"] == "CR/DX | " + " ".join(["X"] * 128), event


@pytest.mark.parametrize("args, words", [
    (("DX, " * 30, "XR FOO", "36643-5"), "the modality is 119 characters long; at most 64 are kept"),
    (("DX", "XR FOO", "36643-5", "--by", "x" * 200), "the decider's name is 200 characters long; at most 128"),
    (("DX", "XR FOO", "12345-6", "--name", "n" * 300), "the code's name is 300 characters long; at most 256"),
    (("DX", "XR " * 100, "36643-5"), "the study description is 299 characters long once white space is collapsed"),
])
def test_the_cli_refuses_what_the_index_cannot_keep(migrated_url: str, forked_cli: Callable[..., Any],
                                                     args: tuple[str, ...], words: str) -> None:
    result = forked_cli("harmonize", "decide", *args, "--url", migrated_url)
    assert result.returncode == 2 and words in result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "0 decision(s)" in forked_cli("harmonize", "decisions", "--url", migrated_url).stdout


def test_the_api_and_the_store_keep_the_same_longest_description(commons: Commons) -> None:
    """The route measured the description with its white space collapsed, the store its key (upper-cased,
    MIDRC's quotes stripped): 129 'ß' (258 characters upper-cased, 'SS' each) passed the route and the store
    refused them as a 400 naming no field; quotes around 256 characters passed the store (a description
    column overflow on PostgreSQL, stored on SQLite, from the command line). One check now: exactly the limit is kept, one more is a 422
    naming body.description with the store's message."""
    with commons.http("curator") as curator:
        for kept in ("X" * 256, "X " * 127 + "XX", "ß" * 128, '"' + "X" * 254 + '"'):
            answer = curator.post("/harmonization/decisions", json={**DECISION, "description": kept})
            assert answer.status_code == 200, (kept, answer.text)
            assert answer.json()["decision"]["description"] == " ".join(kept.split()), answer.text
        for refused, length, how in (
            ("X" * 257, 257, "once white space is collapsed;"),
            ("X  " * 128 + "X", 257, "once white space is collapsed;"),
            ("ß" * 129, 258, "once white space is collapsed and it is upper-cased;"),
            ('"' + "X" * 256 + '"', 258, "once white space is collapsed;"),
        ):
            answer = curator.post("/harmonization/decisions", json={**DECISION, "description": refused})
            assert answer.status_code == 422 and answer.headers["content-type"] == "application/json", answer.text
            error = answer.json()["error"]
            assert [f["field"] for f in error["fields"]] == ["body.description"], error
            assert f"the study description is {length} characters long {how} the index keeps at most 256" \
                in error["fields"][0]["message"], error
        assert curator.get("/harmonization/decisions").json()["total"] == 4


@pytest.mark.parametrize("description, words", [
    ("ß" * 129, "the study description is 258 characters long once white space is collapsed and it is upper-cased"),
    ('"' + "X" * 256 + '"', "the study description is 258 characters long once white space is collapsed"),
    ('""', "the study description is empty as MIDRC reads it"),
])
def test_the_cli_keeps_the_same_longest_description(migrated_url: str, forked_cli: Callable[..., Any],
                                                     description: str, words: str) -> None:
    result = forked_cli("harmonize", "decide", "DX", description, "36643-5", "--url", migrated_url)
    assert result.returncode == 2 and words in " ".join(result.stderr.split()), result.stdout + result.stderr
    assert "0 decision(s)" in forked_cli("harmonize", "decisions", "--url", migrated_url).stdout
