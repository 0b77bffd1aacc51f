"""``radcommons config``: show the effective configuration."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table


app = typer.Typer(
    help="Show the effective configuration (environment, then radcommons.toml, then defaults).\n\n"
    "Example: radcommons config show --json",
    no_args_is_help=True,
)


@app.command("show")
def show(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the effective configuration, passwords and secrets masked.

    Example: RADCOMMONS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/test radcommons config show
    """
    from radcommons.settings import config_file, load_settings

    values = load_settings().masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    path = config_file()
    state = "" if path.is_file() else " (not present)"
    console = Console()
    console.print(f"configuration file: {path}{state}", highlight=False, soft_wrap=True)
    table = Table(title="radcommons configuration")
    table.add_column("setting")
    table.add_column("value")
    for key, value in values.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    console.print(table)
