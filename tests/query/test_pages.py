"""Keyset pagination: every row exactly once across pages, ties and missing values included."""

from __future__ import annotations

import base64
import json

import pytest

from radcommons.errors import UserError
from radcommons.store.query import query

from .conftest import Commons


def all_pages(commons: Commons, node: str, sort: list[tuple[str, str]], limit: int, **kwargs: object) -> list[int]:
    seen: list[int] = []
    cursor = None
    for _ in range(100):
        page = query(commons.engine, node, None, fields=["id"], sort=sort, limit=limit, cursor=cursor,  # type: ignore[arg-type]
                     **kwargs)  # type: ignore[arg-type]
        assert len(page.rows) <= limit
        seen += [row["id"] for row in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("pagination does not end")


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
@pytest.mark.parametrize("sort", [
    [],
    [("sex", "asc")],                      # ties and a missing value
    [("sex", "desc"), ("age_at_index", "asc")],
    [("age_at_index", "desc")],
    [("covid19_positive", "asc"), ("submitter_id", "desc")],
])
def test_pages_cover_every_row_once_in_order(commons: Commons, sort: list[tuple[str, str]], limit: int) -> None:
    whole = query(commons.engine, "case", None, fields=["id"], sort=sort, limit=1000)  # type: ignore[arg-type]
    paged = all_pages(commons, "case", sort, limit)
    assert paged == [row["id"] for row in whole.rows]
    assert sorted(paged) == sorted(commons.ids["case"].values())


def test_sort_orders_values_with_missing_last(commons: Commons) -> None:
    rows = query(commons.engine, "case", None, fields=["submitter_id", "age_at_index"],
                 sort=[("age_at_index", "desc")]).rows
    assert [r["age_at_index"] for r in rows] == [64, 60, 55, 50, 45, None]
    rows = query(commons.engine, "series", None, fields=["submitter_id", "case.age_at_index"],
                 sort=[("case.age_at_index", "asc")], limit=2).rows
    assert [r["case.age_at_index"] for r in rows] == [45, 50]


def test_records_added_between_pages_do_not_shift_pages(commons: Commons) -> None:
    first = query(commons.engine, "case", None, fields=["submitter_id"], sort=[("submitter_id", "asc")], limit=2)
    assert [r["submitter_id"] for r in first.rows] == ["A1", "A2"]
    commons.case("open-a", "A0", age=30, sex="Male")  # sorts before the cursor: must not appear
    second = query(commons.engine, "case", None, fields=["submitter_id"], sort=[("submitter_id", "asc")], limit=2,
                   cursor=first.next_cursor)
    assert [r["submitter_id"] for r in second.rows] == ["A3", "A4"]


def test_bad_cursors_and_arguments_are_user_errors(commons: Commons) -> None:
    page = query(commons.engine, "case", None, limit=1)
    assert page.next_cursor
    with pytest.raises(UserError, match="cursor is not valid"):
        query(commons.engine, "case", {"=": {"sex": "Male"}}, limit=1, cursor=page.next_cursor)
    with pytest.raises(UserError, match="cursor is not valid"):
        query(commons.engine, "case", None, limit=1, cursor="not-a-cursor!")
    # A cursor made by hand: its values reached SQL (a list or dict: ProgrammingError; 2**70: OverflowError).
    sort = [("age_at_index", "desc")]
    made = json.loads(base64.urlsafe_b64decode(query(commons.engine, "case", None, limit=1, sort=sort).next_cursor
                                                 + "=="))
    for key, value in (("k", [[1]]), ("k", [{"a": 1}]), ("k", [2**70]), ("id", 2**70), ("k", ["\ud800"])):
        forged = base64.urlsafe_b64encode(json.dumps({**made, key: value}).encode()).decode().rstrip("=")
        with pytest.raises(UserError, match="cursor is not valid"):
            query(commons.engine, "case", None, limit=1, sort=sort, cursor=forged)
    with pytest.raises(UserError, match="limit"):
        query(commons.engine, "case", None, limit=0)
    with pytest.raises(UserError, match="many series"):
        query(commons.engine, "case", None, fields=["series.modality"])
    with pytest.raises(UserError, match="list field"):
        query(commons.engine, "imaging_study", None, sort=[("study_modality", "asc")])


def test_default_fields_and_values(commons: Commons) -> None:
    row = query(commons.engine, "imaging_study", {"=": {"submitter_id": "B1-st1"}}).rows[0]
    assert row["study_modality"] == ["CT", "CR"] and row["project_id"] == "open-b" and "id" in row
