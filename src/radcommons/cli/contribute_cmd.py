"""``radcommons contribute``: de-identify, convert, check, package and send a site's data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from radcommons.cli.context import check_server
from radcommons.errors import UserError
from radcommons.parallel import MAX_WORKERS
from radcommons.roles import check_site_id


def command(
    src: Path = typer.Argument(..., help="Folder of DICOM exported from the PACS.", show_default=False),
    clinical: list[Path] = typer.Option(
        [], "--clinical", help="Clinical file (CSV, TSV, .xlsx) or folder of them; repeat for several.",
        show_default=False,
    ),
    site: str = typer.Option(..., "--site", help="Site identifier (namespaces the pseudonyms).", show_default=False),
    project: str = typer.Option(..., "--project", help="Project to contribute to (e.g. Open-A1).", show_default=False),
    server: str = typer.Option("", "--server", help="Commons URL, e.g. https://commons.example.org.",
                               show_default=False),
    token_file: Path | None = typer.Option(None, "--token-file", help="File holding the upload token (chmod 600).",
                                           show_default=False),
    key_file: Path = typer.Option(Path("var/secrets/deid.key"), "--key-file",
                                  help="The site's de-identification key (radcommons keygen)."),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Private state: registry, staging, reports, receipts, upload journal "
        "(default var/deid-state/SITE).", show_default=False),
    mapping: Path | None = typer.Option(None, "--mapping", help="Site mapping YAML (tables, columns, values, ZIP3, "
                                        "index event), added to the defaults.", show_default=False),
    dataset: str | None = typer.Option(None, "--dataset", help="Submission batch name (default SITE_YYYYMMDD).",
                                       show_default=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Prepare and show what would leave the site; send nothing."),
    allow_partial: bool = typer.Option(False, "--allow-partial",
                                       help="With errors, send the valid parts (default: send nothing)."),
    workers: int = typer.Option(
        4, "--workers", min=1, max=MAX_WORKERS,
        help="Parallel uploads (threads) and de-identification processes (at most one per core)."),
) -> None:
    """De-identify SRC, convert the clinical files, check everything and send it to the commons.

    Steps: de-identify every file (withheld and rejected ones are listed with the reason);
    convert the clinical files to the data dictionary (pseudonyms as in the images, days
    from each case's index event, ZIP3, ages over 89 flagged); validate and cross-check
    (report in STATE/reports, Markdown and JSON); upload per study with a manifest,
    resumably (rerun after an interruption: nothing is sent twice); save the receipt in
    STATE/receipts. With errors nothing is sent unless --allow-partial.

    Example: radcommons contribute exports/ --clinical clinical/ --site SITE_A --project Open-A1 --server https://commons.example.org --token-file var/secrets/commons.token --key-file var/secrets/deid.key
    """
    from radcommons.clinical import load_mapping
    from radcommons.deid import DeidContext, default_state_dir, make_state_dir, read_key_file
    from radcommons.pipelines.contribute import ContributeRequest, dataset_to_send, default_dataset, prepare

    site = check_site_id(site)
    if not src.exists():
        raise UserError(f"the source {src} does not exist", "give the folder exported from the PACS")
    if not dry_run:
        if not server:
            raise UserError("--server is required to send", "give the commons URL, or use --dry-run to only prepare")
        if token_file is None:
            raise UserError("--token-file is required to send", "give the file holding your upload token")
    client = None
    if not dry_run:
        from radcommons.client import CommonsClient

        client = CommonsClient.from_token_file(server, token_file)  # a bad token file fails before any work
    key = read_key_file(key_file)
    state = state_dir if state_dir is not None else default_state_dir(site)
    _private_folders(make_state_dir(state))
    request = ContributeRequest(
        src=src, clinical=tuple(clinical), site=site, project=project,
        context=DeidContext(key=key, site=site), state_dir=state, mapping=load_mapping(mapping),
        dataset=dataset_to_send(state, server, project, site, dataset) if server else dataset or default_dataset(site),
        workers=workers,
    )
    console = Console()
    err = Console(stderr=True)
    try:
        if client is not None:
            check_server(server, token_file)
            _check_grants(client.whoami(), site, project)
        elif server and token_file is not None:
            _dry_run_grants(server, token_file, site, project, err)
        plan = _with_bar(err, "de-identifying", lambda progress: prepare(request, deid_progress=progress))
        _show_plan(console, plan)
        if dry_run:
            _show_dry_run(console, plan)
            console.print("[bold]dry run[/]: nothing was sent", highlight=False)
            if plan.errors:  # a real run would stop: the dry run says so, and its exit code too
                console.print(f"[bold red]{len(plan.errors)} error(s)[/]: a real run would send nothing. Fix them "
                              f"(see {plan.report_markdown}) or send the valid parts with --allow-partial (what is "
                              "listed above).", highlight=False)
                raise typer.Exit(1)
            _check_something_leaves(console, plan, src)  # a real run would stop: the dry run says so too
            return
        if plan.errors and not allow_partial:
            console.print(f"[bold red]{len(plan.errors)} error(s)[/]: nothing was sent. Fix them (see "
                          f"{plan.report_markdown}) or send the valid parts with --allow-partial.", highlight=False)
            raise typer.Exit(1)
        _check_something_leaves(console, plan, src)
        assert client is not None
        _send(console, err, plan, client, server, allow_partial, workers)
    finally:
        if client is not None:
            client.close()


def _private_folders(state: Path) -> None:
    """The state directory's folders that name patients, readable by their owner only (the
    de-identification creates ``staging/`` so too): created here, before anything else makes
    them with the umask's mode."""
    for name in ("reports", "receipts"):
        (state / name).mkdir(mode=0o700, exist_ok=True)


