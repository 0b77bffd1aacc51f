"""The whole index as one Parquet file, queryable with DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb

from radcommons.store.query import export_index_parquet

from .conftest import OPEN, Commons


def test_one_row_per_series_queryable_with_duckdb(commons: Commons, tmp_path: Path) -> None:
    path = tmp_path / "index.parquet"
    assert export_index_parquet(commons.engine, path, projects=OPEN, batch_size=2) == 6
    counts = duckdb.sql(f"select modality, count(*) from '{path}' group by 1 order by 1").fetchall()
    assert counts == [("CR", 2), ("CT", 4)]
    a1 = duckdb.sql(
        f"select case_submitter_id, sex, age_at_index, study_uid, days_to_study, study_modality, "
        f"days_from_study_to_nearest_pos_covid_test, series_size_bytes, manufacturer "
        f"from '{path}' where case_submitter_id = 'A1'"
    ).fetchall()
    assert len(a1) == 1
    case, sex, age, study_uid, day, modalities, nearest, size, manufacturer = a1[0]
    assert (case, sex, age, day, modalities, nearest, manufacturer) == ("A1", "Female", 55, 10, ["CT"], 4, "SIEMENS")
    assert study_uid and size > 2000
    # A2's day-2 test is sequestered: out of scope, its nearest positive is the day-20 one.
    a2 = duckdb.sql(f"select days_from_study_to_nearest_pos_covid_test from '{path}' "
                    f"where case_submitter_id = 'A2'").fetchall()[0]
    assert a2 == (20,)
    b1 = duckdb.sql(f"select days_from_study_to_nearest_neg_covid_test, study_body_part_examined "
                    f"from '{path}' where case_submitter_id = 'B1' limit 1").fetchall()[0]
    assert b1 == (1, "CHEST")


def test_empty_index_writes_an_empty_file(commons: Commons, tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    assert export_index_parquet(commons.engine, path, projects=[]) == 0
    assert duckdb.sql(f"select count(*) from '{path}'").fetchall() == [(0,)]
