"""Exports round-trip: what CSV, TSV, JSON and Parquet files hold equals what query returns."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radcommons.errors import UserError
from radcommons.store.query import MANIFEST_COLUMNS, export, export_manifest, query

from .conftest import OPEN, Commons

FIELDS = ["id", "submitter_id", "project_id", "study_modality", "days_to_study", "study_year_shifted",
          "case.sex", "case.age_at_index"]


def expected(commons: Commons) -> list[dict[str, Any]]:
    return query(commons.engine, "imaging_study", None, fields=FIELDS, limit=1000, projects=OPEN).rows


def _from_text(value: str, like: Any) -> Any:
    if value == "":
        return None
    if isinstance(like, list):
        return json.loads(value)
    if isinstance(like, bool):
        return value == "true"
    if isinstance(like, int):
        return int(value)
    return value


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_delimited_round_trip(commons: Commons, fmt: str) -> None:
    rows = expected(commons)
    data = b"".join(export(commons.engine, "imaging_study", None, format=fmt, fields=FIELDS, projects=OPEN,  # type: ignore[arg-type]
                           chunk_size=2))
    reader = csv.DictReader(io.StringIO(data.decode()), delimiter="," if fmt == "csv" else "\t")
    assert reader.fieldnames == FIELDS
    back = list(reader)
    assert len(back) == len(rows) == 5
    for got, want in zip(back, rows):
        assert {k: _from_text(got[k], want[k]) for k in FIELDS} == want


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_json_round_trip(commons: Commons, fmt: str) -> None:
    data = b"".join(export(commons.engine, "imaging_study", None, format=fmt, fields=FIELDS, projects=OPEN,  # type: ignore[arg-type]
                           chunk_size=2))
    back = [json.loads(line) for line in data.splitlines()] if fmt == "jsonl" else json.loads(data)
    assert back == expected(commons)


def test_parquet_round_trip_and_streams_in_chunks(commons: Commons) -> None:
    chunks = list(export(commons.engine, "imaging_study", None, format="parquet", fields=FIELDS, projects=OPEN,
                         chunk_size=2))
    assert len(chunks) >= 3  # a row group per batch, handed out as it is written
    table = pq.read_table(io.BytesIO(b"".join(chunks)))
    assert table.column_names == FIELDS
    assert table.schema.field("study_modality").type.value_type == pa.string()
    assert table.to_pylist() == expected(commons)


def test_empty_results_still_have_headers(commons: Commons) -> None:
    nothing = {"=": {"submitter_id": "none"}}
    assert b"".join(export(commons.engine, "case", nothing, format="csv", fields=["submitter_id"])) == b"submitter_id\n"
    assert json.loads(b"".join(export(commons.engine, "case", nothing, format="json"))) == []
    assert pq.read_table(io.BytesIO(b"".join(export(commons.engine, "case", nothing, format="parquet")))).num_rows == 0
    with pytest.raises(UserError, match="unknown export format"):
        export(commons.engine, "case", None, format="xlsx")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_manifest_lists_every_instance_once(commons: Commons, fmt: str) -> None:
    data = b"".join(export_manifest(commons.engine, "case", {"in": {"submitter_id": ["A1", "B1"]}}, format=fmt))  # type: ignore[arg-type]
    if fmt == "csv":
        rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(data.decode())))
    elif fmt == "json":
        rows = json.loads(data)
    else:
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
    assert [list(r) for r in rows[:1]] == [list(MANIFEST_COLUMNS)]
    assert sorted(r["case_submitter_id"] for r in rows) == ["A1", "A1", "B1", "B1"]
    assert len({r["object_id"] for r in rows}) == 4 and all(len(r["object_id"]) == 64 for r in rows)
    a1 = [r for r in rows if r["case_submitter_id"] == "A1"]
    assert len({r["series_uid"] for r in a1}) == 1 and len({r["study_uid"] for r in a1}) == 1
    assert all(int(r["size"]) > 1000 for r in rows)


def test_manifest_of_series_and_of_instances(commons: Commons) -> None:
    by_series = b"".join(export_manifest(commons.engine, "series", {"=": {"manufacturer": "Agfa"}}, format="jsonl"))
    assert [json.loads(line)["case_submitter_id"] for line in by_series.splitlines()] == ["B1"]
    with pytest.raises(UserError, match="manifest"):
        export_manifest(commons.engine, "measurement", None)
