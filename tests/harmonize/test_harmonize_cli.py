"""``radcommons harmonize`` as a real subprocess."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from radcommons.cli import harmonize_cmd

HEADER = "Modality\tStudyDescription\tLOINC code\tL-Long Common Name\n"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "radcommons", "harmonize", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": "", "HOME": str(cwd), "LANG": "C.UTF-8", "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"},
    )


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.tsv"
    path.write_text(
        "Modality\tStudyDescription\tfrequency\tsite\n"
        "DX\tXR CHEST 1 VIEW AP\t20540\tA\n"
        "CT\tCHEST CT WITHOUT CONTRAST\t12\tB\n"
        "MR\tMRI SHOULDER WO, RT\t210\tA\n"
        "MR\tMRI ELBOW\t3\tC\n",
        encoding="utf-8",
    )
    return path


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_map(tmp_path: Path, pairs: Path) -> None:
    out = tmp_path / "out" / "mapped.tsv"
    result = run("map", "--input", str(pairs), "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_tsv(out)
    assert list(rows[0]) == [
        "Modality", "StudyDescription", "frequency", "site",
        "loinc_code", "loinc_long_common_name", "confidence", "method",
    ]
    assert (rows[0]["loinc_code"], rows[0]["method"], rows[0]["site"]) == ("36572-6", "exact", "A")
    assert (rows[1]["loinc_code"], rows[1]["method"]) == ("29252-4", "normalized")
    assert rows[2]["loinc_code"] == "" and rows[2]["loinc_long_common_name"] == ""
    assert "warning" not in result.stderr
    # An input column named like an output column is replaced, and said so (it vanished silently).
    again = run("map", "--input", str(out), "--output", str(tmp_path / "again.tsv"), cwd=tmp_path)
    assert again.returncode == 0 and read_tsv(tmp_path / "again.tsv") == rows, again.stderr
    assert "already has column(s) loinc_code, loinc_long_common_name, confidence, method" in again.stderr


_KILLED_WHILE_MAPPING = """
import os, sys
from radcommons.harmonize.matcher import Matcher

def killed(self, pairs):
    yield from self.__class__.__wrapped_match_all__(self, pairs[:1])
    os._exit(9)

Matcher.__wrapped_match_all__ = Matcher.match_all
Matcher.match_all = killed
from radcommons.cli import main
sys.argv = ["radcommons", "harmonize", *sys.argv[1:]]
main()
"""


def test_a_killed_map_leaves_the_earlier_output_whole(tmp_path: Path, pairs: Path) -> None:
    """The output was emptied as the command started and written in place: a kill lost the earlier
    result, or left the first rows of the new one, each well formed, under the final name."""
    out = tmp_path / "mapped.tsv"
    assert run("map", "--input", str(pairs), "--output", str(out), cwd=tmp_path).returncode == 0
    earlier = out.read_bytes()
    killed = subprocess.run([sys.executable, "-c", _KILLED_WHILE_MAPPING, "map", "--input", str(pairs), "--output",
                             str(out)], capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    assert out.read_bytes() == earlier


def test_map_with_own_table_replaces_curated_pairs(tmp_path: Path, pairs: Path) -> None:
    table = tmp_path / "table.tsv"
    table.write_text(HEADER + "MR\tMRI SHOULDER WO, RT\t25056-3\tMR Unspecified body region\n", encoding="utf-8")
    out = tmp_path / "mapped.tsv"
    result = run("map", "--mapping-table", str(table), "--input", str(pairs), "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_tsv(out)
    assert rows[2]["loinc_code"] == "25056-3" and rows[2]["method"] == "exact"
    # "XR CHEST 1 VIEW AP" is no longer a curated pair: it is not answered as exact.
    assert rows[0]["method"] != "exact"
    assert "conflict" not in result.stderr


def test_map_with_a_table_that_check_rejects_says_so(tmp_path: Path, pairs: Path) -> None:
    """It was used without a word, one of the two codes picked."""
    table = tmp_path / "table.tsv"
    table.write_text(HEADER + "CR\tXR CHEST 2 VIEWS\t36643-5\tXR Chest 2 Views\n"
                     "DX\txr chest 2 views\t42272-5\tXR Chest PA and Lateral\n", encoding="utf-8")
    result = run("map", "--mapping-table", str(table), "--input", str(pairs), "--output", str(tmp_path / "o.tsv"),
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "has 1 conflict(s)" in " ".join(result.stderr.split())


def test_check_rejects_conflicts(tmp_path: Path) -> None:
    table = tmp_path / "table.tsv"
    table.write_text(
        HEADER + "CR\tXR CHEST 2 VIEWS\t36643-5\tXR Chest 2 Views\nDX\txr chest 2 views\t42272-5\tXR Chest PA and Lateral\n",
        encoding="utf-8",
    )
    result = run("check", str(table), cwd=tmp_path)
    assert result.returncode == 1
    assert "CR/DX XR CHEST 2 VIEWS" in result.stdout and "rows 2, 3" in result.stdout
    good = tmp_path / "good.tsv"
    good.write_text(HEADER + "CT\tCT CHEST\t24627-2\tCT Chest\n", encoding="utf-8")
    assert run("check", str(good), cwd=tmp_path).returncode == 0


def test_queue(tmp_path: Path, pairs: Path) -> None:
    result = run("queue", "--input", str(pairs), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("MRI SHOULDER WO, RT") < result.stdout.index("MRI ELBOW")
    assert "XR CHEST 1 VIEW AP" not in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "empty"),
        (b"Modality\tStudyDescription\nCT\tC\xc3\xb4TE\nCT\tCAF\xe9\n", "line 3 is not UTF-8"),  # cp1252 alone is read
        (b"Modality\tDescription\nCT\tCT CHEST\n", "missing column(s) StudyDescription"),
        # which Modality is meant? The output kept one and wrote it over the other.
        (b"Modality\tModality\tStudyDescription\nCR\tCT\tCHEST PA\n", "column(s) Modality appear more than once"),
    ],
)
def test_bad_input_is_a_message(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "in.tsv"
    if content is not None:
        path.write_bytes(content)
    result = run("map", "--input", str(path), "--output", str(tmp_path / "o.tsv"), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "in.tsv" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_has_an_example() -> None:
    assert "Example:" in (harmonize_cmd.app.info.help or "")
    for command in harmonize_cmd.app.registered_commands:
        assert "Example:" in (command.callback.__doc__ or ""), command.callback
