"""The data dictionary as typed, immutable plain data.

A :class:`Dictionary` holds :class:`NodeType` objects (program, project, case,
imaging_study, ...), each with its :class:`Property` definitions and the
:class:`Link` objects that attach it to a parent node. Nothing here reads
files or touches storage: :mod:`radcommons.dictionary.loader` builds these
objects from the YAML shipped in ``radcommons/dictionary/schema``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

#: The value that stands for "unknown" in every enumeration (never blank, never "Unknown").
NOT_REPORTED = "Not Reported"

#: File column that names the node type of a row (MIDRC/Gen3 convention).
TYPE_COLUMN = "type"

#: How a link is written as a column in clinical files: ``case.submitter_id``.
LINK_COLUMN_SUFFIX = ".submitter_id"


class PropertyType(str, enum.Enum):
    """The value types a property may have."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ENUM = "enum"
    ARRAY = "array"


class Category(str, enum.Enum):
    """What part of the graph a node type belongs to (used to group the docs)."""

    ADMINISTRATIVE = "administrative"
    CLINICAL = "clinical"
    IMAGING = "imaging"


@dataclass(frozen=True)
class Property:
    """One property (column) of a node type.

    For ``array`` properties, ``items`` gives the type of each element and
    ``enum``, ``minimum``, ``maximum`` and ``pattern`` constrain the elements.
    """

    name: str
    type: PropertyType
    description: str = ""
    required: bool = False
    #: Unique across the whole index (e.g. a DICOM UID), not only within a file.
    unique: bool = False
    #: Worth an index for facet counts and cohort queries.
    facet: bool = False
    #: Worth an index for lookups, though not a facet (e.g. the object id of a file).
    indexed: bool = False
    enum: tuple[str, ...] = ()
    items: PropertyType | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    max_length: int | None = None
    #: Extra advice shown with every problem found in this property.
    hint: str = ""
    #: Set by the system, not by submitters (e.g. ``project_id`` is filled from the submission).
    system: bool = False

    @property
    def element_type(self) -> PropertyType:
        """The type of one value: ``items`` for arrays, ``type`` otherwise."""
        return self.items if self.type is PropertyType.ARRAY and self.items else self.type


@dataclass(frozen=True)
class Link:
    """A many-to-one edge from a child node to its parent (e.g. imaging_study -> case).

    In files the link is a column named ``<name>.submitter_id`` holding the
    parent's submitter_id; in the index it is a foreign key column ``<name>_id``.
    """

    name: str
    target: str
    required: bool = True
    description: str = ""

    @property
    def column(self) -> str:
        """The column that carries this link in clinical files."""
        return f"{self.name}{LINK_COLUMN_SUFFIX}"


@dataclass(frozen=True)
class NodeType:
    """A kind of record in the graph (one table in the index, one file type at submission)."""

    name: str
    title: str
    category: Category
    description: str
    properties: tuple[Property, ...]
    links: tuple[Link, ...] = ()

    def get(self, name: str) -> Property | None:
        """The property called ``name``, or None."""
        for prop in self.properties:
            if prop.name == name:
                return prop
        return None

    @property
    def property_names(self) -> tuple[str, ...]:
        return tuple(prop.name for prop in self.properties)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column a submitted file of this node type may have, in order."""
        return (TYPE_COLUMN, *self.property_names, *(link.column for link in self.links))

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns a submitted file must have."""
        props = tuple(p.name for p in self.properties if p.required and not p.system)
        return (*props, *(link.column for link in self.links if link.required))


@dataclass(frozen=True)
class Dictionary:
    """A versioned data dictionary: node types in graph order (parents before children)."""

    version: str
    title: str
    description: str
    nodes: tuple[NodeType, ...]
    conventions: tuple[str, ...] = field(default=())

    def __contains__(self, name: object) -> bool:
        return any(node.name == name for node in self.nodes)

    def __getitem__(self, name: str) -> NodeType:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.nodes)

    def children(self, name: str) -> tuple[NodeType, ...]:
        """Node types that link to ``name``."""
        return tuple(n for n in self.nodes if any(link.target == name for link in n.links))
