"""Bounce commands: bounces serve, ingest, export. I/O: network, files, database, terminal."""

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import (
    CsvOrJsonl,
    ListenHost,
    LogFormat,
    app,
    err,
    fail,
    open_store,
    out,
    write_records,
)

# The bounce machinery and the database are imported inside each command, so that
# `herald --help` starts without them (see cli/common.py).
MAX_BYTES = 10 * 1024 * 1024  # the receiver's default limit (bounces/receiver.py)

bounces_app = typer.Typer(
    help="Delivery reports that come back to the return path.", no_args_is_help=True
)
app.add_typer(bounces_app, name="bounces")
EXPORT_FIELDS = ("campaign", "user_id", "address_hash", "status", "reason", "bounced_at")


@bounces_app.command("serve")
def serve_command(
    host: ListenHost = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 2525,
    domain: Annotated[
        list[str] | None,
        typer.Option(help="Bounce domain to accept (default: the campaigns' return paths)."),
    ] = None,
    lmtp: Annotated[bool, typer.Option(help="Speak LMTP instead of SMTP.")] = False,
    max_size: Annotated[int, typer.Option(min=1024, help="Largest message, in bytes.")] = MAX_BYTES,
    log_format: Annotated[LogFormat, typer.Option()] = LogFormat.PLAIN,
) -> None:
    """Receive DSNs and abuse reports by SMTP or LMTP, from the MTA the bounce domain
    routes to; runs until interrupted."""
    import asyncio

    from engine import logs
    from engine.bounces.processing import BounceProcessor, bounce_domains
    from engine.bounces.receiver import BounceHandler, start_receiver
    from engine.delivery.tokens import Keys

    logs.setup(log_format.value)
    settings, engine = open_store()
    domains = set(domain or ()) or bounce_domains(engine)
    if not domains:
        fail("no bounce domain: no launched campaign has a sender.return_path; pass --domain")
    processor = BounceProcessor(engine, Keys(settings.secret))
    handler = BounceHandler(processor, domain or None)  # None: follows launched campaigns

    async def run() -> None:
        try:
            server = await start_receiver(handler, host, port, lmtp=lmtp, max_bytes=max_size)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        err.print(
            f"receiving bounces for {', '.join(sorted(domains))} on {host}:{port} "
            f"({'LMTP' if lmtp else 'SMTP'})",
            markup=False,
        )
        async with server:
            await stop.wait()

    try:
        asyncio.run(run())
    finally:
        handler.close()
        err.print(_summary(processor.tally), markup=False)


@bounces_app.command("ingest")
def ingest_command(
    path: Annotated[Path, typer.Argument(help="An mbox file or a Maildir folder.")],
) -> None:
    """Read every message of an mbox file or a Maildir; safe to run again on the same one."""
    from engine.bounces.mailboxes import MailboxError, ingest
    from engine.bounces.processing import BounceProcessor
    from engine.delivery.tokens import Keys

    settings, engine = open_store()
    processor = BounceProcessor(engine, Keys(settings.secret))
    started = time.monotonic()
    try:
        count = ingest(path, processor, lambda n: err.print(f"{n} messages read", markup=False))
    except MailboxError as exc:
        fail(str(exc))
    seconds = time.monotonic() - started
    out.print(f"{count} message(s) in {seconds:.1f} s: {_summary(processor.tally)}", markup=False)


@bounces_app.command("export")
def export_command(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    fmt: Annotated[CsvOrJsonl, typer.Option("--format")] = CsvOrJsonl.CSV,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout.")] = None,
) -> None:
    """Bounced addresses for a suppression list: user id, keyed address hash, status code,
    reason, time. No address leaves the database."""
    from engine.bounces.processing import export_rows
    from engine.delivery.tokens import Keys

    settings, engine = open_store(create=False)
    records = export_rows(engine, Keys(settings.secret), campaign)
    count = write_records(records, EXPORT_FIELDS, fmt, out_file)
    if out_file:
        out.print(f"{count} bounced address(es) written to {out_file}")


def _summary(tally: Counter[str]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(tally.items())) or "nothing"
