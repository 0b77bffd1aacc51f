"""``radcommons dictionary``: show the data dictionary, validate clinical files, write its docs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from radcommons.errors import UserError

app = typer.Typer(
    help="The versioned data dictionary: show it, validate clinical files, write its docs.\n\n"
    "Example: radcommons dictionary validate case.tsv measurement.csv",
    no_args_is_help=True,
)


@app.command("validate")
def validate(
    files: list[Path] = typer.Argument(..., help="TSV, CSV or JSON files, one node type per file (UTF-8, or "
                                       "UTF-16 with its byte order mark as Excel's Unicode Text)."),
    node: str | None = typer.Option(
        None, "--node", "-n", help="Node type of every file (default: the 'type' column or the file name)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the problems as JSON."),
) -> None:
    """Check clinical data files against the data dictionary and list every problem.

    Exits 0 when every file is clean, 1 when there are problems.

    Example: radcommons dictionary validate case.tsv measurement.csv
    """
    from radcommons.dictionary import load_dictionary, validate_files

    problems = validate_files(files, node=node)
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in problems], indent=2))
    elif problems:
        table = Table(title=f"{len(problems)} problem(s)", show_lines=False)
        for column in ("file", "row", "column", "value", "problem"):
            table.add_column(column, overflow="fold")
        for p in problems:
            table.add_row(
                p.file, "" if p.row is None else str(p.row), p.column or "", p.value or "", p.message
            )
        Console().print(table)
    else:
        Console().print(f"[green]ok[/]: {len(files)} file(s) match data dictionary {load_dictionary().version}")
    if problems:
        raise typer.Exit(1)


@app.command("show")
def show(
    node: str | None = typer.Argument(None, help="A node type (default: list every node type)."),
) -> None:
    """Print the node types, or the properties of one node type.

    Example: radcommons dictionary show case
    """
    from radcommons.dictionary.docs import allowed_values, type_label
    from radcommons.dictionary import load_dictionary

    dictionary = load_dictionary()
    console = Console()
    if node is None:
        table = Table(title=f"{dictionary.title} {dictionary.version}")
        for column in ("node", "category", "links to", "properties", "description"):
            table.add_column(column, overflow="fold")
        for item in dictionary.nodes:
            links = ", ".join(link.column for link in item.links)
            table.add_row(item.name, item.category.value, links, str(len(item.properties)), item.description)
        console.print(table)
        return
    if node not in dictionary:
        raise UserError(f"unknown node type {node!r}", "node types: " + ", ".join(dictionary.node_names))
    item = dictionary[node]
    table = Table(title=f"{item.name} ({dictionary.title} {dictionary.version})", caption=item.description)
    for column in ("column", "type", "required", "allowed values", "facet", "description"):
        table.add_column(column, overflow="fold")
    for prop in item.properties:
        required = "yes" if prop.required else ("system" if prop.system else "")
        table.add_row(
            prop.name, type_label(prop), required, allowed_values(prop), "yes" if prop.facet else "", prop.description
        )
    for link in item.links:
        table.add_row(
            link.column, "link", "yes" if link.required else "", f"submitter_id of a {link.target}", "",
            link.description,
        )
    console.print(table)


@app.command("docs")
def docs(
    out: Path = typer.Argument(..., help="Output file: Markdown, or HTML when it ends with .html."),
) -> None:
    """Write the data dictionary as Markdown (or HTML) documentation.

    Example: radcommons dictionary docs docs/data-dictionary.md
    """
    from radcommons.dictionary.docs import write_docs

    path = write_docs(out)
    Console().print(f"wrote {path}")
