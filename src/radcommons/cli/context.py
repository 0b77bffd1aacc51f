"""What commands open from the settings: the index and the object store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from radcommons.errors import UserError

if TYPE_CHECKING:  # imported when used: every command pays for what the CLI imports at start
    from sqlalchemy import Engine

    from radcommons.store.objects import ObjectStore

STORE_HELP = "Object store URL (a folder, s3://bucket/prefix, memory://...); default: the object_store_url setting."
DATABASE_HELP = "Database URL (default: the database_url setting, RADCOMMONS_DATABASE_URL)."


def open_store(url: str | None = None, *, existing: bool = False) -> ObjectStore:
    """The store named by ``url``, else the configured one (with its storage options).

    ``existing``: for a command that only reads or removes, a local store whose folder does not
    exist is an error (a wrong path would otherwise look like an empty store)."""
    from radcommons.settings import load_settings
    from radcommons.store.objects import ObjectStore

    settings = load_settings()
    store = ObjectStore(url or settings.object_store_url, **settings.object_store_options)
    if existing and store.missing_folder():
        raise UserError(f"no object store at {store.url}: the folder does not exist",
                        "check --store (or the object_store_url setting); objects put creates a store")
    return store


def check_server(server: str, token_file, *, refused_only: bool = False) -> None:
    """Fail fast (before de-identifying or listening) when the commons refuses the token, or
    (unless ``refused_only``: a gateway spools while the commons is away) does not answer."""
    from radcommons.client import CommonsClient, CommonsError

    try:
        with CommonsClient.from_token_file(server, token_file, retries=2, backoff=0.2, timeout=15) as probe:
            probe.whoami()
    except CommonsError as error:
        if refused_only and not 400 <= error.status < 500:
            from rich.console import Console

            Console(stderr=True).print(f"[yellow]warning:[/] the commons at {server} did not answer "
                                       f"({error.message}): studies are spooled and sent once it does",
                                       highlight=False)
            return
        raise UserError(f"the commons at {server} refused or did not answer: {error.message}",
                        error.hint or "check --server and the network, and that your token is valid") from error


def database_url(url: str | None = None) -> str:
    """``url``, else the configured database URL."""
    from radcommons.settings import load_settings

    return url or load_settings().database_url


def open_index(url: str | None = None) -> Engine:
    """An engine on the index, which must be migrated to the newest schema."""
    from radcommons.settings import mask_url_password
    from radcommons.store.index import current_revision, head_revision, make_engine

    target = database_url(url)
    revision = current_revision(target)
    if revision is None:
        # Most often the setting is not the commons' index (a new shell without the export, a
        # mistyped path): 'db upgrade' alone would make an empty index there.
        raise UserError(
            f"no index at {mask_url_password(target)}: the database is missing or was never migrated",
            "check that RADCOMMONS_DATABASE_URL names the commons' index (radcommons config show); "
            "to create a new index there: radcommons db upgrade",
        )
    if revision != head_revision():
        raise UserError(
            f"the index at {mask_url_password(target)} is not at the newest schema",
            "run: radcommons db upgrade",
        )
    return make_engine(target)


@contextmanager
def opened_index(url: str | None = None) -> Iterator[Engine]:
    """:func:`open_index` for the length of a ``with`` block, its connections closed after."""
    engine = open_index(url)
    try:
        yield engine
    finally:
        engine.dispose()
