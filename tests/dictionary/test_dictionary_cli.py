"""``radcommons dictionary ...`` exit codes and output, run in-process through the real entry point."""

from __future__ import annotations

from collections.abc import Callable

import json
import sys
from pathlib import Path

import pytest

from radcommons.cli import main
from radcommons.dictionary.examples import example_records

WriteFile = Callable[..., Path]  # the write_file fixture of conftest.py


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["radcommons", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        main()
        raise SystemExit(0)
    return int(exit_.value.code or 0)


def test_validate_clean_file_exits_0(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                     write_file: WriteFile) -> None:
    path = write_file("case.tsv", example_records("case", 2))
    assert run(monkeypatch, "dictionary", "validate", str(path)) == 0
    assert "ok" in capsys.readouterr().out


def test_validate_problems_exit_1_with_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                             write_file: WriteFile) -> None:
    rows = example_records("case", 1)
    rows[0]["race"] = "Unknown"
    path = write_file("case.tsv", rows)
    assert run(monkeypatch, "dictionary", "validate", str(path)) == 1
    out = capsys.readouterr().out
    assert "race" in out and "Unknown" in out and "Not Reported" in out


def test_validate_json_output(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                              tmp_path: Path) -> None:
    assert run(monkeypatch, "dictionary", "validate", "--json", str(tmp_path / "missing.tsv")) == 1
    problems = json.loads(capsys.readouterr().out)
    assert problems[0]["code"] == "file_missing" and problems[0]["row"] is None


def test_unknown_node_option_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                     write_file: WriteFile) -> None:
    path = write_file("case.tsv", example_records("case", 1))
    assert run(monkeypatch, "dictionary", "validate", "--node", "casee", str(path)) == 2
    assert "did you mean 'case'" in capsys.readouterr().err


def test_show(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(monkeypatch, "dictionary", "show") == 0
    assert "imaging_study" in capsys.readouterr().out
    assert run(monkeypatch, "dictionary", "show", "case") == 0
    assert "age_at_index_gt89" in capsys.readouterr().out
    assert run(monkeypatch, "dictionary", "show", "nope") == 2


def test_docs_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert run(monkeypatch, "dictionary", "docs", str(tmp_path / "dd.html")) == 0
    assert (tmp_path / "dd.html").read_text().startswith("<!DOCTYPE html>")


def test_every_command_has_an_example() -> None:
    from radcommons.cli import db_cmd, dictionary_cmd

    for sub in (dictionary_cmd.app, db_cmd.app):
        for command in sub.registered_commands:
            assert "Example:" in (command.callback.__doc__ or ""), command.callback
