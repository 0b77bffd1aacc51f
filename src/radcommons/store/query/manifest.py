"""File manifests: the instances (object id = sha256, size, UIDs) under a query's records.

A manifest answers "which files make up this cohort": give it a query on cases, studies,
series or instances (or ``{"in_cohort": "rc-cohort-..."}`` for a frozen cohort) and it
lists each instance once, with the case, study and series it belongs to, so a download
tool can fetch objects by digest, verify them, and skip what it already has.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine

from radcommons.dictionary import load_dictionary
from radcommons.errors import UserError
from radcommons.store.query import graph
from radcommons.store.query.ast import Exists
from radcommons.store.query.compile import Projects
from radcommons.store.query.export import Format, check_format, write
from radcommons.store.query.pages import Filter, as_expr, iter_rows

#: Manifest columns and the instance-rooted fields they come from.
MANIFEST_COLUMNS: dict[str, str] = {
    "object_id": "object_id",
    "size": "size",
    "project_id": "project_id",
    "case_submitter_id": "case.submitter_id",
    "study_uid": "imaging_study.study_uid",
    "series_uid": "series.series_uid",
    "sop_instance_uid": "sop_instance_uid",
}
MANIFEST_NODES = ("case", "imaging_study", "series", "instance")

MANIFEST_SCHEMA = pa.schema([
    ("object_id", pa.string()), ("size", pa.int64()), ("project_id", pa.string()),
    ("case_submitter_id", pa.string()), ("study_uid", pa.string()), ("series_uid", pa.string()),
    ("sop_instance_uid", pa.string()),
])


def manifest_rows(engine: Engine, node: str, filter: Filter = None, *, projects: Projects = None,
                  chunk_size: int = 5_000) -> Iterator[list[dict[str, Any]]]:
    """Batches of manifest rows (dicts keyed by :data:`MANIFEST_COLUMNS`) for ``node`` records matching ``filter``."""
    if node not in MANIFEST_NODES:
        raise UserError(f"a manifest lists the files of {', '.join(MANIFEST_NODES)} records, not {node}")
    expr = as_expr(node, filter)
    if node != "instance":
        # Instances whose ancestor of type ``node`` matches: a many-to-one EXISTS, each instance once.
        expr = Exists(node, graph.find_path(load_dictionary(), "instance", node), expr, alias=node)
    columns = list(MANIFEST_COLUMNS)
    sources = list(MANIFEST_COLUMNS.values())
    rows = iter_rows(engine, "instance", expr, fields=sources, chunk_size=chunk_size, projects=projects)
    return ([{column: row[source] for column, source in zip(columns, sources)} for row in batch] for batch in rows)


def export_manifest(engine: Engine, node: str, filter: Filter = None, *, format: Format = "csv",
                    projects: Projects = None, chunk_size: int = 5_000) -> Iterator[bytes]:
    """The manifest as CSV, TSV, JSON lines, JSON or Parquet bytes, streamed."""
    check_format(format)
    return write_manifest(manifest_rows(engine, node, filter, projects=projects, chunk_size=chunk_size), format)


def write_manifest(batches: Iterable[list[dict[str, Any]]], format: Format = "csv") -> Iterator[bytes]:
    """Batches of manifest rows (keyed by :data:`MANIFEST_COLUMNS`) as ``format`` bytes, streamed."""
    check_format(format)
    return write(batches, list(MANIFEST_COLUMNS), format, MANIFEST_SCHEMA if format == "parquet" else None)
