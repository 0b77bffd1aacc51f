"""The researcher's export journey through the real interfaces when something is off: the export
status page in every state, the series that failed to convert, someone else's export or cohort,
a file link of a page gone stale, and ``radcommons download --format`` after access ended.

A real server (``radcommons serve``) over a commons of its own (the tests revoke a grant): the
research commons of tests/research (open, restricted and sequestered projects, the ``granted``
researcher reads the first two) plus two CT series in the open project that cannot be made into
NIfTI volumes: one with a multi-frame slice (the converter's own reason is shown) and one whose
slice holds too few bytes of pixel data (pydicom's words, which are not shown).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
sys.path.insert(0, str(Path(__file__).parent.parent / "research"))

from commons_fixtures import Commons  # noqa: E402
from research_support import OPEN, RESTRICTED, ResearchCommons, serving  # noqa: E402

from radcommons import Client  # noqa: E402
from radcommons.client.errors import CommonsError  # noqa: E402
from radcommons.pipelines.ingest import ingest_tree  # noqa: E402
from radcommons.server.auth import SESSION_COOKIE  # noqa: E402
from radcommons.server.exports import STATES  # noqa: E402
from radcommons.server.web.ml_export import explain  # noqa: E402
from radcommons.store.index import make_engine  # noqa: E402
from radcommons.store.objects import ObjectStore  # noqa: E402

Cli = Callable[..., subprocess.CompletedProcess[str]]
MULTIFRAME, TRUNCATED = "2.25.7700000000000000000000000001", "2.25.7700000000000000000000000002"


def _bad_series(commons: ResearchCommons, root: Path) -> None:
    """Two 3-slice CT series of the open project's patient that NIfTI conversion refuses."""
    series: dict[str, list[Path]] = {}
    for item in sorted((i for items in commons.instances.values() for i in items), key=lambda i: str(i.path)):
        header = pydicom.dcmread(item.path, stop_before_pixels=True)
        if header.Modality == "CT":
            series.setdefault(str(header.SeriesInstanceUID), []).append(item.path)
    slices = next(paths for paths in series.values() if len(paths) >= 3)[:3]
    patient = pydicom.dcmread(commons.instances[OPEN][0].path, stop_before_pixels=True)  # its case, pseudonymised
    engine = make_engine(commons.server.db_url)
    try:
        for number, uid in enumerate((MULTIFRAME, TRUNCATED), start=1):
            folder = root / "bad" / str(number)
            folder.mkdir(parents=True)
            for index, path in enumerate(slices):
                ds = pydicom.dcmread(path)
                ds.PatientID, ds.PatientName = patient.PatientID, patient.PatientName
                ds.StudyInstanceUID = f"{uid}90"  # 2.25.<integer> UIDs, as de-identification makes them
                ds.SeriesInstanceUID = uid
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{uid}{index + 1}"
                if index == 1 and uid == MULTIFRAME:
                    ds.NumberOfFrames, ds.PixelData = 2, ds.PixelData * 2
                if index == 1 and uid == TRUNCATED:
                    ds.PixelData = ds.PixelData[:100]
                ds.save_as(folder / f"{index}.dcm")
            report = ingest_tree(folder, engine=engine, store=ObjectStore(str(commons.server.store_dir)),
                                 project=OPEN, site_id="SITE_A", availability="open", dataset=f"SITE_A_bad{number}",
                                 workers=1)
            assert report.count("indexed") == 3, [o.reason for o in report.outcomes]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def served(deid_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResearchCommons]:
    root = tmp_path_factory.mktemp("export-journey")
    with serving(root, f"sqlite:///{root / 'index.db'}", deid_tree) as commons:
        _bad_series(commons, root)
        yield commons


def _api(commons: ResearchCommons, user: str) -> httpx.Client:
    return httpx.Client(base_url=commons.url + "/api/v1", headers=commons.headers(user), timeout=60)


def _browser(url: str, token: str) -> httpx.Client:
    """What the explorer's pages send: the session cookie, HTML accepted, this site's Origin."""
    return httpx.Client(base_url=url, cookies={SESSION_COOKIE: token}, timeout=60,
                        headers={"Origin": url, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})


@pytest.fixture(scope="module")
def cohort(served: ResearchCommons) -> str:
    """``granted``'s frozen cohort of every case it reads: the open project's and the restricted one's."""
    with _api(served, "granted") as http:
        made = http.post("/cohorts", json={"name": "journey", "node": "case", "freeze": True})
        assert made.status_code == 201, made.text
    return str(made.json()["identifier"])


def _finished(http: httpx.Client, export_id: str, states: tuple[str, ...] = ("queued", "running")) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while (status := http.get(f"/exports/{export_id}").json())["state"] in states and time.monotonic() < deadline:
        time.sleep(0.2)
    return status  # type: ignore[no-any-return]


