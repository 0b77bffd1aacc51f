"""Facet counts: how many records of a query fall in each value (or bin) of each field.

Computed by the database (one GROUP BY per field), so they cost the same on 1,000 or
1,000,000 records of Python memory: nothing. A field may be the node's own
(``modality``), a parent's (``case.sex`` on series: records are still counted once each),
or a list (``study_modality``: a study with CT and CR counts in both). Numeric fields can
be binned; records without a value are counted in a missing bucket (value ``None``).

Small-cell suppression (``min_count``) is for callers who may see aggregates only: counts
from 1 to ``min_count - 1`` are reported as ``None``; when a field has exactly one such cell,
the next smallest is suppressed too, so the hidden one cannot be recovered by subtracting
the others from the total. A filtered count is also suppressed when the records the filter
leaves out of that cell (the unfiltered count minus the filtered one) number from 1 to
``min_count - 1`` (complementary suppression): otherwise "CHEST 20" without a filter and
"CHEST 19" under ``not modality = US`` would tell that one CHEST series is US, a cell the
modality facet hides. :func:`suppressed_total` is the same rule for a total. It compares each
answer with the unfiltered one only; docs/API.md ("Small cells") says what it does not prevent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Engine, FromClause, and_, case, column, func, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from radcommons.dictionary import PropertyType
from radcommons.errors import UserError
from radcommons.store.query import graph
from radcommons.store.index.facts import FACTS_NODE, counts_table, cube_columns, fact_columns, facts_table
from radcommons.store.query.ast import And, Compare, Contains, Exists, In, IsNull, Not, Or, Ref, TrueExpr
from radcommons.store.query.compile import Compiler, ParentJoins, Projects, normalize_projects, scope_clause
from radcommons.store.query.pages import Filter, _split, as_expr, count

#: Common bins for ages at index (the Census / REACT / MIDRC sequestration boundaries).
AGE_BINS = (0, 18, 30, 40, 50, 65, 75, 85, 90)


class Bucket(NamedTuple):
    """One facet value (``None``: missing) and its count (``None``: suppressed)."""

    value: Any
    count: int | None


def facets(
    engine: Engine,
    node: str,
    filter: Filter = None,
    fields: Sequence[str] = (),
    *,
    bins: Mapping[str, Sequence[float]] | None = None,
    projects: Projects = None,
    min_count: int | None = None,
    top: int | None = None,
    missing: bool = True,
    use_facts: bool = True,
) -> dict[str, list[Bucket]]:
    """Counts of ``node`` records matching ``filter``, per value of each of ``fields``.

    ``bins`` maps numeric fields to ascending edges: ``[0, 18, 30]`` gives buckets ``"0-17"``,
    ``"18-29"`` and ``"30+"`` (``"<0"`` too when values fall below the first edge); every
    bin is listed, empty ones with 0. Other fields list their values by count, largest first
    (``top`` keeps the largest N). The missing bucket comes last (``missing=False`` drops it).
    Series facets read ``series_facet_counts`` or ``series_facts`` when they can answer
    (``use_facts=False``: always the node tables, the reference the tests compare them with).
    """
    bins = dict(bins or {})
    unknown = set(bins) - set(fields)
    if unknown:
        raise UserError(f"bins given for fields not faceted: {sorted(unknown)}")
    if min_count is not None and min_count < 1:
        raise UserError("min_count must be at least 1")
    expr = as_expr(node, filter)
    if min_count is not None:
        named = sorted({name.rpartition(".")[2] for name in fields} & RECORD_IDENTIFIERS | _identifiers_in(expr))
        if named:
            raise UserError(f"{', '.join(named)} identif{'y' if len(named) > 1 else 'ies'} single records: counts by "
                            "them, or of a filter on them, are for accounts that accepted the data use agreement",
                            "log in (a token) and accept the agreement; anonymous counts are by attributes only")
    out: dict[str, list[Bucket]] = {}
    with engine.connect() as connection:
        compiler = Compiler(connection.dialect.name, normalize_projects(projects), connection=connection)
        # One GROUP BY per field: each can use its own index (an index-only scan per field was measured
        # faster on PostgreSQL than one GROUPING SETS scan for several, which cannot run in parallel).
        plans = [_plan(compiler, node, expr, name, bins.get(name), use_facts) for name in fields]
        filtered = not isinstance(expr, TrueExpr)
        for plan in plans:
            # Suppression decides on every cell; ``top`` cuts after it (a cut list once hid the
            # other small cells, so the one hidden cell was the total minus the shown ones).
            buckets = _plan_buckets(connection, compiler.dialect, plan, None if min_count else top)
            if not missing:
                buckets = [b for b in buckets if b.value is not None]
            if min_count:
                # The same field without the filter: a cell the filter takes 1 to min_count - 1
                # records from is hidden too (complementary suppression, see the module docstring).
                reference = None
                if filtered:
                    unfiltered = _plan(compiler, node, TrueExpr(), plan.name, bins.get(plan.name), use_facts)
                    reference = {b.value: b.count or 0
                                 for b in _plan_buckets(connection, compiler.dialect, unfiltered, None)}
                # The values of an enumeration (or of bins) are public; another field's value in a
                # small cell (an exact age, a description) would tell something of a few records.
                public = bool(plan.info.enum) or plan.info.element is PropertyType.BOOLEAN or plan.edges is not None
                buckets = [b for b in suppress(buckets, min_count, reference)
                           if public or b.count is not None or b.value is None]
                if top is not None and plan.edges is None:
                    buckets = _largest(buckets, top)
            out[plan.name] = buckets
    return out


def _plan_buckets(connection: Connection, dialect: str, plan: _Plan, top: int | None) -> list[Bucket]:
    """The counts of one facet plan, as buckets."""
    if plan.info.is_array:
        return _array_facet(connection, dialect, plan.source, plan.col, plan.where, top)
    return _buckets(_counts(connection, plan), plan, top)


#: Fields that identify one record or file. A caller who may see aggregates only counts neither by
#: them nor under a filter on them: a count of one pseudonym is that patient's record.
RECORD_IDENTIFIERS = frozenset({"submitter_id", "study_uid", "series_uid", "sop_instance_uid", "object_id"})


def _identifiers_in(expr: Any) -> set[str]:
    """The record identifiers a filter compares or tests, at any depth."""
    if isinstance(expr, (Compare, In, IsNull, Contains)):
        found = {expr.field} & RECORD_IDENTIFIERS
        if isinstance(expr, Compare) and isinstance(expr.value, Ref):
            found |= {expr.value.field} & RECORD_IDENTIFIERS
        return found
    if isinstance(expr, (And, Or)):
        return set().union(*(_identifiers_in(item) for item in expr.items))
    if isinstance(expr, Not):
        return _identifiers_in(expr.item)
    if isinstance(expr, Exists) and expr.filter is not None:
        return _identifiers_in(expr.filter)
    return set()


@dataclass
class _Plan:
    """Where one facet's values come from: the table (or joins), the column, the WHERE clause."""

    name: str
    source: FromClause
    col: ColumnElement[Any]
    where: ColumnElement[bool]
    info: graph.FieldInfo
    edges: list[float] | None
    weight: ColumnElement[Any] | None = None  # rows stand for ``weight`` records each (the counts table)

    def value(self) -> ColumnElement[Any]:
        """The grouped value: the column, or its bin number."""
        return self.col if self.edges is None else _bin_index(self.col, self.edges)


