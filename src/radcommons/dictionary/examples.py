"""Valid example records for every node type, derived from the dictionary itself.

Used by the test suite (a valid file per node type must pass validation) and handy
as templates: ``example_records("case", 2)`` gives two case rows a site can copy.
Values are deterministic.
"""

from __future__ import annotations

import hashlib
from typing import Any

from radcommons.dictionary.loader import load_dictionary
from radcommons.dictionary.model import NOT_REPORTED, TYPE_COLUMN, Dictionary, Property, PropertyType

_UID_ROOT = "1.2.826.0.1.3680043.10.1"  # example root; real ones come from de-identification


def example_records(node: str, count: int = 2, dictionary: Dictionary | None = None) -> list[dict[str, Any]]:
    """``count`` valid records of ``node`` as a file would hold them (JSON-ready values).

    Submitter ids are ``<node>-<n>``; each link points at ``<target>-1``.
    """
    dictionary = dictionary or load_dictionary()
    node_type = dictionary[node]
    records: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        record: dict[str, Any] = {TYPE_COLUMN: node}
        for prop in node_type.properties:
            if prop.system:
                continue
            record[prop.name] = (
                f"{node}-{number}" if prop.name == "submitter_id" else example_value(prop, number)
            )
        for link in node_type.links:
            record[link.column] = f"{link.target}-1"
        records.append(record)
    return records


def example_value(prop: Property, number: int = 1) -> Any:
    """A valid value of ``prop``; ``number`` varies it (unique properties get distinct values)."""
    if prop.type is PropertyType.ARRAY:
        return [_scalar(prop, prop.element_type, number)]
    return _scalar(prop, prop.type, number)


def format_cell(value: Any) -> str:
    """A value as written in a TSV/CSV cell: lists comma-separated, booleans true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(format_cell(v) for v in value)
    return str(value)


def _scalar(prop: Property, ptype: PropertyType, number: int) -> Any:
    if ptype is PropertyType.ENUM:
        if "No" in prop.enum:
            return "No"  # keeps age_at_index_gt89 consistent with a given age
        choices = [v for v in prop.enum if v != NOT_REPORTED] or list(prop.enum)
        return choices[(number - 1) % len(choices)]
    if ptype is PropertyType.BOOLEAN:
        return number % 2 == 0
    if ptype in (PropertyType.INTEGER, PropertyType.NUMBER):
        value: float = 40 + number if ptype is PropertyType.INTEGER else 0.5 + number
        if prop.maximum is not None:
            value = min(value, prop.maximum)
        if prop.minimum is not None:
            value = max(value, prop.minimum)
        return int(value) if ptype is PropertyType.INTEGER else float(value)
    pattern = prop.pattern or ""
    if pattern == "^[0-9]{3}$":
        return f"{(600 + number) % 1000:03d}"
    if pattern.startswith("^[0-9]+(\\.[0-9]+)*"):
        return f"{_UID_ROOT}.{_stable_number(prop.name)}.{number}"
    if pattern == "^[0-9a-f]{64}$":
        return hashlib.sha256(f"{prop.name}-{number}".encode()).hexdigest()
    text = f"{prop.name.replace('_', ' ')} {number}"
    return text[: prop.max_length] if prop.max_length else text


def _stable_number(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:6], 16)