def _export(commons: ResearchCommons, cohort: str, format: str, user: str = "granted") -> dict[str, Any]:
    with _api(commons, user) as http:
        for _ in range(600):  # one export of a user at a time: wait for an earlier one
            started = http.post("/exports", json={"cohort": cohort, "format": format})
            if started.status_code != 409:
                break
            time.sleep(0.2)
        assert started.status_code == 202, started.text
        return _finished(http, started.json()["id"])


def _text(page: str) -> str:
    """A page's words, as a person reads them."""
    import html

    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_the_series_that_failed_are_listed_with_their_reasons(served: ResearchCommons, cohort: str) -> None:
    """Before: the page said 'incomplete: 2 series failed (see failures and README.md)' and listed
    none; the status JSON had them as lines, one with pydicom's words ('ValueError: The number of
    bytes of pixel data is less than expected ...')."""
    status = _export(served, cohort, "nifti")
    assert status["state"] == "done", status
    failed = {f["series_uid"]: f for f in status["failed_series"]}
    assert set(failed) == {MULTIFRAME, TRUNCATED}, status["failed_series"]
    assert failed[MULTIFRAME]["reason"] == ("it cannot be made into a NIfTI volume: only single-frame, single-sample "
                                            "slices can be stacked")
    assert "cannot be decoded" in failed[TRUNCATED]["reason"]
    for reason in (*status["failures"], *(f["reason"] for f in status["failed_series"])):
        assert "Error" not in reason and "bytes of pixel data" not in reason, reason  # no exception's own text
    with _browser(served.url, served.server.tokens["granted"]) as web:
        page = web.get(f"/exports/{status['id']}")
    assert page.status_code == 200
    start = page.text.index('id="export-failed"')
    words = _text(page.text[start:page.text.index("</table>", start)])
    assert f"{MULTIFRAME} it cannot be made into a NIfTI volume: only single-frame" in words, words
    assert f"{TRUNCATED} it cannot be made into a NIfTI volume: its stored DICOM" in words, words
    text = _text(page.text)
    assert "Ready, but incomplete: 2 series could not be exported" in text
    for secret in ("ValueError", "Traceback", str(served.server.root), "file://"):
        assert secret not in page.text, secret
    # The PNG export of the same cohort converts the multi-frame slice: only the truncated one fails.
    png = _export(served, cohort, "png")
    assert [f["series_uid"] for f in png["failed_series"]] == [TRUNCATED]


def test_every_state_has_a_sentence_and_what_to_do() -> None:
    """Before: 'expired' and 'withdrawn' showed the server's bare message; no state said what to do."""
    told = set()
    for state in STATES:
        words = explain({"id": "rc-export-0123456789abcdef", "state": state, "message": "the server's words",
                         "cohort": "rc-cohort-0123456789ab", "finished_at": "2026-12-07T10:00:00+00:00",
                         "expires_at": "2026-12-14T10:00:00+00:00", "retired_at": "2026-12-08T09:30:00+00:00",
                         "lost": ["Restricted-X"]})
        assert words["what"] and words["do"] and words["cohort"] == "rc-cohort-0123456789ab", (state, words)
        told.add(words["what"])
    assert len(told) == len(STATES)  # one sentence of its own per state, not a catch-all