def _plan(compiler: Compiler, node: str, expr: Any, name: str, edges: Sequence[float] | None,
          use_facts: bool) -> _Plan:
    cube = _cube_source(compiler, node, expr, name) if use_facts else None
    facts = _facts_source(compiler, node, expr, name) if use_facts and cube is None else None
    weight = None
    if cube is not None:
        # Pre-aggregated counts (radcommons.store.index.facts): SUM(n) over tens of thousands of rows.
        source, col, where = cube
        weight = source.c.n
    elif facts is not None:
        # One narrow table, no join (radcommons.store.index.facts): same counts, kept in step at index time.
        source, col, where = facts
    else:
        table = compiler.alias(node)
        joins = ParentJoins(compiler, node, table)
        col = joins.column(name)  # validates the name (and refuses child fields)
        where = compiler.where(node, expr, table)
        # A parent's field (case.sex on series) is a LEFT JOIN per link, scoped in its ON clause:
        # records whose parent is out of scope count as missing.
        source = joins.joined
    info = graph.field(compiler.dictionary, *_split(node, name))
    if edges is not None and info.is_array:
        raise UserError(f"cannot bin the list field {name!r}")
    checked = _check_edges(info, edges) if edges is not None else None
    return _Plan(name, source, col, where, info, checked, weight)


def _counts(connection: Connection, plan: _Plan) -> dict[Any, int]:
    value = plan.value().label("value")
    counted = func.count() if plan.weight is None else func.sum(plan.weight)
    statement = select(value, counted).select_from(plan.source).where(plan.where).group_by(value)
    return {v: int(n) for v, n in connection.execute(statement).all() if n}


