"""The cohort page's "Export for ML" form over real HTTP (the browser journey is in test_explorer).

Against the commons of :mod:`web_fixtures` (an open and a sequestered project): who sees the
form, the messages for bad input, the status page, and that a curator's export of a cohort that
holds sequestered members carries none of them (the API's access decision, taken once).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from web_fixtures import OPEN_PROJECT, SEQUESTERED_PROJECT, WebCommons

from radcommons.server.auth import SESSION_COOKIE


def _browser(commons: WebCommons, user: str) -> httpx.Client:
    """A client that acts like the explorer in a browser: the session cookie and this site's Origin."""
    return httpx.Client(base_url=commons.url, cookies={SESSION_COOKIE: commons.tokens[user]},
                        headers={"Origin": commons.url}, timeout=60)


@pytest.fixture(scope="module")
def everything(web_commons: WebCommons) -> str:
    """A curator's frozen cohort of every case: the sequestered project's included."""
    with httpx.Client(base_url=web_commons.url + "/api/v1", timeout=60,
                      headers={"Authorization": f"Bearer {web_commons.tokens['curator']}"}) as http:
        made = http.post("/cohorts", json={"name": "every case", "node": "case", "freeze": True})
        assert made.status_code == 201, made.text
        projects = {r["project_id"] for r in http.post("/query/case", json={"fields": ["project_id"]}).json()["rows"]}
    assert projects == {OPEN_PROJECT, SEQUESTERED_PROJECT}
    return str(made.json()["identifier"])


@pytest.fixture
def curator(web_commons: WebCommons) -> Iterator[httpx.Client]:
    with _browser(web_commons, "curator") as http:
        yield http


def _start(http: httpx.Client, cohort: str, htmx: bool = True, **fields: str) -> httpx.Response:
    headers = {"HX-Request": "true"} if htmx else {}
    return http.post(f"/cohorts/{cohort}/exports", data=fields, headers=headers)


def _wait(http: httpx.Client, export_id: str) -> str:
    """The status fragment once the export is done or failed (what the page's polling ends on)."""
    for _ in range(600):
        fragment = http.get(f"/exports/{export_id}", headers={"HX-Request": "true"}).text
        if 'hx-trigger="every 1s"' not in fragment:
            return fragment
        time.sleep(0.2)
    raise AssertionError(f"export {export_id} did not finish")


def test_curator_exports_a_cohort_without_its_sequestered_members(curator: httpx.Client, everything: str) -> None:
    page = curator.get(f"/cohorts/{everything}")
    assert page.status_code == 200 and 'id="export-form"' in page.text
    started = _start(curator, everything, format="dicom", split="train=0.5,test=0.5", stratify="sex")
    assert started.status_code == 200, started.text
    assert 'hx-trigger="every 1s"' in started.text  # it polls itself while queued or running
    export_id = re.search(r"rc-export-[0-9a-f]{16}", started.text).group(0)  # type: ignore[union-attr]
    done = _wait(curator, export_id)
    assert 'id="export-state">done<' in done, done
    links = re.findall(r'href="(/api/v1/exports/[^"]+)"', done)
    assert {link.rsplit("/", 1)[-1] for link in links} >= {"README.md", "labels.csv", "labels.parquet",
                                                           "manifest.csv"}
    assert any(link.endswith(".dcm") for link in links)
    labels = curator.get(f"/api/v1/exports/{export_id}/files/labels.csv")
    assert labels.status_code == 200
    rows = list(csv.DictReader(io.StringIO(labels.text)))
    assert rows and {r["project_id"] for r in rows} == {OPEN_PROJECT}
    assert {r["split"] for r in rows} <= {"train", "test"} and {r["split"] for r in rows}
    assert SEQUESTERED_PROJECT not in curator.get(f"/api/v1/exports/{export_id}/files/manifest.csv").text
    # A curator may know the project exists: the datasheet says its members were left out.
    readme = curator.get(f"/api/v1/exports/{export_id}/files/README.md").text
    assert f"project {SEQUESTERED_PROJECT} is not readable by curator" in readme
    # Without JavaScript the same status is a whole page.
    whole = curator.get(f"/exports/{export_id}")
    assert whole.status_code == 200 and "<html" in whole.text and 'id="export-files"' in whole.text