def test_expired_export_page_and_its_stale_links(served: ResearchCommons, cohort: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the page showed 'expired' and the server's message, and a file link of a page opened
    earlier answered the browser with JSON (a failed download with the `download` attribute)."""
    monkeypatch.setenv("RADCOMMONS_EXPORT_RETENTION_HOURS", "0.0005")  # 1.8 s
    other = Commons(tmp_path, served.server.db_url, served.server.store_dir, tokens=served.server.tokens)
    other.start()
    try:
        with httpx.Client(base_url=other.url + "/api/v1", headers=served.headers("granted"), timeout=60) as http:
            started = http.post("/exports", json={"cohort": cohort, "format": "dicom"})
            assert started.status_code == 202, started.text
            status = _finished(http, started.json()["id"], ("queued", "running", "done"))
            assert status["state"] == "expired", status
            assert status["expires_at"][:10] in status["message"] and "retention" in status["message"]
            api = http.get(f"/exports/{status['id']}/files/README.md")
            assert api.status_code == 410 and api.json()["error"]["code"] == "gone"  # API clients: 410, as before
        with _browser(other.url, served.server.tokens["granted"]) as web:
            link = web.get(f"/api/v1/exports/{status['id']}/files/README.md")
            assert link.status_code == 303 and link.headers["location"] == f"/exports/{status['id']}"
            page = web.get(f"/exports/{status['id']}")
    finally:
        other.stop()
    assert page.status_code == 200
    text = _text(page.text)
    expired = status["expires_at"][:10]
    assert f"This export expired on {expired} " in text and "Start a new export from the cohort's page." in text
    assert f'href="/cohorts/{cohort}"' in page.text and 'id="export-files"' not in page.text
    assert "every 1s" not in page.text  # over: the page stops polling


def test_withdrawn_export_page_and_the_download_after_it(served: ResearchCommons, cohort: str, run_cli: Cli,
                                                         tmp_path: Path) -> None:
    """Before: the page showed the server's message only; and after access to a project ended,
    running the same `radcommons download --format` again said '... 0 already complete' and
    exited 0, the files of that project still in DEST beside labels that no longer list them."""
    env = {"RADCOMMONS_DATABASE_URL": served.server.db_url}
    token = served.token_file("granted", tmp_path / "granted.token")
    dest = tmp_path / "dest"

    def download() -> subprocess.CompletedProcess[str]:
        return run_cli("download", str(dest), "--cohort", cohort, "--format", "dicom", "--server", served.url,
                       "--token-file", str(token))

    first = download()
    assert first.returncode == 0, first.stdout + first.stderr
    held = {p.relative_to(dest).as_posix() for p in (dest / RESTRICTED).rglob("*.dcm")}
    assert held
    with _api(served, "granted") as http:
        exports = [e for e in (served.server.root / "state" / "exports").iterdir()]
        earlier = max(exports, key=lambda folder: folder.stat().st_mtime).name
        assert http.get(f"/exports/{earlier}").json()["state"] == "done"
    revoked = run_cli("admin", "user", "grant", "granted", "--project", RESTRICTED, "--revoke", env=env)
    assert revoked.returncode == 0, revoked.stderr
    try:
        with _browser(served.url, served.server.tokens["granted"]) as web:
            page = web.get(f"/exports/{earlier}")
            link = web.get(f"/api/v1/exports/{earlier}/files/README.md")
        again = download()
        with pytest.raises(CommonsError) as withdrawn:  # before: "nothing to download yet ... wait for it"
            Client(served.url, served.server.tokens["granted"]).download_export(earlier, tmp_path / "library")
    finally:
        restored = run_cli("admin", "user", "grant", "granted", "--project", RESTRICTED, env=env)
        assert restored.returncode == 0, restored.stderr
    text = _text(page.text)
    assert "This export was withdrawn on " in text and f"you may no longer read {RESTRICTED}, so its files were " \
        "removed." in text, text
    assert "A new export holds what you may read now." in text and f'href="/cohorts/{cohort}"' in page.text
    assert link.status_code == 303
    assert withdrawn.value.code == "export_withdrawn" and "start a new export" in withdrawn.value.hint
    output = again.stdout + again.stderr
    assert again.returncode == 1, output
    assert "Traceback" not in output
    flat = re.sub(r"\s+", " ", output)
    assert f"{len(held)} files in {dest} are not in this export ({len(held)} under {RESTRICTED}/)" in flat, flat
    assert "Delete them unless you may still use them" in flat
    assert RESTRICTED not in (dest / "labels.csv").read_text()


def test_someone_elses_export_or_cohort_is_named_with_what_to_do(served: ResearchCommons, cohort: str) -> None:
    """Before: 'No export 'rc-export-...' of yours.' and 'No frozen cohort ... that you may read.'
    with nothing to do; a file link of another's export answered JSON."""
    status = _export(served, cohort, "dicom")
    with _browser(served.url, served.server.tokens["researcher"]) as web:
        page = web.get(f"/exports/{status['id']}")
        link = web.get(f"/api/v1/exports/{status['id']}/files/README.md")
        started = web.post(f"/cohorts/{cohort}/exports", data={"format": "dicom"})
    assert page.status_code == 404
    assert "an export is shown only to whoever started it" in _text(page.text)
    assert "Export for ML on a frozen cohort's page" in _text(page.text)
    assert link.status_code == 303 and link.headers["location"] == f"/exports/{status['id']}"
    assert started.status_code == 404 and "rc-export-" not in started.text
    assert "Freeze one in the explorer, then use Export for ML on its page." in _text(started.text)
    with _api(served, "researcher") as http:  # the API answers as before: 404 JSON
        assert http.get(f"/exports/{status['id']}/files/README.md").status_code == 404
    with _browser(served.url, served.server.tokens["granted"]) as web:  # the owner's link downloads the file
        mine = web.get(f"/api/v1/exports/{status['id']}/files/README.md")
    assert mine.status_code == 200 and mine.headers["content-disposition"] == 'attachment; filename="README.md"'