def _largest(buckets: list[Bucket], top: int) -> list[Bucket]:
    """The first ``top`` values of ``buckets`` (ordered largest first), and the missing bucket."""
    return [b for b in buckets if b.value is not None][:top] + [b for b in buckets if b.value is None]


def _buckets(counts: dict[Any, int], plan: _Plan, top: int | None) -> list[Bucket]:
    if plan.edges is not None:
        return _bin_buckets(counts, plan.edges, plan.info)
    values = sorted(((v, n) for v, n in counts.items() if v is not None), key=lambda vn: (-vn[1], str(vn[0])))
    buckets = [Bucket(v, n) for v, n in values]
    if counts.get(None):
        buckets.append(Bucket(None, counts[None]))
    return buckets if top is None else _largest(buckets, top)


def _cube_source(compiler: Compiler, node: str, expr: Any, name: str
                 ) -> tuple[FromClause, ColumnElement[Any], ColumnElement[bool]] | None:
    """``series_facet_counts`` with the field's column and the WHERE clause, when they can answer; else None.

    They can when the node is series, the field is one of its columns and the filter names only
    the series' own columns among them. Scoped by ``project_id`` as ``series_facts`` is (its rows
    are sums of ``series_facts`` rows of one project each).
    """
    if node != FACTS_NODE:
        return None
    columns = {fact.field: fact.name for fact in cube_columns(compiler.dictionary)}
    if name not in columns or not _only_fields(expr, {f for f in columns if "." not in f}):
        return None
    counts = counts_table()
    where = and_(scope_clause(counts, node, compiler.projects), compiler.expr(expr, node, counts, ((node, counts),)))
    return counts, counts.c[columns[name]], where


def _facts_source(compiler: Compiler, node: str, expr: Any, name: str
                  ) -> tuple[FromClause, ColumnElement[Any], ColumnElement[bool]] | None:
    """``series_facts`` with the field's column and the WHERE clause, when they can answer; else None.

    They can when the node is series, the field is a parent's facet column (``case.sex``;
    the series' own fields need no join) and the filter names only the series' own facet
    columns (no links, no references, no cohorts). Scoping is the series' ``project_id``: the table holds a
    parent's values only when the parent is in the series' project, which is what the
    scoped LEFT JOIN of the general path shows for a caller who may read the series.
    """
    if node != FACTS_NODE:
        return None
    columns = {fact.field: fact.name for fact in fact_columns(compiler.dictionary)}
    if "." not in name or name not in columns or not _only_fields(expr, {f for f in columns if "." not in f}):
        return None  # the series' own fields: the series table answers alone, with its own indexes
    facts = facts_table()
    where = and_(scope_clause(facts, node, compiler.projects), compiler.expr(expr, node, facts, ((node, facts),)))
    return facts, facts.c[columns[name]], where


def _only_fields(expr: Any, allowed: set[str]) -> bool:
    """True when ``expr`` is made of plain comparisons on ``allowed`` fields (and, or, not)."""
    if isinstance(expr, TrueExpr):
        return True
    if isinstance(expr, (And, Or)):
        return all(_only_fields(e, allowed) for e in expr.items)
    if isinstance(expr, Not):
        return _only_fields(expr.item, allowed)
    if isinstance(expr, Compare):
        return expr.field in allowed and not isinstance(expr.value, Ref)
    if isinstance(expr, (In, IsNull, Contains)):
        return expr.field in allowed
    return False  # Exists, InCohort: the general path


def _check_edges(info: graph.FieldInfo, edges: Sequence[float]) -> list[float]:
    if not info.is_numeric:
        raise UserError(f"cannot bin {info.name!r}: it is not numeric")
    out = list(edges)
    if len(out) > MAX_BIN_EDGES:
        raise UserError(f"{len(out)} bin edges for {info.name!r}: at most {MAX_BIN_EDGES}",
                        "give fewer, wider bins (e.g. [0, 18, 30, 40, 50, 65, 75, 85, 90])")
    if not out or not all(math.isfinite(edge) for edge in out) or any(b <= a for a, b in zip(out, out[1:])):
        raise UserError(f"bins of {info.name!r} must be ascending finite numbers, got {out[:20]}",
                        "e.g. [0, 18, 30, 40, 50, 65, 75, 85, 90]")
    return out


#: The most bin edges one field may have (each is a branch of the SQL CASE and a bucket).
MAX_BIN_EDGES = 200


