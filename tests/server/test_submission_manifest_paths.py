"""A study manifest's paths: each a plain relative path of its own, shown as it is to curators."""

from __future__ import annotations

import hashlib

import pytest
from commons_fixtures import PROJECT, Commons


def _entry(name: str, path: str) -> dict:
    return {"sha256": hashlib.sha256(name.encode()).hexdigest(), "size": 10, "path_in_package": path}


@pytest.mark.parametrize("path", [
    "a\u009b31mb.dcm",  # C1 CSI: a terminal escape in a curator's listing
    "scan\u202egpj.dcm",  # a bidirectional override: shown as "scanmcd.jpg"
    "a\u200bb.dcm",  # zero-width space: two names that look the same
    "a\u2028b.dcm",  # a line separator
    "a//b.dcm", "./a.dcm", "a/./b.dcm", "a/",
])
def test_a_path_a_curator_would_misread_is_refused(sqlite_commons: Commons, path: str) -> None:
    with sqlite_commons.http() as http:
        sid = http.post("/submissions", json={"project": PROJECT, "dataset": "PATHS-1"}).json()["id"]
        response = http.put(f"/submissions/{sid}/studies/1.2.3", json={"files": [_entry("a", path)]})
        assert response.status_code == 422, response.text
        [field] = response.json()["error"]["fields"]
        assert field["field"] == "body.files.0.path_in_package"


def test_two_files_at_one_path_are_refused_and_plain_names_pass(sqlite_commons: Commons) -> None:
    with sqlite_commons.http() as http:
        sid = http.post("/submissions", json={"project": PROJECT, "dataset": "PATHS-2"}).json()["id"]
        twice = [_entry("a", "x/1.dcm"), _entry("b", "x/2.dcm"), _entry("c", "x/1.dcm")]
        response = http.put(f"/submissions/{sid}/studies/1.2.3", json={"files": twice})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert "files.0 and files.2" in error["message"] and "'x/1.dcm'" in error["message"]
        assert error["hint"] == "give each file of the study its own path"
        plain = [_entry("a", "Thorax ap/Röntgen 1.dcm"), _entry("b", "Thorax ap/Röntgen 2.dcm")]
        response = http.put(f"/submissions/{sid}/studies/1.2.3", json={"files": plain})
        assert response.status_code == 200 and response.json()["files"] == 2
