"""Service commands: serve, objections export. I/O: HTTP, database, terminal, files."""

import datetime as dt
import logging
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli.common import (
    CsvOrJsonl,
    ListenHost,
    LogFormat,
    app,
    fail,
    open_store,
    out,
    write_records,
)
from engine.errors import ConfigError
from engine.service.limits import MAX_BODY  # a constant; the web stack loads later

# The web stack and the store are imported inside each command, so that `herald --help`
# and the other commands start without them (see cli/common.py).

log = logging.getLogger("herald.serve")
objections_app = typer.Typer(help="Objections recorded by herald serve.", no_args_is_help=True)
app.add_typer(objections_app, name="objections")
EXPORT_FIELDS = ("user_id", "purpose", "campaign", "objected_at", "channel", "locale", "via")


@app.command("serve")
def serve_command(
    host: ListenHost = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
    failures_per_minute: Annotated[
        int,
        typer.Option(
            min=1,
            help="Failed tokens one client (an IPv4 address, an IPv6 /64) may send per "
            "minute before it must wait. A genuine token is never limited.",
        ),
    ] = 10,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Proxies whose X-Forwarded-For to believe: addresses or networks, "
            "comma-separated, or '*' (default: HERALD_FORWARDED_ALLOW_IPS, else 127.0.0.1)",
            show_default=False,
        ),
    ] = None,
    max_body: Annotated[
        int, typer.Option(min=1024, help="Largest request body in bytes; larger get 413.")
    ] = MAX_BODY,
    timeout_keep_alive: Annotated[
        int, typer.Option(min=1, help="Seconds an idle connection is kept open.")
    ] = 5,
    limit_concurrency: Annotated[
        int, typer.Option(min=1, help="Connections and requests at once; more get 503.")
    ] = 200,
    docs: Annotated[
        bool, typer.Option("--docs", help="Serve Swagger UI at /docs (from local files).")
    ] = False,
    log_format: Annotated[LogFormat, typer.Option()] = LogFormat.PLAIN,
    sign_every: Annotated[
        float,
        typer.Option(min=0.1, max=60, help="Sign new objections and seen marks this often (s)."),
    ] = 30.0,
) -> None:
    """Serve the objection pages (/object/TOKEN) and the in-app feed API
    (/openapi.json; Swagger UI at /docs with --docs)."""
    import uvicorn

    from engine import logs
    from engine.authoring.campaigns import PAGES, Project
    from engine.service.app import create_app

    project = Project(Path.cwd())
    if not (project.templates / PAGES).is_dir():
        fail(f"{project.templates / PAGES}: no such folder; run herald serve in the project")
    logs.setup(log_format)
    settings, engine = open_store()
    try:
        web = create_app(settings, engine, project, failures_per_minute, max_body, docs, sign_every)
    except ConfigError as exc:
        fail(str(exc))
    if not web.state.api_keys.keys:
        log.warning(
            "no API key (HERALD_API_KEY or %s): the feed API refuses every request",
            settings.api_keys,
        )
    # Bound here, not by uvicorn, which exits 3 when the port is taken: ours is exit 1.
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    config = uvicorn.Config(
        web,
        host=host,
        port=port,
        access_log=False,  # it would print tokens; the service logs routes instead
        log_config=None,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips or settings.forwarded_allow_ips,
        timeout_keep_alive=timeout_keep_alive,
        limit_concurrency=limit_concurrency,
    )
    address = f"[{host}]" if ":" in host else host
    log.info("listening on http://%s:%d (Ctrl-C to stop)", address, port)
    uvicorn.Server(config).run(sockets=[listener])


@objections_app.command("export")
def export_command(
    purpose: Annotated[str | None, typer.Option(help="Only this purpose.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only from this time on (ISO 8601 date or date-time).")
    ] = None,
    fmt: Annotated[CsvOrJsonl, typer.Option("--format")] = CsvOrJsonl.CSV,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout.")] = None,
) -> None:
    """Objections for downstream systems: user id, purpose, campaign, time, the notice's
    channel and locale. Streams; the reasons users gave stay in the database."""
    from engine.store.objections import iter_objections

    start = _parse_since(since) if since else None
    _, engine = open_store(create=False)
    records = (_record(row) for row in iter_objections(engine, purpose, start))
    count = write_records(records, EXPORT_FIELDS, fmt, out_file)
    if out_file:
        out.print(f"{count} objection(s) written to {out_file}")


def _record(row: dict[str, Any]) -> dict[str, Any]:
    from engine.store.events import iso

    return {
        "user_id": row["user_id"],
        "purpose": row["purpose"],
        "campaign": row["campaign_id"],
        "objected_at": iso(row["objected_at"]),
        "channel": row["channel"],
        "locale": row["locale"],
        "via": row["via"],
    }


def _parse_since(value: str) -> float:
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: expected an ISO 8601 date or date-time, e.g. 2024-06-01 or "
            "2024-06-01T12:00:00Z",
            param_hint="--since",
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
