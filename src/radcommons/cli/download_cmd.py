"""``radcommons download``: fetch a frozen cohort or a manifest's files, in parallel, resumably, verified."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn


def command(
    dest: Path = typer.Argument(..., help="Folder for DEST/<case>/<study>/<series>/<sop>.dcm."),
    cohort: str | None = typer.Option(None, "--cohort", help="A frozen cohort: rc-cohort-... (or its number)."),
    manifest: Path | None = typer.Option(None, "--manifest", help="A manifest file (JSON, JSON lines, CSV, TSV, Parquet)."),
    server: str = typer.Option(..., "--server", envvar="RADCOMMONS_SERVER", help="The commons URL, e.g. https://commons.example.org."),
    token_file: Path = typer.Option(..., "--token-file", help="File holding your token (chmod 600)."),
    workers: int = typer.Option(4, "--workers", min=1, max=64, help="Parallel transfers."),
    format: str | None = typer.Option(None, "--format", help="An ML-ready export of --cohort made by the server: "
                                      "dicom, nifti or png, with labels and a datasheet (docs/EXPORT.md)."),
    split: str = typer.Option("", "--split", help="With --format: patient-level splits, e.g. train=0.8,test=0.2."),
    stratify: str = typer.Option("", "--stratify", help="With --format: fields to stratify on, e.g. sex."),
    seed: int = typer.Option(0, "--seed", help="With --format: seed of the split."),
    bits: int = typer.Option(8, "--bits", help="With --format png: 8 or 16 bits."),
    size: int = typer.Option(0, "--size", min=0, max=16384, help="With --format png: longest side in pixels (0: as stored)."),
) -> None:
    """Download the files of a cohort or manifest; rerun the same command to resume and verify.

    With --format, the server first makes an ML-ready export of the cohort for you (only what
    you may read), then its files are downloaded the same way.

    Complete files (size and sha256 match) are skipped, partial ones resume with HTTP Range,
    every file is checked against its sha256 before it gets its final name. With --format, files
    an earlier download left in DEST that this export does not hold (access to their project
    ended, say) are named, and the command exits 1.

    Example: radcommons download data/cohort --cohort rc-cohort-0123456789ab --server https://commons.example.org --token-file ~/.radcommons.token
    """
    from radcommons.client.download import strays
    from radcommons.client.research import Client, check_download_dest, export_entries
    from radcommons.errors import UserError
    from radcommons.export.dest import DOWNLOAD_MARK

    if (cohort is None) == (manifest is None):
        raise UserError("give exactly one of --cohort ID or --manifest FILE",
                        "e.g. radcommons download data --cohort rc-cohort-0123456789ab --server URL --token-file F")
    if cohort is not None and not (cohort.startswith("rc-cohort-") or cohort.isdigit()):
        raise UserError(f"--cohort {cohort!r} is not a cohort identifier",  # it was read as a manifest file
                        "give a frozen cohort's rc-cohort-... identifier (or its number); files are --manifest FILE")
    if format is not None and cohort is None:
        raise UserError("--format exports a cohort: give --cohort ID", "a manifest is downloaded as it is")
    export_options = [name for name, given in (("--split", split), ("--stratify", stratify), ("--size", size),
                                               ("--bits", bits != 8), ("--seed", seed != 0)) if given]
    if format is None and export_options:  # they shape an export; without one they would be ignored
        raise UserError(f"{', '.join(export_options)} only apply to an export: add --format dicom|nifti|png",
                        "without --format the files are downloaded as they are stored")
    if format is not None:
        check_download_dest(dest)  # a folder of other files is refused before the server exports anything
    console = Console(soft_wrap=True)
    with Client(server, token_file=token_file) as client, _export_ended():
        if format is not None:
            with console.status(f"the server is exporting {cohort} as {format}"):
                started = client.start_export(str(cohort), format, split=split, seed=seed, bits=bits, size=size or None,
                                              stratify=[f.strip() for f in stratify.split(",") if f.strip()])
                status = client.wait_export(started["id"])
            console.print(f"export {status['id']}: {status['message']}")
            entries = export_entries(status)
        else:
            entries = client.entries(cohort if cohort is not None else manifest)  # type: ignore[arg-type]
        total = sum(e.size for e in entries)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TimeRemainingColumn(), console=console, transient=False) as progress:
            task = progress.add_task(f"{len(entries)} files", total=total)
            advance = lambda _entry, n: progress.advance(task, n)  # noqa: E731
            report = (client.download_export(status, dest, workers=workers, progress=advance) if format is not None
                      else client.download(entries, dest, workers=workers, progress=advance))
    console.print(f"{report.downloaded} downloaded, {report.resumed} resumed, {report.skipped} already complete "
                  f"({report.bytes} bytes) in {dest}")
    for path, message in report.failed.items():
        console.print(f"[red]failed[/] {path}: {message}")
    if report.failed:
        console.print("[yellow]hint:[/] run the same command again: it resumes and skips what is complete")
        raise typer.Exit(1)
    left = strays(dest, entries, keep=(DOWNLOAD_MARK,)) if format is not None else []
    if left:  # an earlier export of the cohort held them; this one does not (access ended, files changed)
        folders: dict[str, int] = {}
        for path in left:  # by their top folder, the project: the paths themselves are long
            top = path.split("/", 1)[0] + ("/" if "/" in path else "")
            folders[top] = folders.get(top, 0) + 1
        shown = ", ".join(f"{count} under {top}" if top.endswith("/") else top for top, count in folders.items())
        console.print(f"[yellow]{len(left)} files in {dest} are not in this export[/] ({shown}): an earlier download "
                      "of this cohort put them there, and the commons no longer exports them to you (access to their "
                      "project may have ended, or the cohort's files changed; README.md says what this export holds). "
                      "Delete them unless you may still use them: the export's labels and manifest no longer list "
                      "them", highlight=False)
    failures = (status.get("failures") or []) if format is not None else []
    for line in failures:  # the export itself is incomplete: what was downloaded is not all of it
        console.print(f"[red]failed series[/] {line}", highlight=False)
    if failures:
        console.print(f"[yellow]the export is incomplete:[/] {len(failures)} series failed at the commons and are not "
                      f"in {dest} (README.md lists them); tell the commons operator, then start the export again")
    if failures or left:
        raise typer.Exit(1)


@contextlib.contextmanager
def _export_ended() -> Iterator[None]:
    """An export that expired or was withdrawn while it was waited for or downloaded: the server's
    message, and what to do with this command (the server's hint names its API)."""
    from radcommons.client.errors import CommonsError
    from radcommons.errors import UserError

    try:
        yield
    except CommonsError as error:
        if error.code not in ("gone", "export_expired", "export_withdrawn"):
            raise
        raise UserError(error.message, "run the same command again: it starts a new export of what you may read "
                        "now, and keeps the files already complete in DEST") from None