def _check_grants(who: dict, site: str, project: str) -> None:
    """Refuse, before de-identifying, what the commons would refuse at the end: a project the
    token's user may not submit to, or another site than the user's (its pseudonyms would be
    made for the wrong site, and staged under them)."""
    name, role = who.get("name", "?"), who.get("role")
    if role not in ("admin", "curator", "contributor"):
        raise UserError(f"user {name!r} is a {role}, who may not submit data",
                        "ask an administrator for a contributor account")
    if role != "contributor":
        return  # a curator or administrator may submit to any project, for any site
    projects = list(who.get("projects") or [])
    if project not in projects:
        raise UserError(f"user {name!r} may not submit to project {project!r}",
                        f"projects granted to it: {', '.join(projects) or 'none'}; check --project, or ask an "
                        f"administrator (radcommons admin user grant {name} --project {project})")
    own = who.get("site_id")
    if own and own != site:
        raise UserError(f"user {name!r} submits for site {own}, not {site}",
                        f"give --site {own} (the pseudonyms are made for the site)")


def _dry_run_grants(server: str, token_file: Path, site: str, project: str, err: Console) -> None:
    """With --dry-run a commons is not needed: check the grants if it answers, else only say so."""
    from radcommons.client import CommonsClient

    try:
        with CommonsClient.from_token_file(server, token_file, retries=1, backoff=0.2, timeout=15) as probe:
            who = probe.whoami()
    except UserError as error:  # a CommonsError too
        err.print(f"[yellow]warning:[/] --project and --site not checked: the commons at {server} did not "
                  f"answer ({error.message})", highlight=False)
        return
    _check_grants(who, site, project)


def _check_something_leaves(console: Console, plan, src: Path) -> None:
    """A source with no DICOM (a mistyped folder, an export not yet written) committed an empty
    submission and exited 0: stop with what was found instead, unless clinical records go alone."""
    from radcommons.deid import REJECTED, WITHHELD

    leaving = plan.leaving()
    if leaving["files"]:
        return
    if any(leaving["clinical"].values()):
        console.print("[yellow]no image to send[/]: only the clinical records are sent", highlight=False)
        return
    counts = plan.deid.counts()
    console.print(f"[bold red]no DICOM file to send[/] under {src} ({counts[REJECTED]} file(s) rejected, "
                  f"{counts[WITHHELD]} withheld: see {plan.report_markdown}) and no clinical record: nothing "
                  "was sent. Check the folder (is the export finished?)", highlight=False)
    raise typer.Exit(1)


def _with_bar(console: Console, label: str, work):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


def _show_plan(console: Console, plan) -> None:
    from radcommons.deid import DEIDENTIFIED, REJECTED, WITHHELD

    counts = plan.deid.counts()
    table = Table(title="de-identification", title_justify="left")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    table.add_row("[green]de-identified[/]", str(counts[DEIDENTIFIED]))
    table.add_row("[yellow]withheld[/]", str(counts[WITHHELD]))
    table.add_row("[red]rejected[/]", str(counts[REJECTED]))
    console.print(table)
    if plan.deid.outputs_removed:
        from radcommons.deid.report import outputs_removed_line

        console.print(outputs_removed_line(plan.deid), highlight=False)
    not_sent = [o for o in plan.deid.outcomes if o.status in (WITHHELD, REJECTED)]
    if not_sent:
        detail = Table(title="files not sent", title_justify="left")
        detail.add_column("file", overflow="fold")
        detail.add_column("outcome")
        detail.add_column("reason", overflow="fold")
        for outcome in not_sent[:30]:
            colour = "yellow" if outcome.status == WITHHELD else "red"
            detail.add_row(outcome.input, f"[{colour}]{outcome.status}[/]", outcome.reason)
        console.print(detail)
        if len(not_sent) > 30:
            console.print(f"... and {len(not_sent) - 30} more (see the report)")
    issues = plan.conversion.issues
    if issues:
        table = Table(title="clinical data issues", title_justify="left")
        for name in ("severity", "file", "row", "field", "value", "problem", "fix"):
            table.add_column(name, overflow="fold")
        for issue in issues[:40]:
            colour = {"error": "red", "warning": "yellow"}.get(issue.severity, "cyan")
            table.add_row(f"[{colour}]{issue.severity}[/]", issue.file or "", str(issue.row or ""),
                          issue.column or "", issue.value or "", issue.message, issue.fix)
        console.print(table)
        if len(issues) > 40:
            console.print(f"... and {len(issues) - 40} more (see the report)")
    for uid, why in sorted(plan.held_back.items()):
        console.print(f"[yellow]held back[/] study {uid}: {why}", highlight=False)
    console.print(f"report (private): {plan.report_markdown}", highlight=False, soft_wrap=True)


