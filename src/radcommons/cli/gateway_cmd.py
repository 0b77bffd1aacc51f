"""``radcommons gateway``: a DICOM (DIMSE) receiver that de-identifies on arrival and sends complete studies."""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path

import typer
from rich.console import Console

from radcommons.errors import UserError
from radcommons.parallel import MAX_WORKERS
from radcommons.roles import check_site_id


#: An Application Entity title (PS3.5 Table 6.2-1): 1 to 16 characters of the default repertoire,
#: backslash and control characters excluded.
AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")


def command(
    ae_title: str = typer.Option("RADCOMMONS", "--ae-title", help="The gateway's AE title (what the PACS calls)."),
    port: int = typer.Option(11112, "--port", help="TCP port to listen on.", min=1, max=65535),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on."),
    server: str = typer.Option("", "--server", help="Commons URL; without it studies are only spooled.",
                               show_default=False),
    token_file: Path | None = typer.Option(None, "--token-file", help="File holding the upload token (chmod 600).",
                                           show_default=False),
    site: str = typer.Option(..., "--site", help="Site identifier (namespaces the pseudonyms).", show_default=False),
    project: str = typer.Option(..., "--project", help="Project the studies go to.", show_default=False),
    key_file: Path = typer.Option(Path("var/secrets/deid.key"), "--key-file",
                                  help="The site's de-identification key (radcommons keygen)."),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="Private state (registry, spool, receipts); "
                                          "default var/deid-state/SITE.", show_default=False),
    quiet_seconds: float = typer.Option(30.0, "--quiet-seconds", help="A study is complete after this many "
                                        "seconds without a new instance.", min=0.0, max=86400.0),
    check_seconds: float = typer.Option(2.0, "--check-seconds", help="How often the spool is checked for complete "
                                        "studies; after a failed send the gateway waits twice this, doubled with "
                                        "each failure (5 minutes at most).", min=0.5, max=300.0),
    workers: int = typer.Option(4, "--workers", help="Parallel uploads (threads).", min=1,
                                 max=MAX_WORKERS),
    allow: list[str] = typer.Option([], "--allow", help="A peer that may send (repeat for more): its calling "
                                    "AE title (PACS1), IP address or network (10.1.0.0/16), or both "
                                    "(PACS1@10.1.2.3); others are refused (status 0124H). Default: any peer.",
                                    show_default=False),
) -> None:
    """Receive studies from a PACS (C-ECHO, C-STORE), de-identify each instance on arrival, spool it durably,
    and send each study to the commons once it is complete (no new instance for --quiet-seconds).

    The C-STORE success is returned only after the de-identified instance is safely on disk
    (STATE/gateway/spool); a restart loses nothing acknowledged. An instance sent again (same UIDs)
    replaces the earlier copy, and the log says so: the latest copy is sent. Each study is declared
    whole, with the instances the commons holds of it already (sent by contribute or an earlier round:
    not sent again). Sent studies move to STATE/gateway/done, receipts to STATE/receipts. Stop with Ctrl-C.

    Example: radcommons gateway --ae-title RCGW --port 11112 --server https://commons.example.org --token-file var/secrets/commons.token --site SITE_A --project Open-A1 --key-file var/secrets/deid.key
    """
    from radcommons.deid import DeidContext, default_state_dir, make_state_dir, read_key_file
    from radcommons.durable import folder_held
    from radcommons.pipelines.gateway import SEND_BACKOFF, Gateway, GatewayConfig, Peer, commons_sender

    site = check_site_id(site)
    if not AE_TITLE.fullmatch(ae_title.strip()):  # PS3.5 Table 6.2-1, AE: no backslash, no control characters
        raise UserError(f"invalid AE title {ae_title!r}",
                        "use 1 to 16 letters, digits, spaces or punctuation other than a backslash")
    allowed = []
    for text in allow:
        try:
            allowed.append(Peer.parse(text))
        except ValueError as error:
            raise UserError(f"--allow {text!r}: {error}",
                            "give an AE title (PACS1), an IP address or network (10.1.0.0/16), or PACS1@10.1.2.3") from None
    key = read_key_file(key_file)
    state = make_state_dir(state_dir if state_dir is not None else default_state_dir(site))
    console = Console(stderr=True)
    sender = None
    client = None
    if server:
        if token_file is None:
            raise UserError("--token-file is required with --server", "give the file holding your upload token")
        from radcommons.cli.context import check_server
        from radcommons.client import CommonsClient

        check_server(server, token_file, refused_only=True)  # a wrong token: said now, not at the first study
        client = CommonsClient.from_token_file(server, token_file, backoff=SEND_BACKOFF)
        sender = commons_sender(client, state, server=server, project=project, site=site, workers=workers)
    else:
        console.print("[yellow]no --server: studies are de-identified and spooled, not sent[/]")

    def show(name: str, fields: dict) -> None:
        if name in ("stored",):
            return
        # the accession number of a refused instance stays in the private event log (events.jsonl)
        details = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "accession_number")
        console.print(f"{name}: {details}", highlight=False, soft_wrap=True)

    config = GatewayConfig(ae_title=ae_title.strip(), port=port, host=host,
                           context=DeidContext(key=key, site=site), state_dir=state, quiet_seconds=quiet_seconds,
                           check_seconds=check_seconds, allowed=tuple(allowed))
    if not allowed:
        console.print("[yellow]no --allow: any peer that reaches this port and calls "
                      f"{config.ae_title} may send studies (restrict it with --allow)[/]")
    # two gateways on one spool sent each other's studies and failed on the files the other moved
    with folder_held(config.root, user="another gateway",
                     hint="stop it first, or give this gateway a --state-dir of its own"):
        gateway = Gateway(config, sender, on_event=show)
        stopped = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopped.set())
        gateway.start()
        console.print(f"listening as {config.ae_title} on {host}:{port}; spool {config.root / 'spool'}", highlight=False)
        try:
            # With a timeout: the signal may reach another thread (the listener's), and a wait
            # without one never returns to run the handler: Ctrl-C and SIGTERM were lost.
            while not stopped.wait(0.5):
                pass
        finally:
            gateway.stop()
            if client is not None:
                client.close()
            console.print("stopped")
