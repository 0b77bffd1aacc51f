"""The whole index as one Parquet file, one row per series (the IDC ``idc-index`` pattern).

Researchers love being able to ``duckdb.sql("select modality, count(*) from 'index.parquet'
group by 1")`` on a laptop with no server. Each row carries its series, its study and its
case (demographics, COVID status), plus derived columns:

* ``days_from_study_to_nearest_pos_covid_test`` / ``..._neg_...``: test day minus study day
  for the case's positive (negative) test closest to the study (any method), from the
  measurement records;
* ``series_size_bytes``: the sum of its instances' sizes.

Written in batches (keyset on series id) with pyarrow, so memory stays flat on a commons
of millions of series; scoped to ``projects`` like every other query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import ColumnElement, Engine, func, select
from sqlalchemy import case as case_

from radcommons.dictionary import Dictionary, load_dictionary
from radcommons.store.query.compile import Compiler, ParentJoins, Projects, normalize_projects, scope_clause
from radcommons.store.query.export import arrow_schema

#: Case properties left out of the index file (free text or too identifying for a flat download).
CASE_EXCLUDED = ("zip",)


def index_columns(dictionary: Dictionary | None = None) -> list[tuple[str, str]]:
    """(output column, series-rooted field) pairs: series, then study, then case fields."""
    dictionary = dictionary or load_dictionary()
    out: list[tuple[str, str]] = [("project_id", "project_id"), ("case_submitter_id", "case.submitter_id"),
                                  ("series_submitter_id", "submitter_id")]
    taken = {name for name, _ in out}
    for node, prefix in (("series", ""), ("imaging_study", "imaging_study."), ("case", "case.")):
        for prop in dictionary[node].properties:
            if prop.name in ("submitter_id", "project_id") or (node == "case" and prop.name in CASE_EXCLUDED):
                continue
            name = prop.name if prop.name not in taken else f"{node.replace('imaging_', '')}_{prop.name}"
            taken.add(name)
            out.append((name, prefix + prop.name))
    return out


DERIVED = [
    pa.field("days_from_study_to_nearest_pos_covid_test", pa.int64()),
    pa.field("days_from_study_to_nearest_neg_covid_test", pa.int64()),
    pa.field("series_size_bytes", pa.int64()),
]


def export_index_parquet(engine: Engine, path: str | Path, projects: Projects = None, *,
                         batch_size: int = 50_000) -> int:
    """Write one row per series of ``projects`` (None: all) to ``path``; returns the row count."""
    pairs = index_columns()
    schema = arrow_schema("series", [source for _, source in pairs], rename=[name for name, _ in pairs])
    for extra in DERIVED:
        schema = schema.append(extra)
    scope = normalize_projects(projects)
    total = 0
    last_id = 0
    with engine.connect() as connection, pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
        compiler = Compiler(connection.dialect.name, scope, connection=connection)
        series = compiler.alias("series")
        joins = ParentJoins(compiler, "series", series)
        columns = [joins.column(source).label(f"c{i}") for i, (_, source) in enumerate(pairs)]
        study = joins.column("imaging_study.id").table
        case = joins.column("case.id").table
        derived = [_nearest_test(compiler, case, study, "Positive"), _nearest_test(compiler, case, study, "Negative"),
                   _series_size(compiler, series)]
        base = select(*columns, *(d.label(f"d{i}") for i, d in enumerate(derived)), series.c.id.label("_id"))
        base = base.select_from(joins.joined).where(scope_clause(series, "series", scope))
        while True:
            rows = connection.execute(
                base.where(series.c.id > last_id).order_by(series.c.id).limit(batch_size)
            ).all()
            if not rows:
                break
            data: dict[str, list[Any]] = {f.name: [row[i] for row in rows] for i, f in enumerate(schema)}
            for name in ("days_from_study_to_nearest_pos_covid_test", "days_from_study_to_nearest_neg_covid_test"):
                data[name] = [_decode_nearest(v) for v in data[name]]
            writer.write_table(pa.Table.from_pydict(data, schema=schema))
            total += len(rows)
            last_id = rows[-1][-1]
    return total


def _nearest_test(compiler: Compiler, case: Any, study: Any, result: str) -> ColumnElement[Any]:
    """Encoded signed day difference to the closest ``result`` test: see :func:`_decode_nearest`.

    ``min(2*|delta| + (delta > 0))`` picks the smallest distance, the earlier test on a tie,
    in one aggregate: SQLite cannot ORDER BY an outer query's column inside a subquery.
    """
    measurement = compiler.alias("measurement")
    delta = measurement.c.days_to_test - study.c.days_to_study
    key = func.abs(delta) * 2 + case_((delta > 0, 1), else_=0)
    return (
        select(func.min(key))
        .where(measurement.c.case_id == case.c.id, measurement.c.test_result_text == result,
               measurement.c.days_to_test.is_not(None), study.c.days_to_study.is_not(None),
               scope_clause(measurement, "measurement", compiler.projects))
        .scalar_subquery()
    )


def _decode_nearest(key: int | None) -> int | None:
    if key is None:
        return None
    distance, later = divmod(int(key), 2)
    return distance if later else -distance


def _series_size(compiler: Compiler, series: Any) -> ColumnElement[Any]:
    instance = compiler.alias("instance")
    return (
        select(func.sum(instance.c.size))
        .where(instance.c.series_id == series.c.id, scope_clause(instance, "instance", compiler.projects))
        .scalar_subquery()
    )
