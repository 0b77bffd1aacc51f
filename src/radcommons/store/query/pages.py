"""Rows of a query, a page at a time (keyset pagination with opaque cursors), and counts.

Keyset, not OFFSET: page 1000 costs what page 1 costs, and a record added while someone
pages never shifts a row into a page already read or out of the next one. Rows are
ordered by the sort fields, missing values last, then by ``id`` (unique), so ties never
duplicate or skip a row. The cursor is the last row's sort key and id, base64url JSON,
with a fingerprint of the query so a cursor cannot be replayed against another one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, and_, case, false, func, or_, select
from sqlalchemy.engine import Connection

from radcommons.dictionary import Dictionary, load_dictionary
from radcommons.errors import UserError
from radcommons.store.query import graph
from radcommons.store.query.ast import Expr
from radcommons.store.query.compile import Compiler, ParentJoins, Projects, normalize_projects
from radcommons.store.query.parse import parse_filter

#: Rows per page unless the caller asks otherwise, and the most it may ask for.
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000

Direction = Literal["asc", "desc"]
Filter = Mapping[str, Any] | Expr | None


@dataclass(frozen=True)
class Page:
    """One page of rows (dicts keyed by field name) and the cursor of the next page (None: last)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None
    fields: tuple[str, ...]


def as_expr(node: str, filter: Filter, dictionary: Dictionary | None = None) -> Expr:
    """A parsed filter as is; JSON (a mapping or None) parsed and validated for ``node``."""
    if filter is None or isinstance(filter, Mapping):
        return parse_filter(node, filter, dictionary)
    return filter


def default_fields(node: str, dictionary: Dictionary | None = None) -> tuple[str, ...]:
    """``id``, ``project_id``, ``submitter_id`` and every dictionary property of ``node``."""
    dictionary = dictionary or load_dictionary()
    graph.require_node(dictionary, node)
    return tuple(graph.fields(dictionary, node))


def count(engine: Engine, node: str, filter: Filter = None, *, projects: Projects = None) -> int:
    """Number of ``node`` records matching ``filter`` in the caller's ``projects``."""
    expr = as_expr(node, filter)
    with engine.connect() as connection:
        compiler = Compiler(engine.dialect.name, normalize_projects(projects), connection=connection)
        table = compiler.alias(node)
        statement = select(func.count()).select_from(table).where(compiler.where(node, expr, table))
        return int(connection.execute(statement).scalar_one())


def query(
    engine: Engine,
    node: str,
    filter: Filter = None,
    *,
    fields: Sequence[str] | None = None,
    sort: Sequence[tuple[str, Direction]] = (),
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    projects: Projects = None,
) -> Page:
    """One page of ``node`` records matching ``filter``.

    ``fields`` may name the node's own fields and its parents' (``case.sex`` on series);
    ``sort`` is a list of ``(field, "asc" | "desc")`` (``id`` breaks ties); pass the previous
    page's ``next_cursor`` as ``cursor`` to get the next one.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise UserError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    with engine.connect() as connection:
        return _page(connection, node, as_expr(node, filter), fields, sort, limit, cursor, projects)


def iter_rows(
    engine: Engine,
    node: str,
    filter: Filter = None,
    *,
    fields: Sequence[str] | None = None,
    sort: Sequence[tuple[str, Direction]] = (),
    chunk_size: int = 5_000,
    projects: Projects = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every matching row, in batches of ``chunk_size``, in ``query``'s order (for exports).

    The first batch is read before this returns, so a bad filter or field raises here,
    before a caller starts streaming a response.
    """
    expr = as_expr(node, filter)
    size = min(chunk_size, MAX_LIMIT)
    with engine.connect() as connection:
        first = _page(connection, node, expr, fields, sort, size, None, projects)

    def batches() -> Iterator[list[dict[str, Any]]]:
        page = first
        with engine.connect() as connection:
            while True:
                if page.rows:
                    yield page.rows
                if page.next_cursor is None:
                    return
                page = _page(connection, node, expr, fields, sort, size, page.next_cursor, projects)

    return batches()


