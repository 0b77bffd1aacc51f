"""Validate clinical data files (TSV, CSV, JSON) against the data dictionary.

One file holds one node type (MIDRC style). The node type is, in this order of
precedence, given by the caller, named by a ``type`` column, or inferred from the
file name (``case.tsv``, ``measurement.csv``, ``visit_batch2.json``).

Validation never stops at the first problem: every problem in every file is
returned as a :class:`Problem` (plain data: file, line number, column, value,
message, allowed values), so that a site can fix a file in one pass. Rows are
counted as a person counts lines in a text editor: the header is line 1, the
first data row is line 2. For JSON (a list of objects) the row is the line on
which the object starts.

Example::

    >>> from radcommons.dictionary.validate import validate_files
    >>> for problem in validate_files(["case.tsv"]):   # doctest: +SKIP
    ...     print(problem.file, problem.row, problem.column, problem.message)
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from radcommons.dictionary.loader import load_dictionary
from radcommons.dictionary.model import (
    LINK_COLUMN_SUFFIX,
    NOT_REPORTED,
    TYPE_COLUMN,
    Dictionary,
    NodeType,
    Property,
    PropertyType,
)
from radcommons.dictionary.values import check_value, date_problem, is_blank, missing_value_kind, zip_without_leading_zero
from radcommons.errors import UserError
from radcommons.inputs import (
    SEPARATOR_NAMES,
    UnreadableText,
    decode_text_table,
    not_text_kind,
    other_separator,
    read_input_bytes,
)

#: File name endings that can be validated, and how their cells are separated.
FORMATS = {".tsv": "\t", ".csv": ",", ".json": None}

# Column names that announce a calendar date or a direct identifier: refused by name.
_DATE_COLUMN = re.compile(r"(^|_)(date|dob|birth_?date|datetime|timestamp)(_|$)", re.I)


@dataclass(frozen=True)
class Problem:
    """One problem found in a file, as plain data.

    ``row`` is the line number (header = 1) or None for problems with the whole
    file; ``column`` is None for problems with a whole row or file.
    """

    file: str
    row: int | None
    column: str | None
    value: str | None
    message: str
    code: str
    allowed: tuple[str, ...] = ()
    suggestion: str | None = None
    node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The problem as a JSON-ready dictionary."""
        data = asdict(self)
        data["allowed"] = list(self.allowed)
        return data


