"""Small-cell suppression cannot be undone by subtracting a filtered count from the unfiltered one.

One open project holds the whole de-identified site (30 instances, all CHEST: 17 CT, 7 CR,
4 DX and 2 US; 15 series: 3 CT, 7 CR, 4 DX, 1 US). Without a filter the series facet says
CHEST 15 and hides US; before complementary suppression the filter ``not modality = US`` said
CHEST 14, so US = 1 (docs/API.md, "Small cells").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from commons_fixtures import SITE, Commons, make_commons

from radcommons.pipelines.ingest import ingest_tree
from radcommons.store.index import make_engine
from radcommons.store.objects import ObjectStore

PROJECT = "Open-D"
NOT_US = {"not": {"=": {"modality": "US"}}}


@pytest.fixture(scope="module")
def open_commons(deid_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Commons]:
    root = tmp_path_factory.mktemp("open-commons")
    server = make_commons(root, f"sqlite:///{root / 'index.db'}")
    engine = make_engine(server.db_url)
    try:
        report = ingest_tree(deid_tree, engine=engine, store=ObjectStore(str(server.store_dir)), project=PROJECT,
                             site_id=SITE, availability="open", dataset=f"{SITE}_open", workers=1)
        assert report.count("indexed") == 30
    finally:
        engine.dispose()
    try:
        yield server
    finally:
        server.stop()


def _facet(http: httpx.Client, node: str, field: str, filter: dict | None = None) -> dict:
    answer = http.post(f"/facets/{node}", json={"fields": [field], "filter": filter})
    assert answer.status_code == 200, answer.text
    return {b["value"]: b["count"] for b in answer.json()["facets"][field]}


def test_a_filtered_count_cannot_be_subtracted_from_the_unfiltered_one(open_commons: Commons) -> None:
    with open_commons.http(None) as anonymous:
        assert _facet(anonymous, "series", "body_part_examined") == {"CHEST": 15}
        assert _facet(anonymous, "series", "modality")["US"] is None
        # 15 - 14 = 1 US series: the filtered cell is hidden (it was 14); a suppressed cell of a
        # field whose values are not public (not an enumeration) is left out.
        assert _facet(anonymous, "series", "body_part_examined", NOT_US).get("CHEST") is None
        # The same through a parent's field and another node: 30 - 28 instances.
        assert _facet(anonymous, "instance", "series.body_part_examined",
                      {"not": {"=": {"series.modality": "US"}}}).get("CHEST") is None
        # A filter that leaves out 10 or more records of a cell still shows it: 17 CT instances of 30.
        assert _facet(anonymous, "instance", "series.body_part_examined",
                      {"=": {"series.modality": "CT"}}) == {"CHEST": 17}
    with open_commons.http("admin") as admin:  # nothing is suppressed for those who may read the rows
        assert _facet(admin, "series", "body_part_examined", NOT_US) == {"CHEST": 14}


def test_explorer_totals_and_facets_under_a_selection(open_commons: Commons) -> None:
    """The explorer's totals obey the same rule: CR, CT and DX selected leave 28 of 30 files, 14 of 15 series."""
    with httpx.Client(base_url=open_commons.url) as web:
        plain = web.get("/?tab=files").text
        chosen = web.get("/?series.modality=CR&series.modality=CT&series.modality=DX&tab=files").text
        ct = web.get("/?series.modality=CT&tab=files").text
    assert re.search(r'id="total-files">30<', plain) and re.search(r'id="total-series">15<', plain)
    assert re.search(r'id="total-files">&lt;10<', chosen), chosen[:3000]
    assert re.search(r'id="total-series">&lt;10<', chosen)
    assert re.search(r'id="total-files">17<', ct)  # 13 left out: shown


def test_top_cuts_the_list_after_suppression(open_commons: Commons) -> None:
    """25 of the 30 instances are of a woman, 5 of a man: Male is hidden and Female with it, so that
    Male is not 30 - Female. With ``top`` 1 the list was cut first, Male was not in it, and Female
    25 was shown: with the 30 of /summary, Male = 5."""
    with open_commons.http(None) as anonymous:
        assert anonymous.get("/summary").json()["instances"] == 30
        assert _facet(anonymous, "instance", "case.sex") == {"Female": None, "Male": None}
        answer = anonymous.post("/facets/instance", json={"fields": ["case.sex"], "top": 1})
        assert answer.status_code == 200, answer.text
        assert answer.json()["facets"]["case.sex"] == [{"value": "Female", "count": None}]
    with open_commons.http("admin") as admin:  # unsuppressed: top is the N largest
        answer = admin.post("/facets/instance", json={"fields": ["case.sex"], "top": 1})
        assert answer.json()["facets"]["case.sex"] == [{"value": "Female", "count": 25}]


def test_dashboard_months_hide_a_second_month_beside_a_lone_small_one() -> None:
    """The dashboard's submissions-per-month bars follow the facets' rule: a single small month would
    be told by the total of the others, so the next smallest month is hidden beside it."""
    from datetime import datetime

    from radcommons.server.web.dashboard import month_counts

    times = ([datetime(2026, 10, 2)] * 25) + ([datetime(2026, 11, 3)] * 12) + ([datetime(2026, 12, 1)] * 3)
    assert month_counts(times, 10) == [("2026-10", 25), ("2026-11", None), ("2026-12", None)]
    assert month_counts(times, None) == [("2026-10", 25), ("2026-11", 12), ("2026-12", 3)]