def _page(connection: Connection, node: str, expr: Expr, fields: Sequence[str] | None,
          sort: Sequence[tuple[str, Direction]], limit: int, cursor: str | None, projects: Projects) -> Page:
    compiler = Compiler(connection.dialect.name, normalize_projects(projects), connection=connection)
    names = tuple(fields) if fields else default_fields(node, compiler.dictionary)
    if len(set(names)) != len(names):
        raise UserError("a field is named twice in fields")
    table = compiler.alias(node)
    joins = ParentJoins(compiler, node, table)
    columns = [joins.column(name).label(f"c{i}") for i, name in enumerate(names)]
    keys = _sort_keys(joins, sort)
    order_by: list[ColumnElement[Any]] = []
    for column, descending in keys:
        order_by += [_null_flag(column), column.desc() if descending else column.asc()]
    order_by.append(table.c.id.asc())
    where = [compiler.where(node, expr, table)]
    fingerprint = _fingerprint(node, expr, sort)
    if cursor is not None:
        values, last_id = _decode(cursor, fingerprint, len(keys))
        where.append(_after(keys, values, table.c.id, last_id))
    key_columns = [column.label(f"k{i}") for i, (column, _) in enumerate(keys)]
    statement = (
        select(*columns, *key_columns, table.c.id.label("_id"))
        .select_from(joins.joined)
        .where(*where)
        .order_by(*order_by)
        .limit(limit + 1)
    )
    result = connection.execute(statement).all()
    more = len(result) > limit
    result = result[:limit]
    rows = [{name: row[i] for i, name in enumerate(names)} for row in result]
    next_cursor = None
    if more and result:
        last = result[-1]
        offset = len(names)
        next_cursor = _encode([last[offset + i] for i in range(len(keys))], last[-1], fingerprint)
    return Page(rows, next_cursor, names)


def _sort_keys(joins: ParentJoins, sort: Sequence[tuple[str, Direction]]) -> list[tuple[ColumnElement[Any], bool]]:
    keys: list[tuple[ColumnElement[Any], bool]] = []
    for item in sort:
        if isinstance(item, str) or len(item) != 2 or item[1] not in ("asc", "desc"):
            raise UserError(f"sort takes (field, \"asc\" | \"desc\") pairs, not {item!r}")
        name, direction = item
        if name == "id":
            if direction == "desc":
                raise UserError("sort by id is ascending only (it breaks ties)")
            continue
        column = joins.column(name)
        info = graph.field(joins.compiler.dictionary, *_split(joins.node, name))
        if info.is_array:
            raise UserError(f"cannot sort by the list field {name!r}")
        keys.append((column, direction == "desc"))
    return keys


def _split(node: str, name: str) -> tuple[str, str]:
    if "." in name:
        target, _, rest = name.partition(".")
        return target, rest
    return node, name


def _null_flag(column: ColumnElement[Any]) -> ColumnElement[int]:
    # Missing values sort last on every database (SQLite and PostgreSQL disagree by default).
    return case((column.is_(None), 1), else_=0)


def _after(keys: list[tuple[ColumnElement[Any], bool]], values: list[Any],
           id_column: ColumnElement[Any], last_id: int) -> ColumnElement[bool]:
    """Rows strictly after the cursor in (null flag, value, ...)*, id order."""
    terms: list[tuple[ColumnElement[bool], ColumnElement[bool]]] = []  # (equal, after) per key
    for (column, descending), value in zip(keys, values):
        flag = _null_flag(column)
        if value is None:
            terms.append((flag == 1, false()))
        else:
            after_value = column < value if descending else column > value
            terms.append((and_(flag == 0, column == value), or_(flag == 1, and_(flag == 0, after_value))))
    alternatives = []
    prefix: list[ColumnElement[bool]] = []
    for equal, after in terms:
        alternatives.append(and_(*prefix, after) if prefix else after)
        prefix.append(equal)
    alternatives.append(and_(*prefix, id_column > last_id) if prefix else id_column > last_id)
    return or_(*alternatives) if len(alternatives) > 1 else alternatives[0]


def _fingerprint(node: str, expr: Expr, sort: Sequence[tuple[str, Direction]]) -> str:
    text = repr((node, expr, tuple(tuple(s) for s in sort)))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _encode(values: list[Any], last_id: int, fingerprint: str) -> str:
    payload = json.dumps({"q": fingerprint, "k": values, "id": last_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode(cursor: str, fingerprint: str, n_keys: int) -> tuple[list[Any], int]:
    bad = UserError("the cursor is not valid for this query", "start again without a cursor")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (not isinstance(data, dict) or data.get("q") != fingerprint or not isinstance(data.get("k"), list)
            or len(data["k"]) != n_keys or not _is_int64(data.get("id"))
            or not all(_is_key_value(value) for value in data["k"])):
        raise bad  # a cursor is made by the server, but a client can make one too: its values are bound in SQL
    return data["k"], data["id"]


def _is_int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _is_key_value(value: Any) -> bool:
    """A sort key as the server writes one: null, a boolean, a 64-bit integer, a finite number or text."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _is_int64(value)
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
