"""The typed syntax tree of a research query filter.

:func:`radcommons.store.query.parse.parse_filter` turns the JSON a researcher writes into
these frozen dataclasses, already checked against the data dictionary; the compiler
(:mod:`radcommons.store.query.compile`) turns them into SQL. Every node of the tree is
plain, hashable data, so a parsed filter can be cached, compared and printed.

A filter always reads in the context of one node type (the "current" node): field names
are that node's columns. :class:`Exists` moves the context to a linked node type along
``path``, and :class:`Ref` points back at a column of an enclosing context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias, Union

#: A literal value in a filter (what JSON can carry, minus objects and arrays).
Scalar: TypeAlias = Union[str, int, float, bool]

#: Comparison operators.
CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]
COMPARE_OPS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class Ref:
    """A column of an enclosing context, plus a constant: ``imaging_study.days_to_study + 7``.

    ``scope`` is the alias of an enclosing context (the query's node type, or the ``as``
    of an :class:`Exists`), ``field`` one of its columns.
    """

    scope: str
    field: str
    offset: int | float = 0


@dataclass(frozen=True)
class Compare:
    """``field <op> value``; ``value`` is a literal or a :class:`Ref`."""

    op: CompareOp
    field: str
    value: Scalar | Ref


@dataclass(frozen=True)
class In:
    """``field IN (values)``; an empty tuple matches nothing."""

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class IsNull:
    """``field IS NULL`` (or ``IS NOT NULL`` when ``negate``)."""

    field: str
    negate: bool = False


@dataclass(frozen=True)
class Contains:
    """An array column holds every one of ``values`` (``study_modality`` contains ``CT``)."""

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class InCohort:
    """The record is a member of the frozen cohort ``identifier`` (``rc-cohort-...``)."""

    identifier: str


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


@dataclass(frozen=True)
class Hop:
    """One step along a dictionary link (or to ``project`` by the ``project_id`` column).

    ``child.<column> = parent.<parent_column>``; ``up`` is True when the step goes from
    the child to its parent (many-to-one), False when it goes down (one-to-many).
    """

    source: str
    target: str
    child: str
    column: str
    parent: str
    parent_column: str = "id"

    @property
    def up(self) -> bool:
        return self.source == self.child


@dataclass(frozen=True)
class Exists:
    """There is a ``node`` record linked to the current one (along ``path``) matching ``filter``.

    ``alias`` names the new context for :class:`Ref` values inside ``filter``.
    """

    node: str
    path: tuple[Hop, ...]
    filter: Expr | None = None
    alias: str = ""


@dataclass(frozen=True)
class TrueExpr:
    """Matches every record (an empty filter)."""


Expr: TypeAlias = Union[Compare, In, IsNull, Contains, InCohort, And, Or, Not, Exists, TrueExpr]

#: The filter that matches everything.
MATCH_ALL = TrueExpr()
