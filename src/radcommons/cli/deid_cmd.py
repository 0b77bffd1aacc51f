"""``radcommons keygen`` and ``radcommons deid``: de-identify DICOM at the site."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from radcommons.errors import UserError
from radcommons.parallel import MAX_WORKERS
from radcommons.roles import check_site_id

if TYPE_CHECKING:
    from radcommons.deid.report import RunReport


def keygen(
    keyfile: Path = typer.Argument(..., help="Key file to create (refuses to overwrite).", show_default=False),
) -> None:
    """Create the site's secret de-identification key (32 random bytes, hex, mode 0600).

    Keep it private and backed up: the same key gives the same pseudonyms and UIDs on
    every run and machine; a lost key means resent studies get new identities.

    Example: radcommons keygen var/secrets/deid.key
    """
    from radcommons.deid.keys import generate_key_file, key_fingerprint, read_key_file

    path = generate_key_file(keyfile)
    typer.echo(f"wrote {path} (fingerprint {key_fingerprint(read_key_file(path))})")


def deid(
    src: Path = typer.Argument(..., help="Folder (or file) of DICOM to de-identify.", show_default=False),
    dst: Path = typer.Argument(..., help="Output folder for de-identified files.", show_default=False),
    site: str = typer.Option(..., "--site", help="Site identifier (namespaces the pseudonyms).", show_default=False),
    key_file: Path = typer.Option(..., "--key-file", help="Secret key file from 'radcommons keygen'.", show_default=False),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Private state (registry, reports); default var/deid-state/SITE.", show_default=False
    ),
    profile: str = typer.Option("default", "--profile", help="Profile: default (research), basic."),
    overrides: Path | None = typer.Option(
        None, "--overrides", help="YAML/JSON file: attribute keyword or tag -> action (X Z D K C U).", show_default=False
    ),
    workers: int = typer.Option(0, "--workers", help="Worker processes; 0 = one per core, 1 = inline.", min=0,
                                 max=MAX_WORKERS),
    report: Path | None = typer.Option(
        None, "--report", help="Report JSON path (default: in the state directory).", show_default=False
    ),
) -> None:
    """De-identify every file under SRC into DST (PS3.15 Annex E) and report each file's outcome.

    Outputs are DST/<study uid>/<series uid>/<sop uid>.dcm, named only by new UIDs. The
    report and the pseudonym registry hold original identifiers and stay in the private
    state directory, never in DST. Rerunning after an interruption completes the job. Exit
    code 1 when no file could be de-identified (withheld or rejected files alone are listed);
    exit code 2 when DST cannot take the outputs (a full disk, read-only): the run stops, and
    once DST has room again the same command resumes it. A stopped run (that, or Ctrl-C) still
    writes its report, of the files it finished, saying why it stopped.

    Example: radcommons deid exports/ deid-out/ --site SITE01 --key-file var/secrets/deid.key
    """
    from radcommons import parallel

    if not src.exists():
        raise UserError(f"the source {src} does not exist", "give the folder exported from the PACS")
    site = check_site_id(site)
    workers = workers or os.cpu_count() or 1
    # The helpers' start-up (an interpreter importing pydicom and the rest) overlaps ours.
    with parallel.helpers_started_early(workers, "radcommons.deid.tree"):
        result = _deid(src, dst, site, key_file, state_dir, profile, overrides, workers, report)
    from radcommons.deid.report import render_summary

    render_summary(result, Console())
    counts = result.counts()
    if not counts["deidentified"]:  # nothing to contribute: a script must not carry on as if there were
        Console(stderr=True).print(
            "[bold red]error:[/] " + (f"no file under {src}" if not counts["total"] else
                                      f"none of the {counts['total']} file(s) under {src} was de-identified "
                                      "(see the reasons above and the report)"), highlight=False)
        raise typer.Exit(1)


def _deid(src: Path, dst: Path, site: str, key_file: Path, state_dir: Path | None, profile: str,
          overrides: Path | None, workers: int, report: Path | None) -> RunReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from radcommons.deid.engine import DeidContext
    from radcommons.deid.keys import read_key_file
    from radcommons.deid.profile import load_profile
    from radcommons.deid.tree import deidentify_tree

    key = read_key_file(key_file)
    context = DeidContext(key=key, site=site.strip(), profile=load_profile(profile, overrides))
    console = Console(stderr=True)
    with Progress(
        TextColumn("de-identifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("deid", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def stopped(partial: RunReport) -> None:
            console.print(f"the run stopped after {len(partial.outcomes)} file(s); report of those (private, holds "
                          f"original identifiers): {partial.path}", highlight=False)

        return deidentify_tree(
            src, dst, context, state_dir=state_dir, workers=workers,
            report_path=report, progress=progress, stopped=stopped,
        )
