"""Running commands: daemon, status, pause, resume. I/O: database, terminal, signals."""

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from engine.cli.common import LogFormat, TableOrJson, app, campaign_id_of, fail, open_store, out
from engine.errors import ConfigError, EngineError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from engine.evidence.status import NextAllowed

# The daemon, the store and the authoring layer are imported inside each command, so that
# `herald --help` and the other commands start without them (see cli/common.py).


@app.command("daemon")
def daemon_command(
    campaigns: Annotated[
        Path, typer.Option(help="Folder of campaign files to run.", file_okay=False)
    ] = Path("campaigns"),
    log_format: Annotated[LogFormat, typer.Option()] = LogFormat.PLAIN,
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds messages in flight may take on SIGTERM.")
    ] = 30.0,
    tick: Annotated[float, typer.Option(min=0.05, help="Seconds between dispatch ticks.")] = 1.0,
    scan: Annotated[
        float, typer.Option(min=0.1, help="Seconds between looks at the campaign files.")
    ] = 5.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Messages in flight.")] = 8,
    summary: Annotated[
        float, typer.Option(min=0.1, help="Seconds between progress and bounce-rate checks.")
    ] = 30.0,
) -> None:
    """Run every campaign in the folder on its schedule, in each recipient's send window."""
    import asyncio

    from engine import logs
    from engine.daemon.scheduler import Daemon, DaemonOptions

    if not campaigns.is_dir():
        fail(f"{campaigns}: no such folder")
    logs.setup(log_format)
    settings, engine = open_store()
    options = DaemonOptions(
        campaigns=campaigns,
        tick_s=tick,
        scan_s=scan,
        grace_s=grace,
        concurrency=concurrency,
        summary_s=summary,
    )
    try:
        daemon = Daemon(settings, engine, options)
    except ConfigError as exc:
        fail(str(exc))
    asyncio.run(daemon.run())


@app.command("status")
def status_command(
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign (file or id).")] = None,
    fmt: Annotated[TableOrJson, typer.Option("--format")] = TableOrJson.TABLE,
) -> None:
    """Every campaign's state and progress, and whether a daemon is running."""
    from engine.evidence.status import HEARTBEAT_SECONDS, campaign_status, daemon_status
    from engine.store import campaigns as campaign_store
    from engine.store import daemons
    from engine.store.deliveries import is_dead_local
    from engine.store.reporting import status_figures

    settings, engine = open_store(create=False)
    now = time.time()
    rows = campaign_store.all_campaigns(engine)
    if campaign is not None:
        wanted = campaign_id_of(campaign)
        rows = [r for r in rows if r["id"] == wanted]
        if not rows:
            fail(f"unknown campaign {wanted!r}: no daemon or plan has seen it yet")
    campaigns = []
    for row in rows:
        figures = status_figures(engine, row["id"], now)
        windows = _send_windows(engine, settings.var, row["id"]) if figures["backlog"] else None
        campaigns.append(campaign_status(row, **figures, now=now, next_allowed=windows))
    status = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "daemons": [
            daemon_status(d, now, gone=is_dead_local(d["id"]))
            for d in daemons.recent(engine, now - 3 * HEARTBEAT_SECONDS)
        ],
        "campaigns": campaigns,
    }
    if fmt is TableOrJson.JSON:
        print(json.dumps(status, indent=2, ensure_ascii=False))  # noqa: T201
    else:
        _print_status(status)


def _send_windows(engine: "Engine", var: Path, campaign_id: str) -> "NextAllowed | None":
    """The campaign's send window as it started (from its stored files), for the projection;
    None when the files cannot be read, and the projection then ignores windows."""
    from engine.delivery.runs import launched
    from engine.delivery.windows import SendTimes

    try:
        loaded = launched(engine, var, campaign_id, reading=True)
    except (EngineError, OSError):
        return None
    if loaded is None:
        return None
    return SendTimes(loaded.campaign.schedule.send_window).next_allowed


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
    if not status["campaigns"]:
        out.print("no campaigns yet", markup=False)
    for c in status["campaigns"]:
        table = Table(
            title=f"{c['id']}: {c['state']}", title_justify="left", show_header=False, box=None
        )
        table.add_column(style="bold")
        table.add_column()
        counts = ", ".join(f"{n} {k}" for k, n in c["deliveries"].items())
        rate = c["bounce_rate"]
        limit = c["configured_rate_per_second"]
        rows = [
            ("title", c["title"]),
            ("targeted users", str(c["users"]["targeted"])),
            ("deliveries", counts),
            ("confirmations to send", str(c["confirmations_pending"] or "")),
            ("start", c["start"]),
            ("next due", c["next_due"]),
            ("rate", f"{c['rate_per_second']:g}/s over the last minute"),
            ("rate limit", f"{limit:g}/s per channel" if limit is not None else None),
            ("bounce rate", f"{rate:.1%} of emails sent" if rate is not None else None),
            ("projected completion", c["projected_completion"]),
            ("deadline", c["deadline"]),
            ("outlook", c["outlook"]),
            ("problem", c["problem"]),
        ]
        for label, value in rows:
            if value:
                table.add_row(label, value)
        out.print(table)


@app.command("pause")
def pause_command(campaign: Annotated[str, typer.Argument(help="Campaign file or id.")]) -> None:
    """Stop sending a campaign (within one tick), with or without a daemon running."""
    _set_paused(campaign, True)


@app.command("resume")
def resume_command(campaign: Annotated[str, typer.Argument(help="Campaign file or id.")]) -> None:
    """Let a paused campaign send again."""
    _set_paused(campaign, False)


def _set_paused(campaign: str, paused: bool) -> None:
    from engine.authoring.campaigns import load_campaign, resolve_campaign_path
    from engine.authoring.specs import spec_hash
    from engine.evidence.signing import sign_heads
    from engine.store import campaigns as campaign_store

    settings, engine = open_store()
    campaign_id = campaign_id_of(campaign)
    if campaign_store.get(engine, campaign_id) is None:
        try:  # not seen by a daemon yet: record it as scheduled, so the pause holds
            loaded = load_campaign(resolve_campaign_path(campaign))
        except EngineError as exc:
            fail(str(exc))
        campaign_store.schedule(engine, loaded.campaign.record, spec_hash(loaded), time.time())
    word = "paused" if paused else "resumed"
    if campaign_store.set_paused(engine, campaign_id, paused, time.time(), by="cli"):
        out.print(f"{campaign_id}: {word}", markup=False)
    else:
        out.print(f"{campaign_id}: already {word}", markup=False)
    try:  # every writer signs what it wrote
        sign_heads(settings, engine)
    except EngineError as exc:
        fail(str(exc))