@dataclass(frozen=True)
class ValidatedFile:
    """The outcome of validating one file: its node type, converted records and problems.

    Each record maps property names to values converted to their Python types
    (blank values left out) and link columns (``case.submitter_id``) to the
    parent's submitter_id; ``_row`` holds the record's line number.
    """

    file: str
    node: str | None
    records: tuple[dict[str, Any], ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Table:
    """Raw cells of a file: columns in order and (line number, {column: value}) rows."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[int, Mapping[str, Any]]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: Line of the header (None for JSON and in-memory records, which have none).
    header_row: int | None = 1


def validate_files(
    paths: Iterable[str | Path],
    node: str | None = None,
    dictionary: Dictionary | None = None,
) -> list[Problem]:
    """Validate every file in ``paths`` and return all their problems (empty when all are clean).

    ``node`` forces the node type of every file. Duplicate submitter_ids and unique
    values are also detected across files of the same node type.
    Raises :class:`UserError` when ``node`` is not a node type of the dictionary.
    """
    return [p for result in validate_file_results(paths, node, dictionary) for p in result.problems]


def validate_file_results(
    paths: Iterable[str | Path],
    node: str | None = None,
    dictionary: Dictionary | None = None,
) -> list[ValidatedFile]:
    """Like :func:`validate_files`, but one :class:`ValidatedFile` per path (with the records)."""
    dictionary = dictionary or load_dictionary()
    _check_node_argument(node, dictionary)
    seen: dict[tuple[str, str, Any, Any], tuple[str, int]] = {}
    return [_validate_path(Path(p), node, dictionary, seen) for p in paths]


def validate_file(
    path: str | Path, node: str | None = None, dictionary: Dictionary | None = None
) -> ValidatedFile:
    """Validate one file; see :func:`validate_files`."""
    dictionary = dictionary or load_dictionary()
    _check_node_argument(node, dictionary)
    return _validate_path(Path(path), node, dictionary, {})


def validate_records(
    records: Sequence[Mapping[str, Any]],
    node: str,
    dictionary: Dictionary | None = None,
    file: str = "<records>",
    first_row: int = 1,
) -> ValidatedFile:
    """Validate records already in memory (e.g. from an API); rows are numbered from ``first_row``."""
    dictionary = dictionary or load_dictionary()
    _check_node_argument(node, dictionary)
    # The columns in the order they first appear (a list searched per key was quadratic in the columns);
    # the records are read, never changed: not copied.
    columns = list(dict.fromkeys(key for record in records for key in record))
    table = _Table(columns=columns, rows=[(first_row + i, r) for i, r in enumerate(records)])
    table.header_row = None
    return _validate_table(file, table, dictionary[node], {}, check_missing_columns=False)


def _check_node_argument(node: str | None, dictionary: Dictionary) -> None:
    if node is not None and node not in dictionary:
        close = difflib.get_close_matches(node, dictionary.node_names, n=1)
        raise UserError(
            f"unknown node type {node!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
            "node types: " + ", ".join(dictionary.node_names),
        )


def _validate_path(
    path: Path, node: str | None, dictionary: Dictionary, seen: dict[tuple[str, str, Any, Any], tuple[str, int]]
) -> ValidatedFile:
    file = str(path)

    def whole_file(message: str, code: str, row: int | None = None) -> ValidatedFile:
        return ValidatedFile(file, node, problems=(Problem(file, row, None, None, message, code, node=node),))

    if path.is_dir():
        return whole_file("is a folder, not a file: name the .tsv, .csv or .json files in it", "file_unreadable")
    if not path.exists():
        if path.is_symlink():
            return whole_file("a link that leads nowhere (its target is gone, or it is a loop): name the file "
                              "itself", "file_missing")
        return whole_file("file not found: check the path", "file_missing")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        return whole_file(
            f"unsupported file type {path.suffix or '(none)'!r}: save the data as .tsv, .csv or .json", "file_type"
        )
    try:
        data = read_input_bytes(path)
    except FileNotFoundError:
        return whole_file("file not found: check the path", "file_missing")
    except OSError as error:
        return whole_file(f"cannot read the file ({error.strerror or error}): check its permissions", "file_unreadable")
    found = not_text_kind(data)
    if found is not None:
        return whole_file(f"this is {found[0]}, not a CSV or TSV text table: {found[1]}", "file_type")
    try:  # read as the contribution pathway reads a clinical file: the same bytes, the same text
        text = decode_text_table(data)
    except UnreadableText as error:
        return whole_file(f"{error.message}: {error.hint}", "encoding", error.line)
    if not text.strip():
        return whole_file("file is empty: it needs a header line and at least one record", "empty_file")

    table = _read_json(file, text) if suffix == ".json" else _read_delimited(file, text, FORMATS[suffix] or ",")
    if table.problems and not table.rows:
        return ValidatedFile(file, node, problems=tuple(table.problems))

    node_type, node_problems = _resolve_node(file, path, node, table, dictionary)
    if node_type is None:
        # Without a node type the columns cannot be checked, but dates can and must be.
        problems = [*table.problems, *node_problems, *_date_problems_everywhere(file, table)]
        return ValidatedFile(file, None, problems=tuple(problems))
    result = _validate_table(file, table, node_type, seen)
    return ValidatedFile(
        file, node_type.name, result.records, (*table.problems, *node_problems, *result.problems)
    )


# --- reading -----------------------------------------------------------------------------------


def _read_delimited(file: str, text: str, delimiter: str) -> _Table:
    table = _Table()
    # TSV cells never contain tabs or newlines, so quotes are literal there (MIDRC/Gen3 TSVs);
    # CSV follows RFC 4180 quoting, where a quoted cell may span lines.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except csv.Error as error:
        table.problems.append(Problem(file, 1, None, None, f"cannot parse the header: {error}", "parse"))
        return table
    table.columns = [name.strip() for name in header]
    other = other_separator(table.columns, delimiter)
    if other is not None:  # every row would be one value under one column named 'a;b;c'
        table.problems.append(Problem(
            file, 1, None, None,
            f"the header is one column, {table.columns[0][:80]!r}: the values are separated by "
            f"{SEPARATOR_NAMES[other]}, not by {SEPARATOR_NAMES[delimiter]} as in a {Path(file).suffix} file (a "
            "CSV saved by Excel in a European language uses ';'): save it again with commas as .csv or with tabs as .tsv", "separator"))
        return table
    for index, name in enumerate(table.columns):
        if not name:
            table.problems.append(
                Problem(file, 1, None, None, f"column {index + 1} of the header has no name: name it or delete it", "header")
            )
        elif table.columns.index(name) != index:
            table.problems.append(Problem(file, 1, name, None, f"column {name!r} appears twice in the header", "header"))
    line = reader.line_num
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            table.problems.append(Problem(file, start, None, None, f"cannot parse the row: {error}", "parse"))
            break
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines (often trailing) carry no record
        if len(cells) != len(table.columns):
            table.problems.append(
                Problem(
                    file, start, None, None,
                    f"row has {len(cells)} values but the header has {len(table.columns)} columns: "
                    f"check for a stray {'tab' if delimiter == chr(9) else 'comma or quote'}",
                    "row_length",
                )
            )
            cells = (cells + [""] * len(table.columns))[: len(table.columns)]
        table.rows.append((start, dict(zip(table.columns, cells))))
    if not table.rows:
        table.problems.append(Problem(file, None, None, None, "file has a header but no data rows", "empty_file"))
    return table


def _read_json(file: str, text: str) -> _Table:
    table = _Table(header_row=None)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        table.problems.append(
            Problem(file, error.lineno, None, None, f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})", "parse")
        )
        return table
    except RecursionError:  # thousands of nested brackets: no table of records
        table.problems.append(Problem(file, None, None, None, "JSON nested too deeply to be a list of records",
                                      "parse"))
        return table
    if not isinstance(document, list):
        table.problems.append(
            Problem(
                file, None, None, None,
                f"JSON must be a list of objects ([{{...}}, {{...}}]), not a {_json_kind(document)}",
                "json_shape",
            )
        )
        return table
    if not document:
        table.problems.append(Problem(file, None, None, None, "JSON list is empty: it needs at least one record", "empty_file"))
        return table
    for line, item in zip(_json_item_lines(text), document):
        if not isinstance(item, dict):
            table.problems.append(
                Problem(file, line, None, None, f"record must be a JSON object, not a {_json_kind(item)}", "json_shape")
            )
            continue
        for key in item:
            if key not in table.columns:
                table.columns.append(key)
        table.rows.append((line, item))
    return table


def _json_item_lines(text: str) -> list[int]:
    """Line number on which each element of the top-level JSON list starts."""
    decoder = json.JSONDecoder()
    lines: list[int] = []
    index = text.index("[") + 1
    whitespace = re.compile(r"[\s,]*")
    while True:
        index = whitespace.match(text, index).end()  # type: ignore[union-attr]
        if index >= len(text) or text[index] == "]":
            return lines
        lines.append(text.count("\n", 0, index) + 1)
        _, index = decoder.raw_decode(text, index)


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


# --- node type ---------------------------------------------------------------------------------


def _resolve_node(
    file: str, path: Path, node: str | None, table: _Table, dictionary: Dictionary
) -> tuple[NodeType | None, list[Problem]]:
    problems: list[Problem] = []
    if node is not None:
        return dictionary[node], problems
    if TYPE_COLUMN in table.columns:
        for row, cells in table.rows:
            value = cells.get(TYPE_COLUMN)
            if is_blank(value):
                continue
            name = str(value).strip()
            if name in dictionary:
                return dictionary[name], problems
            close = difflib.get_close_matches(name, dictionary.node_names, n=1)
            problems.append(
                Problem(
                    file, row, TYPE_COLUMN, name,
                    f"unknown node type {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                    "unknown_node", dictionary.node_names, close[0] if close else None,
                )
            )
            return None, problems
    inferred = node_from_filename(path, dictionary)
    if inferred is not None:
        return dictionary[inferred], problems
    problems.append(
        Problem(
            file, None, None, None,
            f"cannot tell the node type of {path.name!r}: add a 'type' column, name the file after "
            "the node type (e.g. case.tsv) or give it explicitly (--node)",
            "unknown_node", dictionary.node_names,
        )
    )
    return None, problems


def node_from_filename(path: str | Path, dictionary: Dictionary | None = None) -> str | None:
    """The node type a file name announces: ``case.tsv`` -> case, ``visit_2024.csv`` -> visit.

    The longest node name that the file name starts with (followed by the end, ``_``,
    ``-`` or ``.``) wins, so ``imaging_study.tsv`` is not taken for something shorter.
    """
    dictionary = dictionary or load_dictionary()
    stem = Path(path).name.lower().split(".")[0]
    for name in sorted(dictionary.node_names, key=len, reverse=True):
        if stem == name or re.match(rf"^{re.escape(name)}[_\-]", stem):
            return name
    return None


# --- checking ----------------------------------------------------------------------------------


def _validate_table(
    file: str,
    table: _Table,
    node: NodeType,
    seen: dict[tuple[str, str, Any, Any], tuple[str, int]],
    check_missing_columns: bool = True,
) -> ValidatedFile:
    problems: list[Problem] = []
    header = table.header_row

    def add(row: int | None, column: str | None, value: Any, message: str, code: str, **extra: Any) -> None:
        shown = None if value is None else (value if isinstance(value, str) else json.dumps(value))
        problems.append(Problem(file, row, column, shown, message, code, node=node.name, **extra))

    known = set(node.columns)
    for column in table.columns:
        if column and column not in known:
            add(header, column, None, *_unknown_column_message(column, node), code="unknown_column")
    if check_missing_columns:
        for column in node.required_columns:
            if column not in table.columns:
                add(header, column, None, f"required column {column!r} is missing: add it to the header", "missing_column")

    records: list[dict[str, Any]] = []
    outcomes: dict[tuple[str, type, Any], tuple[Any, tuple[tuple[str, str, dict[str, Any]], ...]]] = {}
    unique = [(p.name, None) for p in node.properties if p.unique]  # unique across the commons
    for row, cells in table.rows:
        record: dict[str, Any] = {"_row": row}
        row_ok = True
        for column, value in cells.items():
            if column in known or not isinstance(value, str) or is_blank(value):
                continue
            problem = date_problem(value)  # privacy: even unknown columns must hold no dates
            if problem:
                add(row, column, value, problem.message, problem.code)
                row_ok = False
        type_value = cells.get(TYPE_COLUMN)
        if not is_blank(type_value) and str(type_value).strip() != node.name:
            add(row, TYPE_COLUMN, type_value, f"type is {type_value!r} but this file holds {node.name!r} records "
                "(one node type per file)", "type_mismatch")
            row_ok = False
        for prop in node.properties:
            value = cells.get(prop.name)
            if is_blank(value):
                if prop.required and (prop.name in table.columns or not check_missing_columns):
                    hint = f"; if it is unknown write {NOT_REPORTED!r}" if NOT_REPORTED in prop.enum else ""
                    add(row, prop.name, "", f"required value is blank{hint}", "required", allowed=prop.enum)
                    row_ok = False
                continue
            # A column repeats its values (enumerations, days, units): each (property, text or whole number)
            # is checked once. Not a list, nor what converts to one (an array): a record's value is its own.
            if (type(value) is str or type(value) is int) and prop.type is not PropertyType.ARRAY:
                key = (prop.name, type(value), value)
                outcome = outcomes.get(key)
                if outcome is None:
                    outcome = outcomes[key] = _value_outcome(prop, value)
            else:
                outcome = _value_outcome(prop, value)
            converted, found = outcome
            for message, code, extra in found:
                add(row, prop.name, value, message, code, **extra)
                row_ok = False
            if not found:
                record[prop.name] = converted
        for link in node.links:
            value = cells.get(link.column)
            if is_blank(value):
                if link.required and link.column in table.columns:
                    add(row, link.column, "", f"required link is blank: give the submitter_id of the {link.target}",
                        "required")
                    row_ok = False
                continue
            if not isinstance(value, str):
                add(row, link.column, value, f"must be the submitter_id (text) of a {link.target}", "type")
                row_ok = False
                continue
            problem = date_problem(value)
            if problem:
                add(row, link.column, value, problem.message, problem.code)
                row_ok = False
                continue
            record[link.column] = value.strip()
        for message, column, value in _row_rules(node, record):
            add(row, column, value, message, "consistency")
            row_ok = False
        _check_duplicates(file, row, node, record, unique, seen, add)
        if row_ok:
            records.append(record)
    return ValidatedFile(file, node.name, tuple(records), tuple(problems))


def _value_outcome(prop: Property, value: Any) -> tuple[Any, tuple[tuple[str, str, dict[str, Any]], ...]]:
    """A non-blank ``value`` of ``prop`` converted, or its problems: (message, code, the :class:`Problem`'s
    allowed and suggestion), each."""
    marker = _marker_message(prop, value)
    if marker:
        return None, ((marker, "no_value_marker", {}),)
    converted, value_problems = check_value(prop, value)
    found = []
    for vp in value_problems:
        message = vp.message + (f" ({prop.hint})" if prop.hint and vp.code != "calendar_date" else "")
        lost_zero = zip_without_leading_zero(str(value)) if prop.name == "zip" else None
        if lost_zero:  # "keep the first three digits" of 2139 would send 213, another area than 021
            message = f"{lost_zero}; the three digits of 0{str(value).strip()[:4]} are {'0' + str(value).strip()[:2]!r}"
        found.append((message, vp.code, {"allowed": vp.allowed, "suggestion": vp.suggestion}))
    return converted, tuple(found)


def _unknown_column_message(column: str, node: NodeType) -> tuple[str]:
    if _DATE_COLUMN.search(column):
        return (
            f"unknown column {column!r}: calendar dates are not allowed; give days from the index "
            "event in a days_to_* column instead",
        )
    if column.endswith(LINK_COLUMN_SUFFIX):
        target = column[: -len(LINK_COLUMN_SUFFIX)]
        for link in node.links:
            if target in (f"{link.name}s", link.name.rstrip("s")):
                return (f"unknown column {column!r}: links are written {link.column!r} (singular)",)
        links = ", ".join(repr(link.column) for link in node.links) or "none"
        return (f"unknown column {column!r}: {node.name} links only to {links}",)
    known = [c for c in node.columns if c != TYPE_COLUMN]
    # Names are compared as written: AGE_AT_INDEX or "Age At Index" is not age_at_index, but meant it.
    same = [c for c in known if c.lower() == "_".join(column.lower().split())]
    close = same or difflib.get_close_matches(column, known, n=1, cutoff=0.7)
    advice = f"; did you mean {close[0]!r}?" if close else f"; remove it or see `radcommons dictionary show {node.name}`"
    return (f"unknown column {column!r} for {node.name}{advice}",)


def _marker_message(prop: Property, value: Any) -> str:
    """What is wrong, with the fix, when a number or enumeration cell holds a spreadsheet error
    or a marker of no value ("N/A", "NaN", "-"), else "": "must be a whole number" or "not one of
    the allowed values" would not say to leave it empty (text may be "NA": Namibia's code)."""
    if not isinstance(value, str) or (prop.type is PropertyType.STRING and not prop.enum):
        return ""
    text = " ".join(value.split())
    kind = missing_value_kind(text)
    if kind == "spreadsheet_error":
        return f"{text!r} is a spreadsheet error (a formula that failed): correct the formula or type the value"
    if kind is None:
        return ""
    unknown = f"write {NOT_REPORTED!r}" if NOT_REPORTED in prop.enum else "leave the cell empty"
    return f"{text!r} stands for a missing value: when the value is not known, {unknown}"


def _row_rules(node: NodeType, record: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """Checks that involve more than one property of a record."""
    found: list[tuple[str, str, Any]] = []
    if node.name == "case" and record.get("age_at_index_gt89") == "Yes" and "age_at_index" in record:
        found.append(
            (
                "age_at_index must be blank when age_at_index_gt89 is Yes (ages over 89 identify people)",
                "age_at_index",
                str(record["age_at_index"]),
            )
        )
    return found


def _check_duplicates(
    file: str, row: int, node: NodeType, record: Mapping[str, Any], unique: list[tuple[str, None]],
    seen: dict[tuple[str, str, Any, Any], tuple[str, int]], add: Any,
) -> None:
    """``unique``: (name, None) of the node's properties unique across the commons."""
    keys: list[tuple[str, Any]] = [("submitter_id", record.get("project_id")), *unique]
    for name, scope in keys:
        value = record.get(name)
        if value is None:
            continue
        key = (node.name, name, scope, value)
        if key in seen:
            first_file, first_row = seen[key]
            where = f"line {first_row}" if first_file == file else f"{first_file} line {first_row}"
            add(row, name, str(value), f"duplicate {name} {value!r} (first at {where}); each {node.name} "
                f"needs its own {name}", "duplicate")
        else:
            seen[key] = (file, row)


def _date_problems_everywhere(file: str, table: _Table) -> list[Problem]:
    problems: list[Problem] = []
    for row, cells in table.rows:
        for column, value in cells.items():
            if isinstance(value, str) and (problem := date_problem(value)):
                problems.append(Problem(file, row, column, value, problem.message, problem.code))
    return problems


__all__ = [
    "FORMATS",
    "Problem",
    "ValidatedFile",
    "node_from_filename",
    "validate_file",
    "validate_file_results",
    "validate_files",
    "validate_records",
]
