"""``radcommons ingest``: bulk load of an already de-identified tree through the verification gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from radcommons.cli.context import DATABASE_HELP, STORE_HELP, open_index, open_store
from radcommons.parallel import MAX_WORKERS

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from radcommons.pipelines.ingest import IngestReport
    from radcommons.store.objects import ObjectStore


def ingest(
    path: Path = typer.Argument(..., help="A de-identified DICOM file or folder (searched recursively)."),
    project: str = typer.Option(..., "--project", help="Project the data joins, e.g. Open-A1."),
    site: str = typer.Option(..., "--site", help="Site that contributed the data."),
    dataset: str = typer.Option("", "--dataset", help="Submission batch id (default SITE_YYYYMMDD)."),
    availability: str = typer.Option(
        "open", "--availability", help="For a new project: open, sequestered or restricted."
    ),
    workers: int = typer.Option(0, "--workers", min=0, max=MAX_WORKERS,
                                help="Parallel workers (0: the workers setting, else one per core)."),
    report: Path | None = typer.Option(None, "--report", help="Write every file's outcome as JSON here."),
    url: str | None = typer.Option(None, "--url", help=DATABASE_HELP),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Store and index a de-identified DICOM tree; files that fail the gate are listed, not indexed.

    Example: radcommons ingest var/demo-deid/site_a --project Open-A1 --site SITE_A
    """
    from radcommons import parallel
    from radcommons.settings import load_settings

    settings = load_settings()
    workers = workers or settings.workers
    # Opened before the helpers start, so a missing index or store stops the command at once.
    engine = open_index(url)
    object_store = open_store(store)
    # The helpers' start-up (an interpreter importing pydicom and the rest) overlaps ours.
    with parallel.helpers_started_early(workers, "radcommons.pipelines.examine", scheduler=settings.dask_scheduler):
        result = _ingest(path, project, site, dataset, availability, workers, settings.dask_scheduler, engine,
                         object_store)
    table = Table(title=f"ingest of {path} into {project}")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    for status in ("indexed", "updated", "duplicate", "quarantined", "rejected"):
        table.add_row(status, str(result.count(status)))
    Console().print(table)
    for outcome in result.outcomes:
        if outcome.status in ("rejected", "quarantined"):
            Console().print(f"[yellow]{outcome.status}[/] {outcome.path}: {outcome.reason}", highlight=False)
    if report is not None:
        from radcommons.durable import write_atomic

        write_atomic(report, json.dumps({"added": dict(result.added), "files": [vars(o) for o in result.outcomes]},
                                        indent=2))
    if not result.ok:
        raise typer.Exit(1)


def _ingest(path: Path, project: str, site: str, dataset: str, availability: str, workers: int, scheduler: str,
            engine: Engine, object_store: ObjectStore) -> IngestReport:
    from radcommons.pipelines.ingest import FileOutcome, ingest_tree, iter_files

    total = sum(1 for _ in iter_files(path)) if path.exists() else 0
    with Progress(
        TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    ) as progress:
        task = progress.add_task("files", total=total)

        def advance(_: FileOutcome) -> None:
            progress.advance(task)

        return ingest_tree(
            path, engine=engine, store=object_store, project=project, site_id=site,
            dataset=dataset or None, availability=availability, workers=workers, scheduler=scheduler,
            on_file=advance,
        )
