"""A submission id in a URL that no submission can have (beyond 64 bits, zero, negative)."""

from __future__ import annotations

from commons_fixtures import Commons

DIGEST = "0" * 64
#: Every route with a submission id: (method, path after the id, body).
ROUTES = [("GET", "", None), ("PUT", "/studies/1.2.3", {"files": []}), ("POST", "/clinical/case", []),
          ("POST", "/commit", None), ("GET", "/receipt", None), ("POST", "/files/states", {"sha256": [DIGEST]}),
          ("PUT", f"/files/{DIGEST}", None), ("PATCH", f"/files/{DIGEST}", None), ("POST", "/files/batch", None)]


def test_a_submission_id_no_submission_can_have_is_a_422_naming_the_parameter(sqlite_commons: Commons) -> None:
    """``/submissions/18446744073709551616/...`` was a 400 saying "Python int too large to convert
    to SQLite INTEGER"; the id now has a range, and a request outside it names the parameter."""
    with sqlite_commons.http() as http:
        for method, rest, body in ROUTES:
            for number in (2**64, 2**63, 0, -1):
                answer = http.request(method, f"/submissions/{number}{rest}", json=body)
                assert answer.status_code == 422, (method, rest, number, answer.text)
                error = answer.json()["error"]
                assert error["code"] == "validation_error", error
                assert [f["field"] for f in error["fields"]] == ["path.submission_id"], error
                assert "SQLite" not in answer.text
            largest = http.request(method, f"/submissions/{2**63 - 1}{rest}", json=body)
            assert largest.status_code == 404, (method, rest, largest.text)
        head = http.head(f"/submissions/{2**64}/files/{DIGEST}")
        assert head.status_code == 422
