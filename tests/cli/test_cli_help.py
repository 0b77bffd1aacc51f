"""The command tree: ``--help``, examples in every command's help, usage errors."""

from __future__ import annotations

import typer

from radcommons import __version__
from radcommons.cli import app

TOP_LEVEL = ("config", "dictionary", "db", "objects", "synth")


def _walk(command, path: tuple[str, ...] = ()):
    yield path, command
    # Duck-typed: recent typer builds its groups on a vendored copy of click.
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from _walk(sub, path + (name,))


def test_help_lists_the_commands(run_cli) -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for name in TOP_LEVEL:
        assert name in result.stdout
    assert "Example" in result.stdout


def test_version(run_cli) -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"radcommons {__version__}"


def test_every_command_has_an_example() -> None:
    """Every group and command explains itself with an ``Example:`` line.

    Depends on every area's commands (dictionary, db, synth, ...) being written.
    """
    root = typer.main.get_command(app)
    missing = [
        " ".join(("radcommons", *path))
        for path, command in _walk(root)
        if "Example" not in (command.help or "")
    ]
    assert missing == [], f"commands whose help has no 'Example:': {missing}"


def test_every_subcommand_help_runs(run_cli) -> None:
    """``--help`` works everywhere (one subprocess per group, to stay quick)."""
    root = typer.main.get_command(app)
    for name in ("config", "objects"):
        result = run_cli(name, "--help")
        assert result.returncode == 0, result.stderr
        for sub in root.commands[name].commands:  # type: ignore[attr-defined]
            assert sub in result.stdout


def test_unknown_command_is_a_usage_error(run_cli) -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_option_is_a_usage_error(run_cli) -> None:
    result = run_cli("config", "show", "--yaml")
    assert result.returncode == 2
    assert "No such option" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_help_reads_as_prose(run_cli) -> None:
    """A help paragraph is one paragraph however its docstring is wrapped, arguments are named as
    the text names them, and a flag shows no value type (Typer 0.29 printed ``--dry-run <bool>``)."""
    result = run_cli("deid", "--help", env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    assert "named only by new UIDs. The report and the pseudonym registry" in result.stdout
    assert "{SRC} {DST}" in result.stdout
    flags = run_cli("contribute", "--help", env={"COLUMNS": "300"})
    assert "--dry-run" in flags.stdout and "--help" in flags.stdout
    assert "<bool>" not in flags.stdout
    missing = run_cli("deid")
    assert "Missing argument 'SRC'" in missing.stderr
