"""``radcommons serve``: run the commons server (FastAPI on uvicorn)."""

from __future__ import annotations

from pathlib import Path

import typer

from radcommons.cli.context import open_index
from radcommons.errors import UserError
from radcommons.listening import bound_socket

#: uvicorn's log levels.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Server state (upload spools); default: the server_state_dir setting."
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: critical, error, warning, info, debug or trace."),
) -> None:
    """Serve the submission API (OpenAPI docs at /docs) on the configured index and object store.

    The index must be migrated first (radcommons db upgrade). Tokens come from
    `radcommons admin token create`.

    Example: radcommons serve --host 127.0.0.1 --port 8000
    """
    if log_level not in LOG_LEVELS:
        raise UserError(f"unknown --log-level {log_level!r}", f"choose one of: {', '.join(LOG_LEVELS)}")
    from radcommons.settings import load_settings
    import uvicorn

    from radcommons.pipelines.indexing import finish_abandoned
    from radcommons.server import create_app
    from radcommons.server.log_redaction import log_config

    settings = load_settings()
    engine = open_index(settings.database_url)  # refuses an unmigrated index, with the fix
    try:
        finish_abandoned(engine)  # what killed ingests indexed but never derived
    finally:
        engine.dispose()
    app = create_app(settings, state_dir=state_dir or settings.server_state_dir)
    # Tokens travel in a header or the session cookie, which are never logged; one sent in a
    # query string (refused) is redacted from every log line (server.log_redaction).
    # httptools (C) parses HTTP instead of h11 (pure Python), which took 40% of the server's
    # active time while files were uploaded.
    # Bound here, before uvicorn, so that a port in use or a host that is not this machine's is
    # a message with what to do (uvicorn logs it and exits 3).
    sock = bound_socket(host, port)
    _allow_open_files()
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                            http="httptools", log_config=log_config())
    uvicorn.Server(config).run(sockets=[sock])


def _allow_open_files() -> None:
    """Raise this process's limit of open files to its hard limit (at most 65,536).

    An upload keeps each file of its request open, and locked, until the file is in the store
    (up to 1,000 files a batch), and several requests run at once: the usual soft limit of
    1,024 would run out.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
