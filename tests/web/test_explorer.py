"""Browser journeys through the explorer: real clicks in Chromium against a running commons.

Skipped when Debian's Chromium is missing (``apt-get install chromium``), unless ``CI`` is set.
Screenshots land in ``test-artifacts/web/`` for a person to look at.
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from web_fixtures import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, OPEN_PROJECT, SEQUESTERED_PROJECT, WebCommons

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, Request, expect, sync_playwright  # noqa: E402

VIEWER_DIST = Path(__file__).resolve().parents[2] / "viewer" / "node_modules" / "@ohif" / "app" / "dist"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser: Browser) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(15_000)
    return context.new_page()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def login(page: Page, commons: WebCommons, user: str) -> None:
    page.goto(commons.url + "/login")
    page.get_by_label("API token").fill(commons.tokens[user])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def total(page: Page, tab: str) -> str:
    return page.locator(f"#total-{tab}").inner_text()


def test_anonymous_sees_suppressed_aggregates_only(browser: Browser, web_commons: WebCommons) -> None:
    page = _page(browser)
    page.goto(web_commons.url + "/")
    expect(page.locator("#total-cases")).to_have_text("<10")
    expect(page.locator(".notice")).to_contain_text("to see records")
    assert page.locator("table.records").count() == 0
    assert SEQUESTERED_PROJECT not in page.content()
    shot(page, "01-anonymous-explorer")
    # Facet clicks work without a session too; counts under a selection stay suppressed.
    page.locator('a.fv[data-facet="series.modality"]').first.click()
    expect(page.locator('a.fv.selected[data-facet="series.modality"]')).to_have_count(1)
    assert "series.modality=" in page.url
    expect(page.locator("#total-cases")).to_have_text(re.compile(r"^(<10|0)$"))
    page.goto(web_commons.url + "/dashboard")
    assert page.locator("#quarantine").count() == 0 and page.locator("#submissions").count() == 0
    # A hand-edited age in the address was a 500 (int('abc')): it is left out, and the page says so
    # (a filter dropped silently showed a larger cohort than the link promised).
    answer = page.goto(web_commons.url + "/?case.age_at_index=abc%2B&case.age_at_index=1-2-3&case.nosuch=1")
    assert answer is not None and answer.status == 200
    expect(page.locator("#total-cases")).to_have_text("<10")
    expect(page.locator("#left-out")).to_contain_text("case.age_at_index=abc+; case.age_at_index=1-2-3; case.nosuch=1")
    # A value the facet does not have was a JSON 400 in the browser: the page, saying what was wrong.
    answer = page.goto(web_commons.url + "/?case.sex=female")
    assert answer is not None and answer.status == 200 and "text/html" in answer.headers["content-type"]
    expect(page.locator("#left-out")).to_contain_text("female")
    page.context.close()


def test_researcher_filters_freezes_and_downloads(browser: Browser, web_commons: WebCommons) -> None:
    page = _page(browser)
    login(page, web_commons, "reader")
    # A researcher lands on the data use agreement and must accept it before any record shows.
    expect(page.get_by_role("heading", name=re.compile("Data use agreement"))).to_be_visible()
    page.get_by_label("I have read and accept the agreement").check()
    page.get_by_role("button", name="Accept").click()
    expect(page.locator("table.records")).to_be_visible()
    before = int(total(page, "studies"))
    assert SEQUESTERED_PROJECT not in page.content()  # neither records nor a facet value, nor a count
    shot(page, "02-researcher-explorer")
    # Filter by clicking facet values: the counts change (htmx swap, URL updated).
    page.locator('a.fv[data-facet="series.modality"]').first.click()
    expect(page.locator('a.fv.selected[data-facet="series.modality"]')).to_have_count(1)
    page.locator('a.fv[data-facet="case.sex"]').first.click()
    expect(page.locator('a.fv.selected[data-facet="case.sex"]')).to_have_count(1)
    after = int(total(page, "studies"))
    assert 0 < after < before
    assert "series.modality=" in page.url and "case.sex=" in page.url
    shot(page, "03-researcher-filtered")
    # The same URL, opened fresh, shows the same cohort (shareable query).
    page.goto(page.url)
    assert int(total(page, "studies")) == after
    # Download the table of the studies tab.
    page.get_by_role("link", name="Studies", exact=True).click()
    expect(page.locator('.tabs a[aria-current="page"]')).to_have_text("Studies")
    with page.expect_download() as download:
        page.get_by_role("link", name="this table (CSV)").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0].startswith("id,") and len(text.splitlines()) == after + 1
    # Freeze the cohort and download its table from the cohort page.
    page.get_by_label("Cohort name").fill("web test cohort")
    page.get_by_role("button", name="Freeze cohort").click()
    expect(page.locator("#cohort-id")).to_have_text(re.compile(r"rc-cohort-[0-9a-f]{12}"))
    shot(page, "04-frozen-cohort")
    with page.expect_download() as download:
        page.locator("#download-table").click()
    assert len(Path(download.value.path()).read_text().splitlines()) == after + 1
    # The explorer's file manifest link (it was a 404: /export/{tab}.csv took "manifest" as a table).
    page.goto(web_commons.url + "/")
    with page.expect_download() as download:
        page.get_by_role("link", name="file manifest (CSV)").click()
    assert "object_id" in Path(download.value.path()).read_text().splitlines()[0]
    # Open a study: thumbnails are rendered.
    page.goto(web_commons.url + "/?tab=studies")
    page.locator("table.records a.uid").first.click()
    thumbs = page.locator(".thumb img")
    expect(thumbs.first).to_be_visible()
    page.wait_for_function("Array.from(document.querySelectorAll('.thumb img')).every(i => i.complete)")
    assert all(w > 0 for w in thumbs.evaluate_all("els => els.map(e => e.naturalWidth)"))
    assert page.locator("svg.timeline, .timeline-wrap p").count() == 1
    shot(page, "05-study")
    assert page.locator("#open-viewer").get_attribute("href").startswith("/viewer/viewer?StudyInstanceUIDs=")
    # The dashboard has no quarantine section for a researcher.
    page.goto(web_commons.url + "/dashboard")
    assert page.locator("#quarantine").count() == 0
    assert "Quarantine" not in page.content()
    page.context.close()


def accept_agreement_if_asked(page: Page) -> None:
    """Accept the data use agreement when the login lands on it (another test may have accepted it)."""
    if page.url.endswith("/dua"):
        page.get_by_label("I have read and accept the agreement").check()
        page.get_by_role("button", name="Accept").click()
        page.wait_for_load_state()


def test_researcher_exports_a_cohort_for_ml(browser: Browser, web_commons: WebCommons) -> None:
    page = _page(browser)
    login(page, web_commons, "reader")
    accept_agreement_if_asked(page)
    page.get_by_label("Cohort name").fill("ML export cohort")
    page.get_by_role("button", name="Freeze cohort").click()
    expect(page.locator("#cohort-id")).to_have_text(re.compile(r"rc-cohort-[0-9a-f]{12}"))
    form = page.locator("#export-form")
    expect(form).to_be_visible()
    # A bad split is named in the page, and nothing starts.
    form.get_by_label("PNG").check()
    form.get_by_label(re.compile("^Split")).fill("train=most")
    form.get_by_role("button", name="Start export").click()
    expect(page.locator("#export-error")).to_contain_text("Split: bad split 'train=most'")
    # PNG images with a patient-level split: the page follows the export until it is done.
    form.get_by_label(re.compile("^Split")).fill("train=0.8,test=0.2")
    form.get_by_label("Stratify on").fill("sex")
    form.get_by_role("button", name="Start export").click()
    expect(page.locator("#export-state")).to_have_text(re.compile("queued|running|done"))
    expect(page.locator("#export-state")).to_have_text("done", timeout=120_000)
    files = page.locator("#export-files")
    for name in ("README.md", "labels.csv", "labels.parquet"):
        expect(files.get_by_role("link", name=name, exact=True)).to_be_visible()
    if page.locator("details.images[open]").count() == 0:  # a long image list opens on demand
        page.locator("details.images summary").click()
    images = page.locator(".image-files a").all_inner_texts()
    assert images and all(p.endswith(".png") for p in images), images
    assert SEQUESTERED_PROJECT not in page.content()
    shot(page, "09-ml-export")
    with page.expect_download() as download:
        files.get_by_role("link", name="labels.csv", exact=True).click()
    assert download.value.suggested_filename == "labels.csv"
    with open(download.value.path(), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["split"] for r in rows} <= {"train", "test"} and all(r["split"] for r in rows)
    assert {r["project_id"] for r in rows} == {OPEN_PROJECT}
    assert len(rows) == len(images)  # one label row per image
    page.context.close()


def test_curator_reviews_quarantine(browser: Browser, web_commons: WebCommons) -> None:
    page = _page(browser)
    login(page, web_commons, "curator")
    page.goto(web_commons.url + "/dashboard")
    expect(page.locator("#quarantine")).to_be_visible()
    expect(page.locator("#quarantine .q").first).to_be_visible()
    shot(page, "06-curator-dashboard")
    # A curator reads the sequestered project too.
    page.goto(web_commons.url + "/")
    assert SEQUESTERED_PROJECT in page.content()
    page.context.close()


def test_contributor_sees_its_submissions(browser: Browser, web_commons: WebCommons) -> None:
    page = _page(browser)
    login(page, web_commons, "uploader")
    page.goto(web_commons.url + "/dashboard")
    expect(page.locator("#submissions")).to_contain_text("SITE_A_web")
    assert page.locator("#quarantine").count() == 0
    shot(page, "07-contributor-dashboard")
    page.context.close()


def test_logout_and_token_not_in_page(browser: Browser, web_commons: WebCommons) -> None:
    page = _page(browser)
    login(page, web_commons, "admin")
    cookie = next(c for c in page.context.cookies() if c["name"] == "rc_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert web_commons.tokens["admin"] not in page.content()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("banner").get_by_role("link", name="Log in")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "rc_session"]
    page.goto(web_commons.url + "/dictionary")
    expect(page.locator("article.dictionary")).to_contain_text("case")
    page.context.close()


def test_records_do_not_stay_in_the_browser_after_logout(browser: Browser, web_commons: WebCommons) -> None:
    """htmx kept every visited page (record tables, case pseudonyms) in sessionStorage and the pages
    were cacheable: after logging out, Back showed the researcher's records again."""
    page = _page(browser)
    login(page, web_commons, "reader")
    accept_agreement_if_asked(page)
    answer = page.goto(web_commons.url + "/")
    assert answer is not None and answer.headers.get("cache-control") == "no-store"
    page.locator('a.fv[data-facet="case.sex"]').first.click()
    expect(page).to_have_url(re.compile(r"case\.sex="))
    page.locator('a.fv[data-facet="series.modality"]').first.click()
    expect(page).to_have_url(re.compile(r"series\.modality="))
    expect(page.locator("table.records tbody tr").first).to_be_visible()
    stored = page.evaluate("() => Object.values(sessionStorage).concat(Object.values(localStorage)).join('')")
    assert "<table" not in stored and "submitter" not in stored, stored[:300]
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("banner").get_by_role("link", name="Log in")).to_be_visible()
    page.go_back()
    page.wait_for_load_state()
    expect(page.get_by_role("banner").get_by_role("link", name="Log in")).to_be_visible()
    assert "reader" not in page.locator("header").inner_text()
    assert page.locator("table.records").count() == 0
    page.context.close()


