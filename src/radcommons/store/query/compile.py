"""Typed filter -> SQLAlchemy Core: WHERE clauses, EXISTS subqueries, parent joins, scoping.

Rules that hold for every query this module builds:

* **Scoping**: every node table a query touches (the queried one, each table inside an
  EXISTS, each parent joined for an output column) gets ``project_id IN (:projects)`` when
  the caller passes ``projects``, so a record of a project the caller may not read can
  neither be returned nor make another record match.
* **Two-valued logic**: a comparison on a missing value is false, never NULL, so ``not``
  means "does not match" (``{"not": {"=": {"sex": "Male"}}}`` includes cases whose sex is
  missing) while ``!=`` means "is set and differs".
* Nothing is filtered in Python: links become correlated EXISTS subqueries the database
  plans with its indexes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, ColumnElement, FromClause, Table, and_, bindparam, false, func, not_, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement as _ColumnElement
from sqlalchemy.engine import Connection

from radcommons.dictionary import Dictionary, load_dictionary
from radcommons.errors import UserError
from radcommons.store.index import get_metadata, node_tables
from radcommons.store.query import graph
from radcommons.store.query.ast import (
    And,
    Compare,
    Contains,
    Exists,
    Expr,
    Hop,
    In,
    InCohort,
    IsNull,
    Not,
    Or,
    Ref,
    TrueExpr,
)

Projects = Collection[str] | None


def normalize_projects(projects: Projects) -> tuple[str, ...] | None:
    """None (every project) or a sorted tuple (stable SQL, stable cache keys)."""
    if projects is None:
        return None
    if isinstance(projects, str):
        raise TypeError("projects is a collection of project ids, not one string")
    return tuple(sorted(set(projects)))


def scope_clause(table: FromClause, node: str, projects: tuple[str, ...] | None) -> ColumnElement[bool]:
    """``project_id IN (projects)`` for a node table (programs sit above projects: not scoped)."""
    if projects is None or node == "program":
        return true()
    if not projects:
        return false()
    return table.c.project_id.in_(projects)


@dataclass
class Compiler:
    """Compiles filters for one dialect (``sqlite`` or ``postgresql``) and one caller scope."""

    dialect: str
    projects: tuple[str, ...] | None = None
    dictionary: Dictionary = field(default_factory=load_dictionary)
    #: where ``in_cohort`` identifiers are looked up as the filter compiles (a name that is no
    #: frozen cohort is refused, rather than selecting nothing)
    connection: Connection | None = None

    def __post_init__(self) -> None:
        self.tables: dict[str, Table] = node_tables(get_metadata(), self.dictionary)
        self._aliases = 0

    def alias(self, node: str) -> FromClause:
        """A fresh alias of ``node``'s table (each EXISTS level needs its own)."""
        self._aliases += 1
        return self.tables[node].alias(f"{node[:12]}_{self._aliases}")

    def where(self, node: str, expr: Expr, table: FromClause) -> ColumnElement[bool]:
        """The WHERE clause of ``expr`` for rows of ``table`` (a ``node`` table or alias), scope included."""
        return and_(scope_clause(table, node, self.projects),
                    self.expr(expr, node, table, ((node, table),)))

    def expr(self, expr: Expr, node: str, table: FromClause,
             scopes: tuple[tuple[str, FromClause], ...]) -> ColumnElement[bool]:
        if isinstance(expr, TrueExpr):
            return true()
        if isinstance(expr, And):
            return and_(*(self.expr(e, node, table, scopes) for e in expr.items))
        if isinstance(expr, Or):
            return or_(*(self.expr(e, node, table, scopes) for e in expr.items))
        if isinstance(expr, Not):
            return not_(self.expr(expr.item, node, table, scopes))
        if isinstance(expr, Compare):
            return self.compare(expr, table, scopes)
        if isinstance(expr, In):
            column = table.c[expr.field]
            if not expr.values:
                return false()
            return and_(column.is_not(None), column.in_(expr.values))
        if isinstance(expr, IsNull):
            column = table.c[expr.field]
            return column.is_not(None) if expr.negate else column.is_(None)
        if isinstance(expr, Contains):
            return self.contains(table.c[expr.field], expr.values)
        if isinstance(expr, Exists):
            return self.exists(expr, table, scopes)
        if isinstance(expr, InCohort):
            return self.in_cohort(expr.identifier, node, table)
        raise AssertionError(f"unhandled filter node {expr!r}")

    def compare(self, expr: Compare, table: FromClause,
                scopes: tuple[tuple[str, FromClause], ...]) -> ColumnElement[bool]:
        column = table.c[expr.field]
        guards: list[ColumnElement[bool]] = [column.is_not(None)]
        value: Any = expr.value
        if isinstance(value, Ref):
            other = _resolve(scopes, value)
            guards.append(other.is_not(None))
            value = other + value.offset if value.offset else other
        op = expr.op
        test = {
            "=": lambda: column == value, "!=": lambda: column != value,
            "<": lambda: column < value, "<=": lambda: column <= value,
            ">": lambda: column > value, ">=": lambda: column >= value,
        }[op]()
        return and_(*guards, test)

    def contains(self, column: _ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
        """An array (JSON) column holds every value: JSONB ``@>`` on PostgreSQL, ``json_each`` on SQLite."""
        if self.dialect == "postgresql":
            # @> uses a GIN index when one exists; the literal is a JSON array.
            return and_(column.is_not(None),
                        column.op("@>", return_type=Boolean)(bindparam(None, list(values), type_=JSONB)))
        parts = []
        for value in values:
            each = func.json_each(column).table_valued("value").alias()
            parts.append(select(1).select_from(each).where(each.c.value == value).exists())
        return and_(column.is_not(None), *parts)

    def exists(self, expr: Exists, table: FromClause,
               scopes: tuple[tuple[str, FromClause], ...]) -> ColumnElement[bool]:
        conditions, last = self.walk(expr.path, table)
        inner_scopes = (*scopes, (expr.alias or expr.node, last))
        if expr.filter is not None:
            conditions.append(self.expr(expr.filter, expr.node, last, inner_scopes))
        return select(1).where(and_(*conditions)).exists()

    def walk(self, path: Sequence[Hop], table: FromClause) -> tuple[list[ColumnElement[bool]], FromClause]:
        """Join conditions (each new table scoped) from ``table`` along ``path``; returns the last alias."""
        conditions: list[ColumnElement[bool]] = []
        previous = table
        for hop in path:
            current = self.alias(hop.target)
            if hop.up:
                conditions.append(current.c[hop.parent_column] == previous.c[hop.column])
            else:
                conditions.append(current.c[hop.column] == previous.c[hop.parent_column])
            conditions.append(scope_clause(current, hop.target, self.projects))
            previous = current
        return conditions, previous

    def in_cohort(self, identifier: str, node: str, table: FromClause) -> ColumnElement[bool]:
        metadata = get_metadata()
        cohort, member = metadata.tables["cohort"], metadata.tables["cohort_member"]
        if self.connection is not None and self.connection.execute(
                select(cohort.c.id).where(cohort.c.identifier == identifier)).first() is None:
            raise UserError(f"in_cohort: no frozen cohort {identifier!r}",
                            "frozen cohorts are named rc-cohort-...; list them with GET /api/v1/cohorts?frozen=true "
                            "(in Python: Client.cohorts(frozen=True))")
        members = (
            select(member.c.record_id)
            .join(cohort, cohort.c.id == member.c.cohort_id)
            .where(cohort.c.identifier == identifier, member.c.node == node)
        )
        return table.c.id.in_(members)


def _resolve(scopes: tuple[tuple[str, FromClause], ...], ref: Ref) -> ColumnElement[Any]:
    for alias, table in reversed(scopes):
        if alias == ref.scope:
            return table.c[ref.field]
    raise AssertionError(f"unresolved reference {ref}")  # parse_filter checked it


class ParentJoins:
    """LEFT JOINs from a node table up to its parents, for output, sort and facet columns.

    ``case.sex`` on series joins ``imaging_study`` then ``case`` once, however many of their
    columns are asked for. Each joined table is scoped in its ON clause, so a parent the
    caller may not read shows as empty values rather than leaking.
    """

    def __init__(self, compiler: Compiler, node: str, table: FromClause) -> None:
        self.compiler, self.node, self.table = compiler, node, table
        self.joined: FromClause = table
        self._by_path: dict[tuple[str, ...], FromClause] = {}

    def column(self, name: str) -> ColumnElement[Any]:
        """The column ``name`` (own) or ``node_type.name`` (a parent's), validated."""
        dictionary = self.compiler.dictionary
        if "." not in name:
            graph.field(dictionary, self.node, name)
            return self.table.c[name]
        target, _, rest = name.partition(".")
        path = graph.find_path(dictionary, self.node, target)
        if not graph.is_upward(path):
            raise UserError(
                f"{name!r}: a {self.node} has many {target} records, so {target} fields cannot be "
                f"columns of {self.node} rows",
                f"name a parent's field (e.g. case.sex on series), or filter with exists on {target}",
            )
        graph.field(dictionary, target, rest)
        previous, key = self.table, ()
        for hop in path:
            key = (*key, hop.target)
            if key not in self._by_path:
                current = self.compiler.alias(hop.target)
                on = and_(current.c[hop.parent_column] == previous.c[hop.column],
                          scope_clause(current, hop.target, self.compiler.projects))
                self.joined = self.joined.outerjoin(current, on)
                self._by_path[key] = current
            previous = self._by_path[key]
        return previous.c[rest]


def json_list(value: Any) -> list[Any]:
    """A JSON column value as a list (drivers return lists; a string is decoded)."""
    if value is None:
        return []
    if isinstance(value, str):
        return list(json.loads(value))
    return list(value)
