"""Service commands: serve, objections export. I/O: HTTP, database, terminal, files."""

import csv
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from engine import logs
from engine.authoring.campaigns import PAGES, Project
from engine.cli.common import app, fail, open_store, out
from engine.errors import ConfigError
from engine.service.limits import MAX_BODY
from engine.store.events import iso
from engine.store.objections import iter_objections

log = logging.getLogger("herald.serve")
objections_app = typer.Typer(help="Objections recorded by herald serve.", no_args_is_help=True)
app.add_typer(objections_app, name="objections")
EXPORT_FIELDS = ("user_id", "purpose", "campaign", "objected_at", "channel", "locale", "via")


@app.command("serve")
def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to listen on; loopback unless you say otherwise.")
    ] = "127.0.0.1",
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
    log_format: Annotated[str, typer.Option(help="plain or json")] = "plain",
) -> None:
    """Serve the objection pages (/object/TOKEN) and the in-app feed API
    (/openapi.json; Swagger UI at /docs with --docs)."""
    import uvicorn  # here: the other commands need not load the web stack

    from engine.service.app import create_app

    if log_format not in ("plain", "json"):
        raise typer.BadParameter("expected plain or json", param_hint="--log-format")
    project = Project(Path.cwd())
    if not (project.templates / PAGES).is_dir():
        fail(f"{project.templates / PAGES}: no such folder; run herald serve in the project")
    logs.setup(log_format)
    settings, engine = open_store()
    try:
        web = create_app(settings, engine, project, failures_per_minute, max_body, docs)
    except ConfigError as exc:
        fail(str(exc))
    if not web.state.api_keys.keys:
        log.warning(
            "no API key (HERALD_API_KEY or %s): the feed API refuses every request",
            settings.api_keys,
        )
    uvicorn.run(
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


@objections_app.command("export")
def export_command(
    purpose: Annotated[str | None, typer.Option(help="Only this purpose.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only from this time on (ISO 8601 date or date-time).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "csv",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout.")] = None,
) -> None:
    """Objections for downstream systems: user id, purpose, campaign, time, the notice's
    channel and locale. Streams; the reasons users gave stay in the database."""
    if fmt not in ("csv", "jsonl"):
        raise typer.BadParameter("expected csv or jsonl", param_hint="--format")
    start = _parse_since(since) if since else None
    _, engine = open_store()
    count = 0
    with _output(out_file) as fp:
        writer = csv.DictWriter(fp, EXPORT_FIELDS, lineterminator="\n") if fmt == "csv" else None
        if writer:
            writer.writeheader()
        for row in iter_objections(engine, purpose, start):
            record = _record(row)
            if writer:
                writer.writerow(record)
            else:
                fp.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    if out_file:
        out.print(f"{count} objection(s) written to {out_file}")


def _record(row: dict[str, Any]) -> dict[str, Any]:
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


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8", newline="") as fp:
        yield fp
