"""Running commands: daemon, status, pause, resume. I/O: database, terminal, signals."""

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from engine import logs
from engine.campaigns import load_campaign, resolve_campaign_path
from engine.cli.common import app, err, fail, open_store, out
from engine.errors import ConfigError, EngineError
from engine.scheduler import Daemon, DaemonOptions
from engine.specs import spec_hash
from engine.status import HEARTBEAT_SECONDS, campaign_status, daemon_status
from engine.store import campaigns as campaign_store
from engine.store import daemons
from engine.store.reporting import status_figures


@app.command("daemon")
def daemon_command(
    campaigns: Annotated[
        Path, typer.Option(help="Folder of campaign files to run.", file_okay=False)
    ] = Path("campaigns"),
    log_format: Annotated[str, typer.Option(help="plain or json")] = "plain",
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds messages in flight may take on SIGTERM.")
    ] = 30.0,
    tick: Annotated[float, typer.Option(min=0.05, help="Seconds between dispatch ticks.")] = 1.0,
    scan: Annotated[
        float, typer.Option(min=0.1, help="Seconds between looks at the campaign files.")
    ] = 5.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Messages in flight.")] = 8,
) -> None:
    """Run every campaign in the folder on its schedule, in each recipient's send window."""
    if log_format not in ("plain", "json"):
        raise typer.BadParameter("expected plain or json", param_hint="--log-format")
    if not campaigns.is_dir():
        fail(f"{campaigns}: no such folder")
    logs.setup(log_format)
    settings, engine = open_store()
    options = DaemonOptions(
        campaigns=campaigns, tick_s=tick, scan_s=scan, grace_s=grace, concurrency=concurrency
    )
    try:
        daemon = Daemon(settings, engine, options)
    except ConfigError as exc:
        fail(str(exc))
    asyncio.run(daemon.run())


@app.command("status")
def status_command(
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign (file or id).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Every campaign's state and progress, and whether a daemon is running."""
    if fmt not in ("table", "json"):
        raise typer.BadParameter("expected table or json", param_hint="--format")
    _, engine = open_store()
    now = time.time()
    rows = campaign_store.all_campaigns(engine)
    if campaign is not None:
        wanted = _campaign_id(campaign)
        rows = [r for r in rows if r["id"] == wanted]
        if not rows:
            fail(f"unknown campaign {wanted!r}: no daemon or plan has seen it yet")
    status = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "daemons": [
            daemon_status(d, now) for d in daemons.recent(engine, now - 3 * HEARTBEAT_SECONDS)
        ],
        "campaigns": [
            campaign_status(row, **status_figures(engine, row["id"], now), now=now) for row in rows
        ],
    }
    if fmt == "json":
        print(json.dumps(status, indent=2, ensure_ascii=False))  # noqa: T201
    else:
        _print_status(status)


def _print_status(status: dict[str, Any]) -> None:
    alive = [d for d in status["daemons"] if d["alive"]]
    if alive:
        for d in alive:
            out.print(
                f"daemon {d['id']} alive (pid {d['pid']} on {d['host']}, "
                f"last heartbeat {d['heartbeat_at']})",
                markup=False,
            )
    else:
        out.print("no daemon is running", markup=False)
    table = Table(title=f"campaigns at {status['at']}", title_justify="left")
    for column in ("campaign", "state", "targeted", "notified", "pending", "deferred", "failed"):
        table.add_column(column, justify="left" if column in ("campaign", "state") else "right")
    table.add_column("next due")
    table.add_column("rate/s", justify="right")
    table.add_column("projected")
    table.add_column("deadline")
    table.add_column("outlook")
    for c in status["campaigns"]:
        table.add_row(
            c["id"],
            c["state"],
            *(str(c[k]) for k in ("targeted", "notified", "pending", "deferred", "failed")),
            c["next_due"] or "-",
            f"{c['rate_per_second']:g}",
            c["projected_completion"] or "-",
            c["deadline"] or "-",
            c["outlook"] or "-",
        )
    out.print(table)
    for c in status["campaigns"]:
        if c["problem"]:
            err.print(f"{c['id']}: {c['problem']}", markup=False)


@app.command("pause")
def pause_command(campaign: Annotated[str, typer.Argument(help="Campaign file or id.")]) -> None:
    """Stop sending a campaign (within one tick), with or without a daemon running."""
    _set_paused(campaign, True)


@app.command("resume")
def resume_command(campaign: Annotated[str, typer.Argument(help="Campaign file or id.")]) -> None:
    """Let a paused campaign send again."""
    _set_paused(campaign, False)


def _set_paused(campaign: str, paused: bool) -> None:
    _, engine = open_store()
    campaign_id = _campaign_id(campaign)
    if campaign_store.get(engine, campaign_id) is None:
        try:  # not seen by a daemon yet: record it as scheduled, so the pause holds
            loaded = load_campaign(resolve_campaign_path(campaign))
        except EngineError as exc:
            fail(str(exc))
        campaign_store.schedule(engine, loaded.campaign, spec_hash(loaded), time.time())
    word = "paused" if paused else "resumed"
    if campaign_store.set_paused(engine, campaign_id, paused, time.time(), by="cli"):
        out.print(f"{campaign_id}: {word}", markup=False)
    else:
        out.print(f"{campaign_id}: already {word}", markup=False)


def _campaign_id(campaign: str) -> str:
    path = Path(campaign)
    return path.stem if path.suffix in (".yaml", ".yml") else campaign