def _show_dry_run(console: Console, plan) -> None:
    from radcommons.pipelines.contribute import sample

    leaving = plan.leaving()
    title = "what would leave the site" + (" (with --allow-partial)" if plan.errors else "")
    table = Table(title=title, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("studies", str(leaving["studies"]))
    table.add_row("files", str(leaving["files"]))
    table.add_row("bytes", f"{leaving['bytes']:,}")
    for node, count in leaving["clinical"].items():
        table.add_row(f"{node} records", str(count))
    console.print(table)
    console.print("[bold]studies and files[/] (de-identified UIDs; path in package, bytes, sha256):")
    for package in plan.packages:
        console.print(f"  study {package.study_uid}: {len(package.files)} file(s), {package.size:,} bytes",
                      highlight=False, soft_wrap=True)
        for item in package.files:
            console.print(f"    {item.path_in_package}  {item.size:,}  {item.sha256}", highlight=False,
                          soft_wrap=True)
    for node, rows in sample(plan).rows.items():
        console.print(f"[bold]{node}[/] (sample of {len(plan.clinical[node])}):", highlight=False)
        for row in rows:
            console.print_json(data=row)


def _send(console: Console, err: Console, plan, client, server: str, allow_partial: bool, workers: int) -> None:
    import threading

    from rich.filesize import decimal
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from radcommons.pipelines.contribute import send, study_statuses

    leaving = plan.leaving()
    lock = threading.Lock()  # the callbacks come from the upload threads
    sent = {"bytes": 0, "files": 0}
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err,
                  disable=not err.is_terminal) as bar:
        bytes_task = bar.add_task("bytes", total=leaving["bytes"], info="")
        files_task = bar.add_task("files", total=leaving["files"], info="")

        def on_bytes(n: int) -> None:
            with lock:
                sent["bytes"] += n
                bar.update(bytes_task, advance=n, info=f"{decimal(sent['bytes'])} of {decimal(leaving['bytes'])}")

        def on_file(item, outcome: str) -> None:
            with lock:
                sent["files"] += 1
                bar.update(files_task, advance=1, info=f"{sent['files']} of {leaving['files']}")

        delivery, receipt_path = send(
            plan, client, server=server, allow_partial=allow_partial, workers=workers,
            on_file=on_file, on_bytes=on_bytes,
        )
    stats = delivery.stats
    if delivery.committed_before:
        console.print(
            f"submission {delivery.submission.id} ({delivery.submission.dataset}) was committed before, with all of "
            "this: nothing was sent, and its receipt is saved again", highlight=False)
    else:
        console.print(
            f"submission {delivery.submission.id} ({delivery.submission.dataset}): {stats.sent} file(s) sent, "
            f"{stats.confirmed_before} already confirmed, {stats.already_on_server} already on the server",
            highlight=False,
        )
    table = Table(title="receipt", title_justify="left")
    table.add_column("what")
    table.add_column("status")
    table.add_column("count", justify="right")
    for status, count in sorted(study_statuses(delivery).items()):
        table.add_row("studies", status, str(count))
    clinical = delivery.receipt.counts.get("clinical", {})
    for status in ("accepted", "rejected"):
        table.add_row("clinical rows", status, str(clinical.get(status, 0)))
    console.print(table)
    rejected = [s for s in delivery.receipt.studies if s.get("status") not in ("accepted", "new_version", "unchanged")]
    for study in rejected:
        reasons = "; ".join(sorted({str(f.get("reason")) for f in study.get("files", []) if f.get("reason")}))
        console.print(f"[yellow]{study.get('status')}[/] study {study.get('study_uid')}: {reasons}", highlight=False)
    for row in delivery.receipt.clinical:
        if row.get("status") == "rejected":
            console.print(f"[red]rejected[/] {row.get('node')} {row.get('submitter_id')}: "
                          f"{'; '.join(map(str, row.get('problems', [])))}", highlight=False)
    console.print(f"receipt (private): {receipt_path}", highlight=False, soft_wrap=True)
