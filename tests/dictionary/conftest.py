"""Helpers for dictionary tests: write example files in TSV, CSV or JSON."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from radcommons.dictionary.examples import format_cell

WriteFile = Callable[..., Path]


@pytest.fixture
def write_file(tmp_path: Path) -> WriteFile:
    """write_file(name, records) -> path; the format follows the name's ending."""

    def write(name: str, records: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
        path = tmp_path / name
        if path.suffix == ".json":
            path.write_text(json.dumps(list(records), indent=2), encoding="utf-8")
            return path
        cols = list(columns or (records[0] if records else []))
        delimiter = "\t" if path.suffix == ".tsv" else ","
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
            writer.writerow(cols)
            for record in records:
                writer.writerow([format_cell(record.get(c)) for c in cols])
        return path

    return write
