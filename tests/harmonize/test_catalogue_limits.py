"""``harmonize catalogue import`` of a code the index cannot keep whole, on SQLite and PostgreSQL.

Before: a long common name over 256 characters was cut short without a word, and a method,
region or timing longer than its column was a database error reported as a bug on
PostgreSQL. Now the import is refused naming the file, the code and the field, and nothing
is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HEADER = '"LoincNumber","LongCommonName","PartNumber","PartTypeName","PartName"\n'
GOOD = '"12345-6","XR Knee 2 Views","","Rad.Modality.Modality Type","XR"\n'


@pytest.mark.parametrize("row, words", [
    (f'"12345-7","{"N" * 300}","","Rad.Modality.Modality Type","XR"\n',
     "code 12345-7: the long common name is 300 characters long; at most 256 are kept"),
    (f'"12345-7","XR Knee","","Rad.Modality.Modality Type","{"M" * 100}"\n',
     "code 12345-7: the method is 100 characters long; at most 64 are kept"),
])
def test_a_code_too_long_for_the_index_is_refused(migrated_url: str, tmp_path: Path, forked_cli: Callable[..., Any],
                                                  row: str, words: str) -> None:
    playbook = tmp_path / "LoincRsnaRadiologyPlaybook.csv"
    playbook.write_text(HEADER + GOOD + row, encoding="utf-8")
    result = forked_cli("harmonize", "catalogue", "import", str(playbook), "--url", migrated_url)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert f"{playbook}: {words}" in result.stderr and "nothing was imported" in result.stderr, result.stderr
    refused = forked_cli("harmonize", "decide", "DX", "XR KNEE 2 VIEWS", "12345-6", "--url", migrated_url)
    assert "not in the catalogue" in refused.stderr, refused.stdout + refused.stderr  # the good code neither
