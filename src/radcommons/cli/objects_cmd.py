"""``radcommons objects``: put, get, verify and list files in the content-addressed object store."""

from __future__ import annotations

from pathlib import Path

import typer

from radcommons.errors import UserError
from radcommons.inputs import stat_input
from radcommons.cli.context import DATABASE_HELP, STORE_HELP, opened_index, open_store

app = typer.Typer(
    help="Put, get, verify and list files in the content-addressed (SHA-256) object store.\n\n"
    "Example: radcommons objects put scans/*.dcm",
    no_args_is_help=True,
)


@app.command("put")
def put(
    files: list[Path] = typer.Argument(..., help="Files to store.", show_default=False),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP, show_default=False),
) -> None:
    """Store files; print each one's digest, size and path.

    A file whose content is already stored is not written again ("already stored").

    Example: radcommons objects put image1.dcm image2.dcm --store s3://commons/objects
    """
    # Check every argument first, so a typo does not leave a half-done batch.
    for path in files:
        if path.is_dir():
            raise UserError(
                f"{path} is a directory, not a file",
                hint=f"give the files inside it, e.g. radcommons objects put {path}/*",
            )
        if not path.exists():
            raise UserError(f"file not found: {path}", hint="check the path")
        problem = stat_input(path)
        if isinstance(problem, str):
            raise UserError(f"{path}: {problem}", hint="give regular files")
    object_store = open_store(store)
    for path in files:
        stored = object_store.put_file(path)
        note = "" if stored.created else "  (already stored)"
        typer.echo(f"{stored.digest}  {stored.size}  {path}{note}")


@app.command("get")
def get(
    digest: str = typer.Argument(..., help="SHA-256 digest of the object (64 lowercase hex).", show_default=False),
    dest: Path = typer.Argument(..., help="File to write (or an existing folder).", show_default=False),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP, show_default=False),
) -> None:
    """Copy a stored object to a local file, verifying its digest; DEST appears only if it is correct.

    Example: radcommons objects get 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 out/image.dcm
    """
    from radcommons.store.objects import validate_digest

    validate_digest(digest)
    written = open_store(store, existing=True).copy_to(digest, dest)
    typer.echo(str(written))


@app.command("verify")
def verify(
    digests: list[str] | None = typer.Argument(
        None, help="Digests to check; all stored objects when none are given.", show_default=False
    ),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP, show_default=False),
) -> None:
    """Re-hash stored objects; list any that are corrupt or missing and exit 1 if there are some.

    Example: radcommons objects verify --store s3://commons/objects
    """
    from radcommons.store.objects import ObjectNotFoundError, validate_digest
    from radcommons.settings import mask_url_password

    wanted = [validate_digest(digest) for digest in digests or []]
    object_store = open_store(store, existing=True)
    to_check = wanted or list(object_store.iter_digests())
    bad = 0
    for digest in to_check:
        try:
            ok = object_store.verify(digest)
        except ObjectNotFoundError:
            typer.echo(f"MISSING  {digest}")
            bad += 1
            continue
        if not ok:
            typer.echo(f"CORRUPT  {digest}  {object_store.url_for(digest)}")
            bad += 1
    where = mask_url_password(object_store.url)
    typer.echo(f"checked {len(to_check)} object(s) in {where}: {bad} bad", err=True)
    if bad:
        typer.echo(
            "hint: delete each bad object (radcommons objects rm DIGEST) and put the original again",
            err=True,
        )
        raise typer.Exit(1)


@app.command("ls")
def ls(
    store: str | None = typer.Option(None, "--store", help=STORE_HELP, show_default=False),
) -> None:
    """List stored objects: digest and size, one per line, in digest order.

    Example: radcommons objects ls --store memory://demo
    """
    for item in open_store(store, existing=True).iter_objects():
        typer.echo(f"{item.digest}  {item.size}")


@app.command("rm")
def rm(
    digests: list[str] = typer.Argument(..., help="Digests of the objects to delete.", show_default=False),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP, show_default=False),
) -> None:
    """Delete stored objects (for example a corrupt copy, before putting the original again).

    Example: radcommons objects rm 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
    """
    from radcommons.store.objects import validate_digest

    wanted = [validate_digest(digest) for digest in digests]
    object_store = open_store(store, existing=True)
    missing = 0
    for digest in wanted:
        if object_store.delete(digest):
            typer.echo(f"deleted  {digest}")
        else:
            typer.echo(f"absent   {digest}")
            missing += 1
    if missing:
        raise typer.Exit(1)


@app.command("unreferenced")
def unreferenced(
    older_than: float = typer.Option(
        24.0, "--older-than", min=0, metavar="HOURS",
        help="Only objects last written more than this many hours ago: an upload, an ingest or the "
        "gateway stores an object before the index names it.",
    ),
    delete: bool = typer.Option(False, "--delete", help="Remove the objects listed (each checked again first)."),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP, show_default=False),
    url: str | None = typer.Option(None, "--url", help=DATABASE_HELP, show_default=False),
) -> None:
    """List the stored objects that nothing in the index names: digest, size and age in hours.

    Named means: an indexed instance, a held quarantine entry, a study version, a frozen cohort's
    pinned file, or a file of an open submission. What is left was stored and never recorded (a
    crash between the two, a failed batch, a database error) or no longer needed (a rejected file,
    a deleted quarantine entry). With --delete each is checked again under the index's write lock
    and removed.

    Example: radcommons objects unreferenced --older-than 48 --delete --store s3://commons/objects
    """
    import datetime as _dt

    from radcommons.pipelines.submission import discard_unrecorded_objects, unreferenced_objects
    from radcommons.settings import mask_url_password
    from radcommons.store.index.accounts import utcnow

    object_store = open_store(store, existing=True)
    with opened_index(url) as engine:
        found = unreferenced_objects(engine, object_store, _dt.timedelta(hours=older_than))
        now = utcnow()
        for item in found:
            age = (now - item.modified).total_seconds() / 3600 if item.modified else 0.0
            typer.echo(f"{item.digest}  {item.size}  {age:.1f}h")
        total = sum(item.size for item in found)
        where = mask_url_password(object_store.url)
        typer.echo(f"{len(found)} unreferenced object(s) older than {older_than:g} h in {where}: {total} bytes",
                   err=True)
        if not delete or not found:
            if found:
                typer.echo("hint: add --delete to remove them", err=True)
            return
        removed = set(discard_unrecorded_objects(engine, object_store, [item.digest for item in found]))
    for item in found:
        typer.echo(f"{'deleted' if item.digest in removed else 'kept   '}  {item.digest}")
    freed = sum(item.size for item in found if item.digest in removed)
    typer.echo(f"deleted {len(removed)} object(s), {freed} bytes; kept {len(found) - len(removed)} "
               "(named meanwhile, or already gone)", err=True)
