"""Every route with a row id of the index in its URL (submissions, quarantine entries, cohorts):
an id no row can have is a 422 naming the parameter, a valid unknown one a 404; both backends.

``/quarantine/18446744073709551616/release`` reached the database: SQLite's "Python int too large
to convert to SQLite INTEGER" as a 400, PostgreSQL's own words. The routes now share one
annotated type (:data:`radcommons.server.routes.params.RowId`).
"""

from __future__ import annotations

from commons_fixtures import Commons

from radcommons.server.routes.params import ROW_ID_MAX

DIGEST = "0" * 64
#: (user, method, path with {id}, body, the parameter's name in the error).
ROUTES = [
    ("uploader", "GET", "/submissions/{id}", None, "path.submission_id"),
    ("uploader", "PUT", "/submissions/{id}/studies/1.2.3", {"files": []}, "path.submission_id"),
    ("uploader", "POST", "/submissions/{id}/clinical/case", [], "path.submission_id"),
    ("uploader", "POST", "/submissions/{id}/commit", None, "path.submission_id"),
    ("uploader", "GET", "/submissions/{id}/receipt", None, "path.submission_id"),
    ("uploader", "POST", "/submissions/{id}/files/states", {"sha256": [DIGEST]}, "path.submission_id"),
    ("uploader", "PUT", f"/submissions/{{id}}/files/{DIGEST}", None, "path.submission_id"),
    ("uploader", "PATCH", f"/submissions/{{id}}/files/{DIGEST}", None, "path.submission_id"),
    ("uploader", "POST", "/submissions/{id}/files/batch", None, "path.submission_id"),
    ("curator", "POST", "/quarantine/{id}/release", None, "path.quarantine_id"),
    ("curator", "DELETE", "/quarantine/{id}", None, "path.quarantine_id"),
    ("reader", "GET", "/cohorts/{id}", None, "path.key"),
    ("reader", "POST", "/cohorts/{id}/freeze", None, "path.key"),
    ("reader", "GET", "/cohorts/{id}/members", None, "path.key"),
    ("reader", "GET", "/cohorts/{id}/manifest", None, "path.key"),
]


def test_an_id_no_row_can_have_is_a_422_naming_it_and_an_unknown_one_a_404(commons: Commons) -> None:
    with commons.http("reader") as http:
        assert http.post("/dua/accept").status_code == 200
    for user in ("uploader", "curator", "reader"):
        with commons.http(user) as http:
            for _, method, path, body, field in (r for r in ROUTES if r[0] == user):
                for number in (2**64, 0, -1):
                    answer = http.request(method, path.format(id=number), json=body)
                    assert answer.status_code == 422, (method, path, number, answer.text)
                    error = answer.json()["error"]
                    assert error["code"] == "validation_error", error
                    assert [f["field"] for f in error["fields"]] == [field], error
                    assert "SQLite" not in answer.text and "out of range" not in answer.text
                unknown = http.request(method, path.format(id=987654321), json=body)
                assert unknown.status_code == 404, (method, path, unknown.text)
                assert unknown.json()["error"]["code"] == "not_found", unknown.text
    with commons.http("uploader") as http:
        assert http.head(f"/submissions/{2**64}/files/{DIGEST}").status_code == 422
        assert http.head(f"/submissions/{ROW_ID_MAX}/files/{DIGEST}").status_code == 404


def test_an_export_of_a_cohort_number_no_row_can_have_is_a_422_naming_the_field(commons: Commons) -> None:
    with commons.http("reader") as http:
        assert http.post("/dua/accept").status_code == 200
        for key in (str(2**64), "0", "-1"):
            answer = http.post("/exports", json={"cohort": key, "format": "dicom"})
            assert answer.status_code == 422, (key, answer.text)
            assert [f["field"] for f in answer.json()["error"]["fields"]] == ["body.cohort"], answer.text
        unknown = http.post("/exports", json={"cohort": "987654321", "format": "dicom"})
        assert unknown.status_code == 404, unknown.text
