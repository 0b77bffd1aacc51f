"""Manifest files a researcher gives ``radcommons download --manifest``: what cannot be read, or
would overwrite one file with another, is a message naming the file or row, never a traceback
or a silent "0 downloaded"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radcommons.client.download import entries_of, read_manifest
from radcommons.errors import UserError

DIGEST_A, DIGEST_B = "a" * 64, "b" * 64
ROW = {"object_id": DIGEST_A, "size": 10, "case_submitter_id": "C1", "study_uid": "1.2", "series_uid": "1.2.3",
       "sop_instance_uid": "1.2.3.4"}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.json", b"[1,2", "not valid JSON (line 1"),
        ("m.json", b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        ("m.parquet", b"garbage", "not a readable Parquet file"),
        ("m.csv", "object_id,size\n".encode("utf-16"), "not UTF-8 text"),
        ("m.csv", b"object_id,size\n", "lists no files"),
        ("m.csv", b"", "lists no files"),
        ("m.json", b"[1, 2]", "manifest row 1: a row must be a mapping"),
        ("m.csv", f"object_id,size\n{DIGEST_A},-5\n".encode(), "manifest row 1: size -5 is negative"),
        ("m.csv", f"object_id,size\n{DIGEST_A},big\n".encode(), "size 'big' is not a whole number of bytes"),
        ("m.csv", f"object_id,size\n{DIGEST_A},{10**15}\n".encode(), "over the commons' limit"),  # never finished
        ("m.csv", f"sha,size\n{DIGEST_A},5\n".encode(), "manifest row 1: no object_id column (columns: sha, size)"),
    ],
)
def test_a_manifest_that_cannot_be_used_is_a_message(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as raised:
        entries_of(read_manifest(path))
    assert message in str(raised.value)


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"object_id,size\n{DIGEST_A},10\n".encode())
    assert [entry.object_id for entry in entries_of(read_manifest(path))] == [DIGEST_A]


def test_two_files_with_one_path_are_refused_and_one_file_twice_is_fetched_once(tmp_path: Path) -> None:
    """Both were downloaded to the same path: the report said 2, the folder held 1."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps([ROW, ROW]))
    assert len(entries_of(read_manifest(path))) == 1
    path.write_text(json.dumps([ROW, {**ROW, "object_id": DIGEST_B}]))
    with pytest.raises(UserError, match="manifest rows 1 and 2 are different files"):
        entries_of(read_manifest(path))