def _open_requests(page: Page) -> set[Request]:
    """The page's requests sent and not yet answered (or failed), kept up to date from now on."""
    open_requests: set[Request] = set()
    page.on("request", lambda request: open_requests.add(request))
    page.on("requestfinished", lambda request: open_requests.discard(request))
    page.on("requestfailed", lambda request: open_requests.discard(request))
    return open_requests


def _wait_until_answered(page: Page, open_requests: set[Request], quiet_s: float = 1.0) -> None:
    """Until no request has been open for ``quiet_s``: the viewer fetches without navigating, so the
    page's "networkidle" load state was reached long before and waits for nothing."""
    deadline, quiet_since = time.monotonic() + 30, time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        assert time.monotonic() < deadline, f"still open after 30 s: {[r.url for r in open_requests]}"
        page.wait_for_timeout(100)  # Playwright delivers the request events while it waits
        if open_requests:
            quiet_since = time.monotonic()


@pytest.mark.skipif(not (VIEWER_DIST / "index.html").is_file(),
                    reason="the OHIF viewer is not installed (scripts/install_viewer.sh)")
def test_viewer_opens_a_study(browser: Browser, web_commons: WebCommons) -> None:
    page = _page(browser)
    login(page, web_commons, "admin")
    page.goto(web_commons.url + "/?tab=studies")
    page.locator("table.records a.uid").first.click()
    failed: list[str] = []
    thumbnails: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and ("/viewer/" in r.url
                                                                               or "/dicomweb/" in r.url) else None)
    page.on("response", lambda r: thumbnails.append(r.headers.get("content-type", ""))
            if "/dicomweb/" in r.url and "/thumbnail" in r.url else None)
    open_requests = _open_requests(page)
    page.locator("#open-viewer").click()
    # OHIF draws the image in a canvas once it fetched metadata and pixels from /dicomweb (cookie auth).
    expect(page.locator("canvas").first).to_be_visible(timeout=30_000)
    _wait_until_answered(page, open_requests)  # every request it made, so a failed one is in `failed`
    shot(page, "08-viewer")
    assert "/viewer/viewer" in page.url and not failed, failed
    # The series panel's thumbnails come from the server's JPEG thumbnails (thumbnailRendering).
    assert thumbnails and all(t.startswith("image/jpeg") for t in thumbnails), thumbnails
    page.context.close()
