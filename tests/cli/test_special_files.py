"""A FIFO where a command expects a file: a clear message, never a hang.

Reading a FIFO waits until some process writes to it, so every case here hangs (and fails on
``run_cli``'s timeout) where a command opens a user's file without checking what it is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIFO = "a FIFO (named pipe), not a regular file"

CASES = {
    "key file": ("deid", "src", "out", "--site", "S", "--key-file", "pipe.key"),
    "overrides": ("deid", "src", "out", "--site", "S", "--key-file", "site.key", "--overrides", "pipe.yaml"),
    "clinical file": ("contribute", "src", "--clinical", "pipe.csv", "--site", "SITE_A", "--project", "Open-A1",
                      "--key-file", "site.key", "--dry-run"),
    "token file": ("contribute", "src", "--site", "SITE_A", "--project", "Open-A1", "--key-file", "site.key",
                   "--server", "http://127.0.0.1:9", "--token-file", "pipe.token"),
    "clinical file to validate": ("dictionary", "validate", "pipe.tsv"),
    "pairs to map": ("harmonize", "map", "--input", "pipe.tsv", "--output", "out.tsv"),
    "mapping table to check": ("harmonize", "check", "pipe.tsv"),
    "file to store": ("objects", "put", "pipe.dcm", "--store", "objects"),
    "query file to export": ("export", "out", "--query", "pipe.json", "--as-admin", "--url", "sqlite:///index.db",
                             "--store", "objects"),
    # Given as the tree itself: one entry, rejected with its reason (it was 0 files, silently).
    "tree to de-identify": ("deid", "pipe.dcm", "out", "--site", "S", "--key-file", "site.key"),
    "tree to ingest": ("ingest", "pipe.dcm", "--project", "Open-A1", "--site", "S", "--url", "sqlite:///index.db",
                       "--store", "objects"),
}


@pytest.mark.parametrize("what", sorted(CASES))
def test_a_fifo_given_as_a_file_is_refused_with_a_message(run_cli, tmp_path: Path, what: str) -> None:
    args = CASES[what]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("not an image")
    assert run_cli("keygen", "site.key").returncode == 0
    pipe = next(arg for arg in args if arg.startswith("pipe."))
    os.mkfifo(tmp_path / pipe)
    assert run_cli("db", "upgrade", "--url", "sqlite:///index.db").returncode == 0
    result = run_cli(*args)
    said = " ".join((result.stdout + result.stderr).split())
    assert FIFO in said and "Traceback" not in said, said
    if what == "tree to de-identify":  # a report of the run lists it; nothing was de-identified: exit 1
        assert result.returncode == 1 and "rejected 1 x a FIFO" in said, said
    else:
        assert result.returncode in (1, 2), said
