"""The research query engine: one JSON filter language for every node type of the index.

Store layer, no HTTP (the research API routes sit on top of it)::

    >>> from radcommons.store.query import query, count, facets, export, freeze   # doctest: +SKIP
    >>> covid_ct = {"and": [{">=": {"age_at_index": 50}}, {"=": {"series.manufacturer": "SIEMENS"}}]}
    >>> count(engine, "case", covid_ct, projects=["open-a"])
    >>> facets(engine, "series", None, ["modality", "case.sex", "case.age_at_index"],
    ...        bins={"case.age_at_index": [0, 18, 30, 40, 50, 65, 75, 85, 90]}, min_count=10)
    >>> page = query(engine, "case", covid_ct, sort=[("age_at_index", "desc")], limit=50)
    >>> b"".join(export(engine, "case", covid_ct, format="parquet"))
    >>> freeze(engine, node="case", filter=covid_ct, name="covid CT", owner="alice").identifier
    'rc-cohort-…'

Modules: ``ast`` (typed filter tree), ``parse`` (JSON -> tree, validated against the data
dictionary), ``graph`` (fields and link paths), ``compile`` (tree -> SQLAlchemy Core, with
project scoping), ``pages`` (query, count, cursors), ``facets``, ``export``, ``manifest``,
``cohorts``, ``index_parquet`` (the cohort tables themselves are part of the index schema:
:mod:`radcommons.store.index.cohort_tables`). The language is documented in
``docs/QUERY.md``.

Every function takes ``projects``: the project ids the caller may read (None: all). It is
applied to every table a query touches, including inside linked filters.
"""

from __future__ import annotations

from radcommons.store.query.ast import Expr
from radcommons.store.query.cohorts import (
    Cohort,
    Member,
    PinnedFile,
    freeze,
    get_cohort,
    list_cohorts,
    members,
    pinned_files,
    pinning_project,
    save_query,
    verify,
)
from radcommons.store.query.compile import Compiler
from radcommons.store.query.export import FORMATS, MEDIA_TYPES, export
from radcommons.store.query.facets import AGE_BINS, Bucket, facets, suppressed_count
from radcommons.store.query.index_parquet import export_index_parquet
from radcommons.store.query.manifest import MANIFEST_COLUMNS, export_manifest, manifest_rows, write_manifest
from radcommons.store.query.pages import DEFAULT_LIMIT, MAX_LIMIT, Page, count, iter_rows, query
from radcommons.store.query.parse import parse_filter
from radcommons.store.index.cohort_tables import COHORT_TABLES, add_cohort_tables

__all__ = [
    "AGE_BINS",
    "COHORT_TABLES",
    "DEFAULT_LIMIT",
    "FORMATS",
    "MANIFEST_COLUMNS",
    "MAX_LIMIT",
    "MEDIA_TYPES",
    "Bucket",
    "Cohort",
    "Compiler",
    "Expr",
    "Member",
    "Page",
    "PinnedFile",
    "add_cohort_tables",
    "count",
    "export",
    "export_index_parquet",
    "export_manifest",
    "facets",
    "freeze",
    "get_cohort",
    "iter_rows",
    "list_cohorts",
    "manifest_rows",
    "members",
    "parse_filter",
    "pinned_files",
    "pinning_project",
    "query",
    "save_query",
    "suppressed_count",
    "verify",
    "write_manifest",
]
