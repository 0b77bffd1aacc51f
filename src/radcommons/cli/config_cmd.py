"""``radcommons config``: show the effective configuration."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from radcommons.settings import config_file, load_settings

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@app.command("show")
def show(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the effective configuration, passwords and secrets masked.

    Example: RADCOMMONS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/test radcommons config show
    """
    values = load_settings().masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    table = Table(title=f"radcommons configuration (file: {config_file()})")
    table.add_column("setting")
    table.add_column("value")
    for key, value in values.items():
        table.add_row(key, str(value))
    Console().print(table)
