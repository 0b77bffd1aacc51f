"""``radcommons admin``: users, their projects and their tokens, and submissions never committed (commons side)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from radcommons.cli.context import DATABASE_HELP, opened_index
from radcommons.errors import UserError
from radcommons.roles import DEFAULT_TOKEN_DAYS, ROLES

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from radcommons.server.uploads import UploadSpool

app = typer.Typer(
    no_args_is_help=True,
    help="Manage the commons' users, project grants and API tokens.\n\n"
    "Example: radcommons admin user add site-a-uploader --role contributor --project Open-A1 --site SITE_A",
)
user_app = typer.Typer(no_args_is_help=True, help="Users and their projects.\n\n"
                       "Example: radcommons admin user list")
token_app = typer.Typer(no_args_is_help=True, help="API tokens (only their hash is stored).\n\n"
                        "Example: radcommons admin token create site-a-uploader --expires-days 30")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")

_URL = typer.Option(None, "--url", help=DATABASE_HELP)


def _when(value: object) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"  # type: ignore[attr-defined]


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name (unique), e.g. site-a-uploader."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    project: list[str] = typer.Option([], "--project", help="Project the user may submit to (repeatable)."),
    site: str | None = typer.Option(None, "--site", help="The contributor's site; it may submit only for it."),
    url: str | None = _URL,
) -> None:
    """Create a user with a role, project grants and a site.

    Example: radcommons admin user add site-a-uploader --role contributor --project Open-A1 --site SITE_A
    """
    from radcommons.store.index.accounts import add_user

    with opened_index(url) as engine:
        user = add_user(engine, name, role, site_id=site, projects=project)
    typer.echo(f"added user {user.name} ({user.role}, site {user.site_id or '-'}, "
               f"projects {', '.join(user.projects) or '-'})")


@user_app.command("grant")
def user_grant(
    name: str = typer.Argument(..., help="User name."),
    project: list[str] = typer.Option(..., "--project", help="Project to grant (repeatable)."),
    revoke: bool = typer.Option(False, "--revoke", help="Take the projects away instead."),
    url: str | None = _URL,
) -> None:
    """Grant projects to a user (or take them away with --revoke).

    Example: radcommons admin user grant site-a-uploader --project Open-A2
    """
    from radcommons.store.index.accounts import grant_projects

    with opened_index(url) as engine:
        user = grant_projects(engine, name, project, revoke=revoke)
    typer.echo(f"user {user.name} projects: {', '.join(user.projects) or '-'}")


def _set_disabled(name: str, disabled: bool, url: str | None) -> None:
    from radcommons.store.index.accounts import set_disabled

    with opened_index(url) as engine:
        user = set_disabled(engine, name, disabled)
    since = f" since {_when(user.disabled_at)}" if user.disabled_at else ""
    typer.echo(f"user {user.name} ({user.role}) is {user.state}{since}")


@user_app.command("disable")
def user_disable(name: str = typer.Argument(..., help="User name (see: admin user list)."),
                 url: str | None = _URL) -> None:
    """Disable a user at once: every request with their tokens gets 401 account_disabled (API, DICOMweb, explorer).

    The account, its grants, tokens and cohorts are kept; enable it again with: admin user enable NAME.

    Example: radcommons admin user disable alice
    """
    _set_disabled(name, True, url)


@user_app.command("enable")
def user_enable(name: str = typer.Argument(..., help="User name (see: admin user list)."),
                url: str | None = _URL) -> None:
    """Enable a disabled user again: their tokens that have not expired or been revoked work again.

    Example: radcommons admin user enable alice
    """
    _set_disabled(name, False, url)


@user_app.command("list")
def user_list(url: str | None = _URL) -> None:
    """List users, roles, sites, projects and whether each is enabled or disabled.

    Example: radcommons admin user list
    """
    from radcommons.store.index.accounts import list_users

    with opened_index(url) as engine:
        users = list_users(engine)
    table = Table(title="users")
    for column in ("name", "role", "state", "site", "projects", "created"):
        table.add_column(column, overflow="fold")  # a narrow or piped console wraps, never cuts with '…'
    for user in users:
        table.add_row(user.name, user.role, user.state, user.site_id or "-", ", ".join(user.projects) or "-",
                      _when(user.created_at))
    Console(soft_wrap=True).print(table)


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="The user the token acts as."),
    expires_days: float = typer.Option(DEFAULT_TOKEN_DAYS, "--expires-days", help="Days until it expires."),
    label: str | None = typer.Option(None, "--label", help="A note, e.g. where the token is used."),
    url: str | None = _URL,
) -> None:
    """Make an API token and print it ONCE (only its hash is stored): save it in a file (chmod 600).

    Example: radcommons admin token create site-a-uploader --expires-days 30 > var/secrets/commons.token
    """
    from radcommons.store.index.accounts import create_token

    with opened_index(url) as engine:
        token, info = create_token(engine, name, expires_days=expires_days, label=label)
    Console(stderr=True, soft_wrap=True).print(
        f"token {info.id} for {info.user}, expires {_when(info.expires_at)}; it is shown only now", highlight=False)
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="The token's id (see: admin token list)."),
                 url: str | None = _URL) -> None:
    """Revoke a token at once; requests with it then get 401 token_revoked.

    Example: radcommons admin token revoke 3
    """
    from radcommons.store.index.accounts import revoke_token

    with opened_index(url) as engine:
        info = revoke_token(engine, token_id)
    typer.echo(f"token {info.id} of {info.user} revoked at {_when(info.revoked_at)}")


@token_app.command("list")
def token_list(user: str | None = typer.Option(None, "--user", help="Only this user's tokens."),
               url: str | None = _URL) -> None:
    """List tokens (ids, users, states, dates; never the secrets).

    Example: radcommons admin token list --user site-a-uploader
    """
    from radcommons.store.index.accounts import list_tokens

    with opened_index(url) as engine:
        tokens = list_tokens(engine, user)
    table = Table(title="tokens")
    for column in ("id", "user", "state", "label", "created", "expires", "last used"):
        table.add_column(column, overflow="fold")  # a narrow or piped console wraps, never cuts with '…'
    for info in tokens:
        table.add_row(str(info.id), info.user, info.state, info.label or "-", _when(info.created_at),
                      _when(info.expires_at), _when(info.last_used_at))
    Console(soft_wrap=True).print(table)


project_app = typer.Typer(no_args_is_help=True, help="Projects, their availability and grants.\n\n"
                          "Example: radcommons admin project add Restricted-R1 --availability restricted")
app.add_typer(project_app, name="project")


@project_app.command("add")
def project_add(
    name: str = typer.Argument(..., help="Project submitter_id, e.g. Open-A1."),
    availability: str = typer.Option("open", "--availability", help="open, restricted or sequestered."),
    url: str | None = _URL,
) -> None:
    """Create a project (or change its availability): open, restricted (grant needed) or sequestered.

    Example: radcommons admin project add Restricted-R1 --availability restricted
    """
    from radcommons.store.index.projects import add_project

    with opened_index(url) as engine:
        project = add_project(engine, name, availability)
    typer.echo(f"project {project['submitter_id']}: {project['availability']}, {project['cases']} cases")


@project_app.command("grant")
def project_grant(
    user: str = typer.Argument(..., help="User name."),
    project: str = typer.Argument(..., help="Project to grant, e.g. Restricted-R1."),
    revoke: bool = typer.Option(False, "--revoke", help="Take the grant away instead."),
    url: str | None = _URL,
) -> None:
    """Let a user read a restricted project (sequestered projects stay closed to researchers).

    Example: radcommons admin project grant alice Restricted-R1
    """
    from radcommons.store.index.accounts import grant_projects

    with opened_index(url) as engine:
        found = grant_projects(engine, user, [project], revoke=revoke, existing=True)
    typer.echo(f"user {found.name} projects: {', '.join(found.projects) or '-'}")


@project_app.command("list")
def project_list(url: str | None = _URL) -> None:
    """List projects with availability and number of cases.

    Example: radcommons admin project list
    """
    from radcommons.store.index.projects import list_projects

    with opened_index(url) as engine:
        projects = list_projects(engine)
    table = Table(title="projects")
    for column in ("project", "availability", "cases"):
        table.add_column(column, overflow="fold")  # a narrow or piped console wraps, never cuts with '…'
    for p in projects:
        table.add_row(p["submitter_id"], p["availability"] or "-", str(p["cases"]))
    Console(soft_wrap=True).print(table)


@app.command("audit")
def audit(
    user: str | None = typer.Option(None, "--user", help="Only this user's events."),
    since: float | None = typer.Option(None, "--since", help="Only the last DAYS days."),
    action: str | None = typer.Option(None, "--action", help="An action (research.query) or a prefix ending in '.'."),
    limit: int = typer.Option(1000, "--limit", help="At most this many events (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
    url: str | None = _URL,
) -> None:
    """Show the append-only audit log: who did what, when, from where, to how many records.

    Example: radcommons admin audit --user alice --since 7 --action research.
    """
    import json

    from radcommons.store.index.audit import search_events

    with opened_index(url) as engine:
        events = search_events(engine, user=user, since_days=since, action=action, limit=limit)
    if as_json:
        for event in events:
            typer.echo(json.dumps(event, default=str))
        return
    if not events:  # an empty table read as "nobody did anything", whatever the filters asked
        filters = [f"{name} {value}" for name, value in (("--user", user), ("--since", since), ("--action", action))
                   if value is not None]
        typer.echo(f"no audit events match {', '.join(filters)}" if filters else "the audit log is empty")
        if user is not None:
            typer.echo("hint: --user is an event's actor as recorded (a user name, or admin-cli, ingest ...); "
                       "radcommons admin user list shows the users")
        return
    table = Table(title="audit events (newest first)")
    for column in ("at", "actor", "action", "target", "records", "client", "ok"):
        table.add_column(column, overflow="fold")  # a narrow or piped console wraps, never cuts with '…'
    for e in events:
        table.add_row(e["at"][:19], e["actor"] or "-", e["action"], e["target"] or "-",
                      "-" if e["records"] is None else str(e["records"]), e["client"] or "-",
                      "yes" if e["success"] else "no")
    Console(soft_wrap=True).print(table)


submission_app = typer.Typer(no_args_is_help=True, help="Submissions: find and end the ones never committed.\n\n"
                             "Example: radcommons admin submission list --open --older-than 30")
app.add_typer(submission_app, name="submission")

_STATE_DIR = typer.Option(None, "--state-dir", help="The server's state folder, whose uploads/ holds the upload "
                          "spools (as given to radcommons serve); default: the server_state_dir setting.")
_OLDER_THAN = typer.Option(None, "--older-than", min=0, metavar="DAYS",
                           help="Only submissions whose last activity is more than DAYS days old.")


def _upload_spool(state_dir: Path | None) -> UploadSpool:
    """The server's upload spool under ``state_dir`` (default: the server_state_dir setting). A
    folder without uploads/ is refused: a mistyped path would show every spool as empty. Opened
    without the object store: listing and abandoning read and remove spool files only, and an
    unreachable store must not stop an operator from ending a submission."""
    from radcommons.server.uploads import UploadSpool
    from radcommons.settings import load_settings

    folder = Path(state_dir or load_settings().server_state_dir) / "uploads"
    if not folder.is_dir():
        raise UserError(f"no upload spool at {folder}: the folder does not exist",
                        "give the server's state folder with --state-dir (what radcommons serve was given, "
                        "or the server_state_dir setting)")
    return UploadSpool(folder)


def _listed(engine: Engine, spool: UploadSpool, *, open_only: bool, older_than: float | None,
            ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    from radcommons.pipelines.submission import operator_submissions

    idle = _dt.timedelta(days=older_than) if older_than is not None else None
    return operator_submissions(engine, spool.usage, open_only=open_only, idle_for=idle, ids=ids)


def _submission_table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    table = Table(title=title)
    for column in ("id", "project", "site", "dataset", "state", "created", "last activity", "files", "bytes",
                   "spooled bytes"):
        table.add_column(column, overflow="fold")  # a narrow or piped console wraps, never cuts with '…'
    for s in rows:
        table.add_row(str(s["id"]), s["project"], s["site_id"], s["dataset"], s["status"], s["created_at"][:19],
                      s["last_activity"][:19], str(s["files_uploaded"]), str(s["bytes_uploaded"]),
                      str(s["bytes_spooled"]))
    Console(soft_wrap=True).print(table)


@submission_app.command("list")
def submission_list(
    open_only: bool = typer.Option(False, "--open", help="Only open submissions (not committed or abandoned)."),
    older_than: float | None = _OLDER_THAN,
    state_dir: Path | None = _STATE_DIR,
    url: str | None = _URL,
) -> None:
    """List submissions, oldest first: project, site, dataset, state, created, last activity, files
    uploaded and their bytes, and bytes still spooled (partial uploads).

    Last activity is the newest of its creation, its audit events (uploads, manifests, clinical
    posts) and its newest spool file.

    Example: radcommons admin submission list --open --older-than 30
    """
    spool = _upload_spool(state_dir)
    with opened_index(url) as engine:
        rows = _listed(engine, spool, open_only=open_only, older_than=older_than)
    if not rows:
        typer.echo("no submissions match" if open_only or older_than is not None else "no submissions")
        return
    _submission_table("submissions (oldest first)", rows)


@submission_app.command("abandon")
def submission_abandon(
    ids: list[int] | None = typer.Argument(None, help="Submission ids (see: admin submission list --open).",
                                           show_default=False),
    older_than: float | None = _OLDER_THAN,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    state_dir: Path | None = _STATE_DIR,
    url: str | None = _URL,
) -> None:
    """End open submissions that will never be committed: their spool files are removed, later
    uploads or a commit to them get 409 submission_closed, and the objects only they uploaded are
    then listed by radcommons objects unreferenced (after its grace period). Audited as submission.abandon.

    Give ids, or --older-than DAYS for every open submission idle that long. A committed
    submission cannot be abandoned.

    Example: radcommons admin submission abandon --older-than 30 --yes
    """
    from radcommons.pipelines.submission import SubmissionError, abandon_submission

    if bool(ids) == (older_than is not None):
        raise UserError("give submission ids or --older-than DAYS (one of them)",
                        "e.g. radcommons admin submission abandon 12 13, or --older-than 30")
    spool = _upload_spool(state_dir)
    with opened_index(url) as engine:
        if ids:
            chosen = _listed(engine, spool, open_only=False, older_than=None, ids=ids)
            missing = sorted(set(ids) - {s["id"] for s in chosen})
            if missing:
                raise UserError(f"no submission {', '.join(map(str, missing))}",
                                "list them with: radcommons admin submission list")
        else:
            chosen = _listed(engine, spool, open_only=True, older_than=older_than)
            if not chosen:
                typer.echo(f"no open submission idle for more than {older_than:g} days")
                return
        _submission_table("to abandon", chosen)
        if not yes and not typer.confirm(f"abandon {len(chosen)} submission(s)?", default=False):
            raise typer.Exit(1)
        if older_than is not None:  # read again: one may have been sent to while the question waited
            still = {s["id"] for s in _listed(engine, spool, open_only=True, older_than=older_than,
                                              ids=[s["id"] for s in chosen])}
            for s in chosen:
                if s["id"] not in still:
                    typer.echo(f"kept submission {s['id']}: it was active meanwhile", err=True)
            chosen = [s for s in chosen if s["id"] in still]
        refused = 0
        for s in chosen:
            try:
                abandon_submission(engine, s["id"])
            except SubmissionError as error:
                refused += 1
                typer.echo(f"submission {s['id']}: {error.message}\nhint: {error.hint}", err=True)
                continue
            spool.discard(s["id"])
            typer.echo(f"abandoned submission {s['id']} ({s['project']}, {s['site_id']}, {s['dataset']}): "
                       f"{s['files_uploaded']} file(s) uploaded, {s['bytes_spooled']} spooled bytes removed")
    if refused:
        raise typer.Exit(1)