def _bin_index(col: ColumnElement[Any], edges: Sequence[float]) -> ColumnElement[Any]:
    """Bin number: -1 below the first edge, i for [edges[i], edges[i+1]), len-1 from the last edge."""
    whens: list[tuple[Any, Any]] = [(col.is_(None), None), (col < edges[0], -1)]
    whens += [(col < high, i) for i, high in enumerate(edges[1:])]
    return case(*whens, else_=len(edges) - 1)


def _bin_buckets(counts: dict[Any, int], edges: Sequence[float], info: graph.FieldInfo) -> list[Bucket]:
    labels = bin_labels(edges, integer=info.element is PropertyType.INTEGER)
    buckets = []
    if counts.get(-1):
        buckets.append(Bucket(f"<{_num(edges[0])}", counts[-1]))
    buckets += [Bucket(label, counts.get(i, 0)) for i, label in enumerate(labels)]
    if counts.get(None):
        buckets.append(Bucket(None, counts[None]))
    return buckets


def bin_labels(edges: Sequence[float], *, integer: bool) -> list[str]:
    """``[0, 18, 30]`` -> ``["0-17", "18-29", "30+"]`` (integers) or ``["0-<18", "18-<30", "30+"]``."""
    labels = []
    for low, high in zip(edges, edges[1:]):
        if integer and float(low).is_integer() and float(high).is_integer():
            labels.append(f"{_num(low)}-{_num(high - 1)}" if high - 1 != low else _num(low))
        else:
            labels.append(f"{_num(low)}-<{_num(high)}")
    labels.append(f"{_num(edges[-1])}+")
    return labels


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _array_facet(connection: Connection, dialect: str, source: FromClause, col: ColumnElement[Any],
                 where: ColumnElement[bool], top: int | None) -> list[Bucket]:
    if dialect == "postgresql":
        elements = func.jsonb_array_elements(col).table_valued(column("value", JSONB)).lateral()
        length = func.jsonb_array_length(col)
    else:
        elements = func.json_each(col).table_valued("value")
        length = func.json_array_length(col)
    statement = (
        select(elements.c.value, func.count())
        .select_from(source.join(elements, true()))
        .where(where)
        .group_by(elements.c.value)
    )
    rows = sorted(((v, int(n)) for v, n in connection.execute(statement).all()), key=lambda vn: (-vn[1], str(vn[0])))
    buckets = [Bucket(v, n) for v, n in rows]
    empty = select(func.count()).select_from(source).where(where, or_(col.is_(None), length == 0))
    missing = int(connection.execute(empty).scalar_one())
    if missing:
        buckets.append(Bucket(None, missing))
    return buckets if top is None else _largest(buckets, top)


def suppress(buckets: list[Bucket], min_count: int, reference: Mapping[Any, int] | None = None) -> list[Bucket]:
    """Counts from 1 to ``min_count - 1`` become ``None``, plus one more if only one was hidden.

    ``reference``: the same field's counts without the filter (value -> count); a count that
    differs from its reference by 1 to ``min_count - 1`` is hidden too.
    """
    small = [i for i, b in enumerate(buckets)
             if b.count is not None and _hidden(b.count, min_count, None if reference is None else
                                               reference.get(b.value, b.count))]
    if len(small) == 1:
        others = [i for i, b in enumerate(buckets) if b.count and i not in small]
        if others:
            small.append(min(others, key=lambda i: buckets[i].count or 0))
    return [Bucket(b.value, None) if i in small else b for i, b in enumerate(buckets)]


def _hidden(value: int, min_count: int, reference: int | None) -> bool:
    """Whether ``value`` is suppressed: 1 to ``min_count - 1``, or that far below its unfiltered ``reference``."""
    if value <= 0:
        return False  # a zero is shown (nothing of a few records is told by "none")
    return value < min_count or (reference is not None and 0 < reference - value < min_count)


def suppressed_count(value: int, min_count: int | None, reference: int | None = None) -> int | None:
    """A total under the same rule: ``None`` for 1 to ``min_count - 1``, or that far below ``reference``
    (the same total without the filter)."""
    return None if min_count and _hidden(value, min_count, reference) else value


def suppressed_total(engine: Engine, node: str, filter: Filter = None, *, projects: Projects = None,
                     min_count: int | None = None) -> int | None:
    """The number of ``node`` records matching ``filter``, suppressed as :func:`facets` suppresses a cell
    (compared with the unfiltered number when there is a filter and ``min_count``)."""
    total = count(engine, node, filter, projects=projects)
    if not min_count or isinstance(as_expr(node, filter), TrueExpr):
        return suppressed_count(total, min_count)
    return suppressed_count(total, min_count, count(engine, node, None, projects=projects))
