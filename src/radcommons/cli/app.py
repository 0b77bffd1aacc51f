"""The root ``radcommons`` application and its error handling."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError
from rich.console import Console

from radcommons import __version__
from radcommons.cli import config_cmd, db_cmd, dictionary_cmd, objects_cmd, synth_cmd
from radcommons.errors import UserError

app = typer.Typer(
    name="radcommons",
    help="RadCommons: contribute, curate, find and export medical imaging data.\n\n"
    "Example: radcommons synth var/synth --sites 2 --patients 5 --seed 1",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(dictionary_cmd.app, name="dictionary")
app.add_typer(db_cmd.app, name="db")
app.add_typer(objects_cmd.app, name="objects")
app.command("synth")(synth_cmd.synth)

err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"radcommons {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """RadCommons command line."""


def main() -> None:
    """Entry point: run the app, turning expected errors into a message and exit code 2."""
    try:
        app(standalone_mode=False)
    except UserError as error:
        err_console.print(f"[bold red]error:[/] {error.message}", highlight=False)
        if error.hint:
            err_console.print(f"[yellow]hint:[/] {error.hint}", highlight=False)
        sys.exit(2)
    except ValidationError as error:
        err_console.print("[bold red]error:[/] invalid configuration", highlight=False)
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"])
            err_console.print(f"  {field}: {item['msg']}", highlight=False)
        err_console.print(
            "[yellow]hint:[/] fix the RADCOMMONS_* environment variable or radcommons.toml",
            highlight=False,
        )
        sys.exit(2)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as error:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
