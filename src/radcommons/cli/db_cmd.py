"""``radcommons db``: create and migrate the index database, show its revision and counts."""

from __future__ import annotations

from types import ModuleType

import typer
from rich.console import Console
from rich.table import Table

from radcommons.cli.context import open_index


def _index() -> ModuleType:
    """The index package, imported when a db command runs (SQLAlchemy and Alembic are slow to import)."""
    import radcommons.store.index as index

    return index

app = typer.Typer(
    help="The index database: migrate it, show its revision and record counts.\n\n"
    "Example: radcommons db upgrade --url sqlite:///var/radcommons.db",
    no_args_is_help=True,
)

_URL_HELP = "Database URL (default: the database_url setting, RADCOMMONS_DATABASE_URL)."


def _url(url: str | None) -> str:
    from radcommons.settings import load_settings

    return url or load_settings().database_url


@app.command("upgrade")
def upgrade(
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    revision: str = typer.Option("head", "--revision", help="Target migration (default: the newest)."),
) -> None:
    """Create the index tables or migrate them to the newest schema (a SQLite file's folder is created).

    Example: radcommons db upgrade --url sqlite:///var/radcommons.db
    """
    from radcommons.settings import mask_url_password

    target = _url(url)
    reached = _index().upgrade(target, revision)
    Console().print(f"{mask_url_password(target)} is at revision {reached}")


@app.command("downgrade")
def downgrade(
    revision: str = typer.Argument(..., help="Target migration; 'base' drops every table."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
) -> None:
    """Migrate the index down to an older revision (base removes every table and record).

    Example: radcommons db downgrade base --url sqlite:///var/test.db
    """
    from radcommons.settings import mask_url_password

    target = _url(url)
    reached = _index().downgrade(target, revision)
    Console().print(f"{mask_url_password(target)} is at revision {reached or 'base'}")


@app.command("current")
def current(url: str | None = typer.Option(None, "--url", help=_URL_HELP)) -> None:
    """Print the migration revision of the index and the newest one available.

    Example: radcommons db current --url postgresql+psycopg://postgres@127.0.0.1/radcommons
    """
    target = _url(url)
    revision = _index().current_revision(target)
    head = _index().head_revision()
    if revision == head:
        state = "up to date"
    elif revision is not None and revision not in _index().known_revisions():
        state = (f"unknown to this version of radcommons (newest {head}): another version migrated it; "
                 "use that version")
    else:
        state = f"behind: run radcommons db upgrade (newest {head})"
    typer.echo(f"{revision or 'none'} ({state})")


@app.command("counts")
def counts(url: str | None = typer.Option(None, "--url", help=_URL_HELP)) -> None:
    """Print the number of records of each node type in the index.

    Example: radcommons db counts --url sqlite:///var/radcommons.db
    """
    from radcommons.settings import mask_url_password

    target = _url(url)
    engine = open_index(target)  # an index at the newest revision; a mistyped path is not created
    try:
        numbers = _index().counts(engine)
        version = _index().schema_dictionary_version(engine)
    finally:
        engine.dispose()
    # The heading is a line of its own: as the table's title it was wrapped to the narrow table's width.
    console = Console(soft_wrap=True)
    console.print(f"records in {mask_url_password(target)} (dictionary {version})", highlight=False)
    table = Table()
    table.add_column("node")
    table.add_column("records", justify="right")
    for node, number in numbers.items():
        table.add_row(node, f"{number:,}")
    console.print(table)
