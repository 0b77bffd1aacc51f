"""Read the data dictionary from its YAML files into :mod:`radcommons.dictionary.model` objects.

The dictionary shipped with the package lives in ``radcommons/dictionary/schema``:
``_meta.yaml`` (version, conventions, node order, common properties) and one
``<node>.yaml`` per node type. The loader checks the YAML strictly (unknown keys,
bad types, links to unknown nodes) so that a typo in the dictionary fails loudly
at load time instead of silently accepting bad data later.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from radcommons.dictionary.model import (
    LINK_COLUMN_SUFFIX,
    TYPE_COLUMN,
    Category,
    Dictionary,
    Link,
    NodeType,
    Property,
    PropertyType,
)
from radcommons.errors import UserError
from radcommons.yamltext import load_yaml

#: The folder of the dictionary shipped with the package.
SCHEMA_DIR = Path(__file__).parent / "schema"
META_FILE = "_meta.yaml"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PROPERTY_KEYS = {
    "type", "description", "required", "unique", "facet", "indexed", "enum", "items", "minimum",
    "maximum", "pattern", "max_length", "hint", "system",
}
_NODE_KEYS = {"name", "title", "category", "description", "properties", "links"}
_LINK_KEYS = {"name", "target", "required", "description"}
_META_KEYS = {"version", "title", "description", "nodes", "conventions", "common_properties"}
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


def load_dictionary(schema_dir: Path | str | None = None) -> Dictionary:
    """Load the data dictionary from ``schema_dir`` (default: the one shipped with the package).

    Raises :class:`radcommons.errors.UserError` naming the file and key when the
    YAML is malformed. The packaged dictionary is loaded once and cached.
    """
    if schema_dir is None:
        return _load_packaged()
    return _load(Path(schema_dir))


@functools.lru_cache(maxsize=1)
def _load_packaged() -> Dictionary:
    return _load(SCHEMA_DIR)


def _load(schema_dir: Path) -> Dictionary:
    meta_path = schema_dir / META_FILE
    meta = _read_yaml(meta_path)
    _check_keys(meta, _META_KEYS, meta_path, "")
    version = str(_get(meta, "version", str, meta_path))
    if not _SEMVER.match(version):
        raise UserError(f"{meta_path}: version {version!r} is not MAJOR.MINOR.PATCH", "e.g. version: \"1.0.0\"")
    common = _get(meta, "common_properties", dict, meta_path, default={})
    common_props = tuple(_property(name, spec, meta_path) for name, spec in common.items())
    order = _get(meta, "nodes", list, meta_path)

    found = sorted(p.stem for p in schema_dir.glob("*.yaml") if p.name != META_FILE)
    if sorted(order) != found:
        raise UserError(
            f"{meta_path}: 'nodes' lists {sorted(order)} but the folder has {found}",
            "list every <node>.yaml file exactly once in _meta.yaml 'nodes', parents first",
        )
    nodes: list[NodeType] = []
    for name in order:
        node = _node(schema_dir / f"{name}.yaml", common_props)
        for link in node.links:
            if link.target not in [n.name for n in nodes]:
                raise UserError(
                    f"{schema_dir / (name + '.yaml')}: link {link.name!r} targets {link.target!r}, "
                    "which is not a node listed before it",
                    "list parents before children in _meta.yaml 'nodes'",
                )
        nodes.append(node)
    return Dictionary(
        version=version,
        title=str(meta.get("title", "Data dictionary")),
        description=str(meta.get("description", "")).strip(),
        nodes=tuple(nodes),
        conventions=tuple(str(c).strip() for c in meta.get("conventions", []) or []),
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: dictionary file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise UserError(f"{path}: cannot read dictionary file: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


def _node(path: Path, common: tuple[Property, ...]) -> NodeType:
    data = _read_yaml(path)
    _check_keys(data, _NODE_KEYS, path, "")
    name = _get(data, "name", str, path)
    if name != path.stem or not _NAME.match(name):
        raise UserError(f"{path}: name {name!r} must equal the file name and be lower_snake_case")
    try:
        category = Category(_get(data, "category", str, path))
    except ValueError:
        raise UserError(
            f"{path}: category must be one of {[c.value for c in Category]}"
        ) from None
    links = tuple(_link(spec, path) for spec in _get(data, "links", list, path, default=[]))
    own = tuple(
        _property(pname, spec, path)
        for pname, spec in _get(data, "properties", dict, path, default={}).items()
    )
    props = (*common, *own)
    names = [p.name for p in props] + [link.column for link in links]
    reserved = {TYPE_COLUMN, "id", "created_at", "updated_at", "created_by"}
    reserved |= {f"{link.name}_id" for link in links}
    for pname in names:
        if names.count(pname) > 1:
            raise UserError(f"{path}: property {pname!r} is defined twice (or clashes with a common one)")
        if pname in reserved:
            raise UserError(f"{path}: property name {pname!r} is reserved for the system")
    return NodeType(
        name=name,
        title=str(data.get("title", name)),
        category=category,
        description=str(data.get("description", "")).strip(),
        properties=props,
        links=links,
    )


def _link(spec: Any, path: Path) -> Link:
    if not isinstance(spec, dict):
        raise UserError(f"{path}: each entry of 'links' must be a mapping")
    _check_keys(spec, _LINK_KEYS, path, "links")
    name = _get(spec, "name", str, path)
    if not _NAME.match(name):
        raise UserError(f"{path}: link name {name!r} must be lower_snake_case")
    return Link(
        name=name,
        target=_get(spec, "target", str, path),
        required=bool(spec.get("required", True)),
        description=str(spec.get("description", "")).strip(),
    )


def _property(name: str, spec: Any, path: Path) -> Property:
    where = f"properties.{name}"
    if not _NAME.match(name) or name.endswith(LINK_COLUMN_SUFFIX):
        raise UserError(f"{path}: property name {name!r} must be lower_snake_case")
    if not isinstance(spec, dict):
        raise UserError(f"{path}: {where} must be a mapping")
    _check_keys(spec, _PROPERTY_KEYS, path, where)
    try:
        ptype = PropertyType(spec.get("type"))
        items = PropertyType(spec["items"]) if "items" in spec else None
    except ValueError:
        raise UserError(
            f"{path}: {where}: type/items must be one of {[t.value for t in PropertyType]}"
        ) from None
    if (ptype is PropertyType.ARRAY) != (items is not None) or items is PropertyType.ARRAY:
        raise UserError(f"{path}: {where}: 'items' (not array) is required for arrays and only for them")
    element = items or ptype
    enum_values = tuple(str(v) for v in spec.get("enum", []) or [])
    if (element is PropertyType.ENUM) != bool(enum_values):
        raise UserError(f"{path}: {where}: 'enum' values are required for enum types and only for them")
    pattern = spec.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as error:
            raise UserError(f"{path}: {where}: bad pattern {pattern!r}: {error}") from None
    for bound in ("minimum", "maximum"):
        if bound in spec and (
            not isinstance(spec[bound], (int, float)) or isinstance(spec[bound], bool)
        ):
            raise UserError(f"{path}: {where}: {bound} must be a number")
    return Property(
        name=name,
        type=ptype,
        description=str(spec.get("description", "")).strip(),
        required=bool(spec.get("required", False)),
        unique=bool(spec.get("unique", False)),
        facet=bool(spec.get("facet", False)),
        indexed=bool(spec.get("indexed", False)),
        enum=enum_values,
        items=items,
        minimum=spec.get("minimum"),
        maximum=spec.get("maximum"),
        pattern=pattern,
        max_length=spec.get("max_length"),
        hint=str(spec.get("hint", "")).strip(),
        system=bool(spec.get("system", False)),
    )


def _check_keys(data: Mapping[str, Any], allowed: set[str], path: Path, where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        place = f" in {where}" if where else ""
        raise UserError(f"{path}: unknown key(s) {unknown}{place}", f"allowed: {sorted(allowed)}")


def _get(data: Mapping[str, Any], key: str, kind: type, path: Path, default: Any = ...) -> Any:
    if key not in data or data[key] is None:
        if default is ...:
            raise UserError(f"{path}: missing key {key!r}")
        return default
    value = data[key]
    if not isinstance(value, kind):
        raise UserError(f"{path}: {key!r} must be a {kind.__name__}, got {value!r}")
    return value