@pytest.mark.parametrize(("fields", "message"), [
    ({"format": "png", "split": "train=lots"}, "Split: bad split &#39;train=lots&#39; (write NAME=WEIGHT pairs"),
    ({"format": "png", "split": "train=0.8,test=0.2", "stratify": "sex, shoe_size"},
     "Stratify on: cannot stratify on &#39;shoe_size&#39; (choose from"),
    ({"format": "png", "stratify": "sex"}, "Stratify on: stratify needs split"),
    ({"format": "tiff"}, "Format: Input should be &#39;dicom&#39;, &#39;nifti&#39; or &#39;png&#39;"),
    ({"format": "png", "size": "big"}, "PNG longest side: Input should be a valid integer"),
    ({"format": "png", "bits": "12"}, "PNG bits per sample: Input should be 8 or 16"),
    # str.isdigit() holds for superscripts, which int() refuses: this was a 500.
    ({"format": "png", "seed": "²"}, "Seed: Input should be a valid integer"),
    ({"format": "png", "size": "¹⁰"}, "PNG longest side: Input should be a valid integer"),
])
def test_bad_input_is_named(curator: httpx.Client, everything: str, fields: dict[str, str], message: str) -> None:
    fragment = _start(curator, everything, **fields)
    assert fragment.status_code == 200 and 'id="export-error"' in fragment.text
    assert message in fragment.text, fragment.text
    assert "Traceback" not in fragment.text and "rc-export-" not in fragment.text
    whole = _start(curator, everything, htmx=False, **fields)  # without JavaScript: the page, a 422
    assert whole.status_code == 422 and message in whole.text and "<html" in whole.text


def test_no_research_access_no_form(web_commons: WebCommons, everything: str) -> None:
    """A contributor without the data use agreement gets neither the cohort page nor the form, nor an export."""
    with _browser(web_commons, "uploader") as http:
        page = http.get(f"/cohorts/{everything}")
        assert page.status_code == 403 and "export-form" not in page.text and "Export for ML" not in page.text
        refused = _start(http, everything, format="dicom")
        assert refused.status_code == 403 and "data use agreement" in refused.text
        assert "rc-export-" not in refused.text
    with httpx.Client(base_url=web_commons.url, headers={"Origin": web_commons.url}) as anonymous:
        assert _start(anonymous, everything, format="dicom").status_code == 401


def test_an_export_is_its_owners(web_commons: WebCommons, curator: httpx.Client, everything: str) -> None:
    started = _start(curator, everything, format="dicom")
    export_id = re.search(r"rc-export-[0-9a-f]{16}", started.text).group(0)  # type: ignore[union-attr]
    _wait(curator, export_id)
    with _browser(web_commons, "admin") as admin:  # an administrator reads every export
        assert admin.get(f"/exports/{export_id}").status_code == 200
    with httpx.Client(base_url=web_commons.url) as anonymous:
        assert anonymous.get(f"/exports/{export_id}").status_code == 401
    assert curator.get("/exports/rc-export-0000000000000000").status_code == 404
    gone = curator.get("/exports/rc-export-0000000000000000", headers={"HX-Request": "true"})
    assert 'id="export-error"' in gone.text and "every 1s" not in gone.text  # the polling stops
    assert curator.get("/exports/not-an-export").status_code == 404
    # Sent from another site (no same-origin form): refused, nothing started.
    foreign = curator.post(f"/cohorts/{everything}/exports", data={"format": "dicom"},
                           headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "rc-export-" not in foreign.text
