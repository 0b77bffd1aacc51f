"""JSON filter -> typed, validated syntax tree (:mod:`radcommons.store.query.ast`).

The language (documented for people in ``docs/QUERY.md``)::

    filter := {}                                        every record
            | {"and": [filter, ...]} | {"or": [filter, ...]} | {"not": filter}
            | {"=" | "!=" | "<" | "<=" | ">" | ">=": {field: value, ...}}
            | {"in": {field: [value, ...]}}
            | {"is_null": field} | {"not_null": field}
            | {"contains": {array_field: value | [value, ...]}}
            | {"within": {field: {"ref": "scope.field" | "value": number, "by": number}}}
            | {"exists": {"node": node_type, "as": alias, "filter": filter}}
            | {"in_cohort": "rc-cohort-..."}
    field  := name of the current node | "node_type.name" (a linked node: an "exists")
    value  := string | number | boolean | {"ref": "scope.field", "offset": number}

Every name is checked against the data dictionary here, so the compiler never sees an
unknown field, and the researcher gets a message naming the field, where it was, and the
valid choices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from radcommons.dictionary import Dictionary, PropertyType, load_dictionary
from radcommons.errors import UserError
from radcommons.store.query import graph
from radcommons.store.query.ast import (
    COMPARE_OPS,
    MATCH_ALL,
    And,
    Compare,
    CompareOp,
    Contains,
    Exists,
    Expr,
    In,
    InCohort,
    IsNull,
    Not,
    Or,
    Ref,
    Scalar,
)

LOGICAL_OPS = ("and", "or", "not")
OTHER_OPS = ("in", "is_null", "not_null", "contains", "within", "exists", "in_cohort")
ALL_OPS = (*LOGICAL_OPS, *COMPARE_OPS, *OTHER_OPS)
#: How deep filters may nest (a guard against pathological input, not a real limit).
MAX_DEPTH = 32


def parse_filter(node: str, data: Mapping[str, Any] | None, dictionary: Dictionary | None = None) -> Expr:
    """Parse and validate the JSON filter ``data`` written for records of ``node``.

    Raises :class:`UserError` naming the problem and where it is (``and[1].exists.filter``).
    """
    dictionary = dictionary or load_dictionary()
    graph.require_node(dictionary, node)
    return _Parser(dictionary).expr(data, [(node, node)], "filter", 0)


class _Parser:
    def __init__(self, dictionary: Dictionary) -> None:
        self.d = dictionary

    # scopes: innermost last, (alias, node type)
    def expr(self, data: Any, scopes: list[tuple[str, str]], where: str, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise UserError(f"{where}: the filter nests deeper than {MAX_DEPTH} levels")
        if data is None or data == {}:
            return MATCH_ALL
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: a filter is a JSON object like {{\"=\": {{\"sex\": \"Female\"}}}}, "
                            f"not {type(data).__name__}")
        if len(data) != 1:
            raise UserError(f"{where}: a filter object has exactly one operator, found {sorted(data)}",
                            'combine several with {"and": [...]}')
        op, arg = next(iter(data.items()))
        at = f"{where}.{op}" if where else op
        if op in ("and", "or"):
            if not isinstance(arg, Sequence) or isinstance(arg, str):
                raise UserError(f"{at}: expects a list of filters")
            items = tuple(self.expr(item, scopes, f"{at}[{i}]", depth + 1) for i, item in enumerate(arg))
            if not items:
                raise UserError(f"{at}: expects at least one filter")
            if len(items) == 1:
                return items[0]
            if op == "and":  # flatten: "within" and multi-field objects are Ands themselves
                return And(tuple(part for item in items for part in (item.items if isinstance(item, And) else (item,))))
            return Or(items)
        if op == "not":
            return Not(self.expr(arg, scopes, at, depth + 1))
        if op == "exists":
            return self.exists(arg, scopes, at, depth)
        if op == "in_cohort":
            if not isinstance(arg, str) or not arg:
                raise UserError(f"{at}: expects a cohort identifier such as \"rc-cohort-0123456789ab\"")
            return InCohort(arg)
        if op in ("is_null", "not_null"):
            names = [arg] if isinstance(arg, str) else arg
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise UserError(f"{at}: expects a field name or a list of field names")
            parts = [self.linked(name, scopes, at, lambda f: IsNull(f, negate=op == "not_null"), depth)
                     for name in names]
            return parts[0] if len(parts) == 1 else And(tuple(parts))
        if op not in ALL_OPS:
            raise UserError(f"{at}: unknown operator {op!r}" + graph.close_matches(op, ALL_OPS),
                            "operators: " + ", ".join(ALL_OPS))
        if not isinstance(arg, Mapping) or not arg:
            raise UserError(f"{at}: expects an object of field: value, e.g. {{\"{op}\": {{\"age_at_index\": 50}}}}")
        parts = [self.field_op(op, name, value, scopes, f"{at}.{name}", depth) for name, value in arg.items()]
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def linked(self, name: str, scopes: list[tuple[str, str]], where: str, make: Any, depth: int) -> Expr:
        """``make(field)`` on the current node, or inside an exists for ``node_type.field``."""
        node = scopes[-1][1]
        if "." not in name:
            self._field(node, name, where)
            return cast(Expr, make(name))
        target, _, rest = name.partition(".")
        if "." in rest or not rest:
            raise UserError(f"{where}: {name!r} must be field or node_type.field")
        path = self._path(node, target, where)
        self._field(target, rest, where)
        return Exists(target, path, cast(Expr, make(rest)), alias=target)

    def _field(self, node: str, name: str, where: str) -> graph.FieldInfo:
        try:
            return graph.field(self.d, node, name)
        except UserError as error:
            raise UserError(f"{where}: {error.message}", error.hint) from None

    def _path(self, node: str, target: str, where: str) -> tuple[Any, ...]:
        try:
            return graph.find_path(self.d, node, target)
        except UserError as error:
            raise UserError(f"{where}: {error.message}", error.hint) from None

    def field_op(self, op: str, name: str, value: Any, scopes: list[tuple[str, str]], where: str,
                 depth: int) -> Expr:
        node = scopes[-1][1]
        if "." in name:
            target, _, rest = name.partition(".")
            if "." in rest or not rest:
                raise UserError(f"{where}: {name!r} must be field or node_type.field")
            path = self._path(node, target, where)
            inner_scopes = [*scopes, (target, target)]
            return Exists(target, path, self.field_op(op, rest, value, inner_scopes, where, depth), alias=target)
        info = self._field(node, name, where)
        if op in COMPARE_OPS:
            if info.is_array:
                raise UserError(f"{where}: {node}.{name} is a list; use {{\"contains\": {{\"{name}\": ...}}}}")
            if op not in ("=", "!=") and (info.type in (PropertyType.ENUM, PropertyType.BOOLEAN)):
                raise UserError(f"{where}: {op} does not apply to {info.type.value} field {node}.{name}",
                                "use = , != or in")
            return Compare(cast(CompareOp, op), name, self.value(value, info, scopes, where))
        if op == "in":
            if info.is_array:
                raise UserError(f"{where}: {node}.{name} is a list; use contains inside an or")
            if not isinstance(value, list):
                raise UserError(f"{where}: in expects a list of values")
            return In(name, tuple(self.scalar(v, info, where) for v in value))
        if op == "contains":
            if not info.is_array:
                raise UserError(f"{where}: contains applies to list fields; {node}.{name} is "
                                f"{info.type.value}", "use = or in")
            values = value if isinstance(value, list) else [value]
            if not values:
                raise UserError(f"{where}: contains expects at least one value")
            return Contains(name, tuple(self.scalar(v, info, where) for v in values))
        if op == "within":
            return self.within(name, info, value, scopes, where)
        raise AssertionError(op)

    def within(self, name: str, info: graph.FieldInfo, value: Any, scopes: list[tuple[str, str]],
               where: str) -> Expr:
        if not info.is_numeric or info.is_array:
            raise UserError(f"{where}: within applies to numeric fields")
        if not isinstance(value, Mapping) or "by" not in value or ("ref" in value) == ("value" in value):
            raise UserError(f"{where}: within expects {{\"ref\": \"scope.field\", \"by\": N}} "
                            "or {\"value\": X, \"by\": N}")
        by = value["by"]
        if not _is_number(by) or by < 0:
            raise UserError(f"{where}: within needs a non-negative number \"by\"")
        if "ref" in value:
            ref = self.ref({"ref": value["ref"]}, info, scopes, where)
            low: Scalar | Ref = Ref(ref.scope, ref.field, -by)
            high: Scalar | Ref = Ref(ref.scope, ref.field, by)
        else:
            centre = value["value"]
            if not _is_number(centre):
                raise UserError(f"{where}: within needs a numeric \"value\"")
            low, high = centre - by, centre + by
        return And((Compare(">=", name, low), Compare("<=", name, high)))

    def value(self, value: Any, info: graph.FieldInfo, scopes: list[tuple[str, str]], where: str) -> Scalar | Ref:
        if isinstance(value, Mapping):
            return self.ref(value, info, scopes, where)
        return self.scalar(value, info, where)

    def ref(self, value: Mapping[str, Any], info: graph.FieldInfo, scopes: list[tuple[str, str]],
            where: str) -> Ref:
        unknown = set(value) - {"ref", "offset"}
        target = value.get("ref")
        if unknown or not isinstance(target, str) or "." not in target:
            raise UserError(f"{where}: a reference is {{\"ref\": \"scope.field\", \"offset\": N}}")
        scope, _, name = target.partition(".")
        node = next((n for alias, n in reversed(scopes) if alias == scope), None)
        if node is None:
            raise UserError(f"{where}: {scope!r} is not an enclosing node of this filter",
                            "references can name: " + ", ".join(alias for alias, _ in scopes))
        other = self._field(node, name, where)
        offset = value.get("offset", 0)
        if not _is_number(offset):
            raise UserError(f"{where}: offset must be a number")
        if other.is_array or (info.is_numeric != other.is_numeric) or (offset and not other.is_numeric):
            raise UserError(f"{where}: cannot compare {info.type.value} with {node}.{name} ({other.type.value})")
        return Ref(scope, name, offset)

    def scalar(self, value: Any, info: graph.FieldInfo, where: str) -> Scalar:
        kind = info.element
        if kind in (PropertyType.INTEGER, PropertyType.NUMBER):
            if not _is_number(value):
                raise UserError(f"{where}: expects a number, got {value!r}")
            return cast(Scalar, value)
        if kind is PropertyType.BOOLEAN:
            if not isinstance(value, bool):
                raise UserError(f"{where}: expects true or false, got {value!r}")
            return value
        if not isinstance(value, str):
            raise UserError(f"{where}: expects a string, got {value!r}")
        if kind is PropertyType.ENUM and info.enum and value not in info.enum:
            raise UserError(f"{where}: {value!r} is not a value of {info.name}" + graph.close_matches(value, info.enum),
                            "valid values: " + ", ".join(info.enum))
        return value

    def exists(self, arg: Any, scopes: list[tuple[str, str]], where: str, depth: int) -> Expr:
        if not isinstance(arg, Mapping) or not isinstance(arg.get("node"), str):
            raise UserError(f"{where}: expects {{\"node\": \"imaging_study\", \"filter\": {{...}}}}")
        unknown = set(arg) - {"node", "as", "filter"}
        if unknown:
            raise UserError(f"{where}: unknown keys {sorted(unknown)}", "exists takes node, as and filter")
        target = arg["node"]
        alias = arg.get("as", target)
        if not isinstance(alias, str) or not alias.isidentifier():
            raise UserError(f"{where}.as: an alias is a name like \"ct\"")
        path = self._path(scopes[-1][1], target, where)
        inner = self.expr(arg.get("filter"), [*scopes, (alias, target)], f"{where}.filter", depth + 1)
        return Exists(target, path, None if inner == MATCH_ALL else inner, alias=alias)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
