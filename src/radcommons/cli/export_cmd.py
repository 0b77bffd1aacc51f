"""``radcommons export``: a cohort or query as ML-ready files (DICOM tree, NIfTI volumes or PNG images), for a user."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from radcommons.cli.context import DATABASE_HELP, STORE_HELP, open_index, open_store
from radcommons.errors import UserError
from radcommons.parallel import MAX_WORKERS


def export(
    places: list[str] = typer.Argument(
        ..., metavar="[COHORT] DEST",
        help="COHORT: a frozen cohort (rc-cohort-...) or a saved query's number; leave it out with --query. "
             "DEST: the folder to write: new or empty (created); the same command run again resumes in it.",
    ),
    query: Path | None = typer.Option(
        None, "--query", help='Export a query file instead of a cohort: {"node": "series", "filter": {...}} '
                              "(docs/QUERY.md), run now.",
    ),
    for_user: str = typer.Option("", "--for", help="The commons account the export is for: its access applies "
                                                   "(open, granted restricted projects; never sequestered)."),
    as_admin: bool = typer.Option(False, "--as-admin", help="Act as administrator instead of --for: every "
                                                            "project but the sequestered ones."),
    format: str = typer.Option("dicom", "--format", help="dicom, nifti (volumes) or png (radiographs)."),
    split: str = typer.Option("", "--split", help="Patient-level splits, e.g. train=0.7,val=0.15,test=0.15."),
    stratify: str = typer.Option("", "--stratify", help="Case fields to stratify on, e.g. covid19_positive,sex."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split (same seed, same split)."),
    bits: int = typer.Option(8, "--bits", help="PNG bit depth: 8 or 16."),
    size: int = typer.Option(0, "--size", min=0, max=16384, help="PNG longest side in pixels (0: original size)."),
    workers: int = typer.Option(0, "--workers", min=0, max=MAX_WORKERS,
                                help="Parallel workers (0: the workers setting, else one per core)."),
    include_sequestered: bool = typer.Option(
        False, "--include-sequestered",
        help="Also export sequestered projects: only with --as-admin or --for an admin or curator; never the default.",
    ),
    url: str | None = typer.Option(None, "--url", help=DATABASE_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Export a cohort or query for a user, with a label table, patient-level splits and a datasheet.

    Example: radcommons export rc-cohort-0123456789ab out/ct --for alice --format nifti --split train=0.8,test=0.2

    Example: radcommons export out/ct --query ct.json --as-admin --format nifti
    """
    from radcommons.settings import load_settings
    from radcommons.export.splits import parse_weights
    from radcommons.pipelines.export import (
        FORMATS,
        SeriesResult,
        check_dest,
        cohort_selection,
        export_cohort,
        export_scope,
        query_selection,
    )

    wanted = 1 if query is not None else 2
    if len(places) != wanted:
        raise UserError(f"expected {'DEST' if query is not None else 'COHORT DEST'}, got {' '.join(places)}",
                        "with --query give only DEST: radcommons export DEST --query FILE ..." if query is not None
                        else "radcommons export COHORT DEST ..., or radcommons export DEST --query FILE ...")
    cohort, dest = (None, Path(places[0])) if query is not None else (places[0], Path(places[1]))
    if format not in FORMATS:
        raise UserError(f"unsupported format {format!r}", f"choose one of {', '.join(FORMATS)}")
    check_dest(dest)
    if format != "png" and (bits != 8 or size):
        raise UserError(f"--bits and --size are PNG options; a {format} export keeps the stored pixels",
                        "leave them out, or add --format png")
    weights = parse_weights(split) if split else None
    fields = tuple(f.strip() for f in stratify.split(",") if f.strip())
    if fields and not weights:
        raise UserError("--stratify needs --split", "e.g. --split train=0.8,test=0.2 --stratify sex")
    selection = query_selection(query) if query is not None else None
    settings = load_settings()
    engine = open_index(url)
    object_store = open_store(store)
    scope = export_scope(engine, for_user=for_user or None, as_admin=as_admin, include_sequestered=include_sequestered)
    if selection is None:
        selection = cohort_selection(engine, str(cohort))
    console = Console(stderr=True)
    with Progress(TextColumn(f"export {format}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("series", total=None)

        def start(total: int) -> None:
            progress.update(task, total=total)

        def advance(_: SeriesResult) -> None:
            progress.advance(task)

        report = export_cohort(
            engine, object_store, selection, dest, format=format, scope=scope, weights=weights,
            stratify=fields, seed=seed, bits=bits, size=size or None, workers=workers or settings.workers,
            scheduler=settings.dask_scheduler, on_start=start, on_series=advance,
        )
    table = Table(title=f"export of {selection.label} for {scope.recipient} to {dest}")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("files in the label table", str(len(report.rows)))
    table.add_row("written", str(report.written))
    table.add_row("already there (kept)", str(report.kept))
    table.add_row("excluded (sequestered / not readable)", str(sum(report.excluded.values())))
    table.add_row("failed series", str(len(report.failures)))
    table.add_row("skipped (listed below)", str(len(report.skipped)))
    Console().print(table)
    for line in report.skipped:
        Console().print(f"[yellow]skipped[/] {line}", highlight=False)
    for line in report.details:  # the errors as raised: the operator may see the commons' paths
        Console().print(f"[red]failed[/] {line}", highlight=False)
    if report.failures:
        raise typer.Exit(1)
