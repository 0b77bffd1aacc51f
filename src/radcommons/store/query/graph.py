"""What a query may name: the node types, their fields, and the paths between them.

Everything comes from the data dictionary, so a new property or node type is queryable as
soon as the dictionary (and its migration) has it. Paths follow the dictionary's links
(``series -> imaging_study -> case``); ``project`` is reached from any node by its
``project_id`` column, never used as a stepping stone (every node has one, so going
through it would relate unrelated records).
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from radcommons.dictionary import Dictionary, Property, PropertyType
from radcommons.errors import UserError
from radcommons.store.query.ast import Hop

#: Columns every node table has that a query may name, with their value types.
SYSTEM_FIELDS: dict[str, PropertyType] = {
    "id": PropertyType.INTEGER,
    "submitter_id": PropertyType.STRING,
    "project_id": PropertyType.STRING,
}


@dataclass(frozen=True)
class FieldInfo:
    """A queryable column: its name, value type, and element type for arrays."""

    name: str
    type: PropertyType
    element: PropertyType
    enum: tuple[str, ...] = ()

    @property
    def is_array(self) -> bool:
        return self.type is PropertyType.ARRAY

    @property
    def is_numeric(self) -> bool:
        return self.element in (PropertyType.INTEGER, PropertyType.NUMBER)


def _info(prop: Property) -> FieldInfo:
    return FieldInfo(prop.name, prop.type, prop.element_type, prop.enum)


def require_node(dictionary: Dictionary, node: str) -> None:
    """Raise a :class:`UserError` unless ``node`` is a node type of the dictionary."""
    if node not in dictionary:
        raise UserError(
            f"unknown node type {node!r}" + close_matches(node, dictionary.node_names),
            "valid node types: " + ", ".join(dictionary.node_names),
        )


def fields(dictionary: Dictionary, node: str) -> dict[str, FieldInfo]:
    """Every field of ``node`` a filter may name, in dictionary order after the system fields."""
    out = {name: FieldInfo(name, kind, kind) for name, kind in SYSTEM_FIELDS.items()}
    for prop in dictionary[node].properties:
        out.setdefault(prop.name, _info(prop))
    return out


def field(dictionary: Dictionary, node: str, name: str) -> FieldInfo:
    """The field ``name`` of ``node``; a :class:`UserError` listing valid fields otherwise."""
    known = fields(dictionary, node)
    if name in known:
        return known[name]
    raise UserError(
        f"{node} has no field {name!r}" + close_matches(name, known),
        f"valid fields of {node}: " + ", ".join(known),
    )


def close_matches(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` when something close exists, else ``""``."""
    found = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not found:
        return ""
    return " (did you mean " + " or ".join(repr(f) for f in found) + "?)"


def find_path(dictionary: Dictionary, source: str, target: str) -> tuple[Hop, ...]:
    """The shortest chain of links from ``source`` to ``target`` (the dictionary's links form a tree).

    Raises :class:`UserError` when ``target`` is not linked to ``source``.
    """
    require_node(dictionary, target)
    if source == target:
        raise UserError(f"a linked filter from {source} must name another node type, not {source} itself")
    if target == "project" and source != "program":
        return (_project_hop(source),)
    if target == "program" and source not in ("program", "project"):
        return (_project_hop(source), *find_path(dictionary, "project", "program"))
    edges: dict[str, list[Hop]] = {name: [] for name in dictionary.node_names}
    for node in dictionary.nodes:
        for link in node.links:
            column = f"{link.name}_id"
            edges[node.name].append(Hop(node.name, link.target, node.name, column, link.target))
            edges[link.target].append(Hop(link.target, node.name, node.name, column, link.target))
    seen = {source}
    queue: deque[tuple[str, tuple[Hop, ...]]] = deque([(source, ())])
    while queue:
        at, path = queue.popleft()
        for hop in edges[at]:
            if hop.target in seen:
                continue
            if hop.target == target:
                return (*path, hop)
            seen.add(hop.target)
            queue.append((hop.target, (*path, hop)))
    raise UserError(f"{target} is not linked to {source}", "link paths follow the data dictionary")


def _project_hop(source: str) -> Hop:
    return Hop(source, "project", source, "project_id", "project", "submitter_id")


def is_upward(path: tuple[Hop, ...]) -> bool:
    """True when every step goes to a parent: the path reaches at most one record."""
    return all(hop.up for hop in path)
