"""Exports of query results: CSV, TSV, JSON (lines or one array) and Parquet, streamed.

:func:`export` yields ``bytes`` chunks as the rows arrive from the database (a batch of
``chunk_size`` rows at a time, keyset-paged like :func:`~radcommons.store.query.pages.query`),
so an HTTP response or a file can take any size with constant memory. The same writers
serve the file manifest (:mod:`radcommons.store.query.manifest`).

Values: missing is an empty cell (CSV/TSV) or ``null``; lists are JSON text in CSV/TSV and
real lists in JSON and Parquet; booleans are ``true``/``false`` in CSV/TSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from radcommons.dictionary import Dictionary, PropertyType, load_dictionary
from radcommons.errors import UserError
from radcommons.store.query import graph
from radcommons.store.query.compile import Projects
from radcommons.store.query.pages import Direction, Filter, _split, default_fields, iter_rows

Format = Literal["csv", "tsv", "jsonl", "json", "parquet"]
FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "json", "parquet")
#: Media types, for whoever serves an export over HTTP.
MEDIA_TYPES = {
    "csv": "text/csv", "tsv": "text/tab-separated-values", "jsonl": "application/x-ndjson",
    "json": "application/json", "parquet": "application/vnd.apache.parquet",
}

_ARROW = {
    PropertyType.STRING: pa.string(), PropertyType.ENUM: pa.string(), PropertyType.INTEGER: pa.int64(),
    PropertyType.NUMBER: pa.float64(), PropertyType.BOOLEAN: pa.bool_(),
}


def export(
    engine: Engine,
    node: str,
    filter: Filter = None,
    *,
    format: Format = "csv",
    fields: Sequence[str] | None = None,
    sort: Sequence[tuple[str, Direction]] = (),
    projects: Projects = None,
    chunk_size: int = 5_000,
) -> Iterator[bytes]:
    """Every ``node`` record matching ``filter`` as a stream of ``format`` bytes."""
    check_format(format)
    names = tuple(fields) if fields else default_fields(node)
    schema = arrow_schema(node, names) if format == "parquet" else None
    batches = iter_rows(engine, node, filter, fields=names, sort=sort, chunk_size=chunk_size, projects=projects)
    return write(batches, names, format, schema)


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}" + graph.close_matches(format, FORMATS),
                        "formats: " + ", ".join(FORMATS))


def arrow_schema(node: str, names: Sequence[str], dictionary: Dictionary | None = None,
                 rename: Sequence[str] | None = None) -> pa.Schema:
    """Arrow types of ``names`` (own or ``parent.field``) from the dictionary; ``rename`` relabels them."""
    dictionary = dictionary or load_dictionary()
    arrow_fields = []
    for i, name in enumerate(names):
        info = graph.field(dictionary, *_split(node, name))
        kind = pa.list_(_ARROW[info.element]) if info.is_array else _ARROW[info.type]
        arrow_fields.append(pa.field(rename[i] if rename else name, kind))
    return pa.schema(arrow_fields)


def write(batches: Iterable[list[dict[str, Any]]], names: Sequence[str], format: str,
          schema: pa.Schema | None = None) -> Iterator[bytes]:
    """Serialise batches of rows (dicts keyed by ``names``) as ``format``, one chunk per batch."""
    check_format(format)
    if format in ("csv", "tsv"):
        return _delimited(batches, names, "," if format == "csv" else "\t")
    if format == "jsonl":
        return _json_lines(batches)
    if format == "json":
        return _json_array(batches)
    if schema is None:
        raise ValueError("parquet needs an Arrow schema")
    return _parquet(batches, schema, names)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value


def _delimited(batches: Iterable[list[dict[str, Any]]], names: Sequence[str], delimiter: str) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(names)
    for batch in batches:
        writer.writerows([_cell(row[name]) for name in names] for row in batch)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def _json_lines(batches: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    for batch in batches:
        yield "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in batch).encode()


def _json_array(batches: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    first = True
    yield b"["
    for batch in batches:
        text = ",\n".join(json.dumps(row, separators=(",", ":")) for row in batch)
        if text:
            yield (("\n" if first else ",\n") + text).encode()
            first = False
    yield b"\n]\n"


class _Sink(io.RawIOBase):
    """A write-only file that hands its bytes out as they come (Parquet needs ``tell``)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


def _parquet(batches: Iterable[list[dict[str, Any]]], schema: pa.Schema, names: Sequence[str]) -> Iterator[bytes]:
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    try:
        for batch in batches:
            columns = {target.name: [row[name] for row in batch] for target, name in zip(schema, names)}
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
            chunk = sink.take()
            if chunk:
                yield chunk
    finally:
        writer.close()
    yield sink.take()
