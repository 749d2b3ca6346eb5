"""Delivery commands: users, plan, send, report, demo. I/O: database, terminal."""

import asyncio
import dataclasses
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from sqlalchemy import Engine

from engine.authoring.campaigns import LoadedCampaign, load_campaign, resolve_campaign_path
from engine.authoring.validation import validate
from engine.cli.common import app, err, fail, open_store, out
from engine.cli.tables import print_plan, print_report
from engine.config import Settings
from engine.delivery import runs
from engine.delivery.audience import ImportFormatError, read_rows
from engine.delivery.dispatch import RunSummary, SendOptions
from engine.delivery.planning import plan_campaign
from engine.delivery.synthetic import generate_users
from engine.delivery.tokens import Keys
from engine.errors import ConfigError, EngineError
from engine.evidence.report import campaign_report
from engine.evidence.reportpage import render_report_html
from engine.evidence.signing import sign_heads
from engine.evidence.verify import evidence_status
from engine.statuses import FINAL
from engine.store import campaigns as campaign_store
from engine.store import deliveries
from engine.store.deliveries import first_reached
from engine.store.users import import_users, insert_users

users_app = typer.Typer(help="Import or generate the audience.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _launchable(campaign: str) -> LoadedCampaign:
    """The campaign, if `herald validate` passes on it; else every reason, exit 1."""
    path = resolve_campaign_path(campaign)
    report = validate(path)
    for warning in report.warnings:
        err.print(str(warning), markup=False)
    if report.errors:
        fail([*map(str, report.errors), f"{path}: refused: fix the errors above"])
    return load_campaign(path)


@users_app.command("import")
def users_import(
    file: Annotated[
        Path, typer.Argument(help="CSV or JSONL: id,email,name,country,locale,timezone")
    ],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: by suffix)")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Reject the whole file on any bad row.")] = False,
) -> None:
    """Upsert users by id; report every rejected row with its line number."""
    _, engine = open_store()

    def show(rejection: Any) -> None:
        who = f" (id {rejection.user_id})" if rejection.user_id else ""
        err.print(f"{file}:{rejection.line}: {rejection.reason}{who}", markup=False)

    try:
        result = import_users(engine, read_rows(file, fmt), strict=strict, on_reject=show)
    except (ImportFormatError, OSError) as exc:
        fail(str(exc))
    if not result.committed:
        fail(f"{file}: {result.rejected} bad row(s); nothing imported (--strict)")
    out.print(
        f"imported {result.imported} user(s) from {file}, rejected {result.rejected}", markup=False
    )
    if result.rejected:
        raise typer.Exit(1)


@users_app.command("generate")
def users_generate(
    count: Annotated[int, typer.Option(min=1, help="How many users.")],
    seed: Annotated[int, typer.Option(help="Same seed, same users.")] = 1,
) -> None:
    """Make a synthetic audience across the regions (for demos and benchmarks)."""
    _, engine = open_store()
    out.print(
        f"generated {insert_users(engine, generate_users(count, seed))} user(s)", markup=False
    )


@app.command("plan")
def plan_command(campaign: Annotated[str, typer.Argument(help="Campaign file or id.")]) -> None:
    """Target the audience: one delivery per user and channel. Safe to rerun."""
    loaded = _launchable(campaign)
    settings, engine = open_store()
    result = plan_campaign(engine, loaded, Keys(settings.secret))
    if result.spec_changed:
        fail(runs.spec_changed(engine, loaded).lines)
    print_plan(out, loaded.campaign.id, result)


@app.command("send")
def send_command(
    campaign: Annotated[str, typer.Argument(help="Campaign file or id.")],
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Messages in flight per worker.")] = 8,
    max_wait: Annotated[
        float, typer.Option(min=0, help="Stop when nothing is due within this many seconds.")
    ] = 60.0,
) -> None:
    """Deliver what is due until every delivery is final (or nothing is due soon)."""
    try:  # `plan` validated the campaign; check_planned proves the files are unchanged
        loaded = load_campaign(resolve_campaign_path(campaign))
    except EngineError as exc:
        fail(str(exc))
    settings, engine = open_store()
    try:
        runs.check_planned(engine, loaded)
    except runs.LaunchError as exc:
        fail(exc.lines)
    options = SendOptions(concurrency=concurrency, max_wait_s=max_wait)
    started = time.monotonic()
    extra = runs.Workers.spawn(loaded.path, options, workers - 1)
    try:
        summary = asyncio.run(_send(engine, loaded, settings, options))
    except EngineError as exc:
        extra.join(stop_first=True)
        fail(str(exc))
    extra.join(stop_first=summary.stopped)  # SIGTERM: workers finish their messages in flight
    _checkpoint(settings, engine)
    _print_outcome(engine, loaded, summary, time.monotonic() - started)


def _checkpoint(settings: Settings, engine: Engine) -> None:
    try:
        sign_heads(settings, engine)
    except ConfigError as exc:
        fail(str(exc))


async def _send(
    engine: Engine, loaded: LoadedCampaign, settings: Settings, options: SendOptions
) -> RunSummary:
    def stopping() -> None:
        err.print("stopping: finishing messages in flight (Ctrl-C again to quit at once)")

    progress = _Progress(loaded.campaign.id)
    with progress as show:
        return await runs.send(engine, loaded, settings, options, stopping, show)


class _Progress:
    """A progress bar on a terminal; otherwise a line every 5 s with the rate."""

    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        self.bar: Progress | None = None
        self.last: tuple[int, float] | None = None

    def __enter__(self) -> Callable[[int, int], None]:
        if sys.stderr.isatty():
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.speed} msg/s"),
                TimeRemainingColumn(),
            )
            self.bar = Progress(*columns, console=err, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.campaign_id, total=None)
        return self.show

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    def show(self, final: int, total: int) -> None:
        if self.bar:
            self.bar.update(self.task, completed=final, total=total)
            return
        now = time.monotonic()
        if self.last is None:
            self.last = (final, now)
        elif now - self.last[1] >= 5:
            rate = (final - self.last[0]) / (now - self.last[1])
            err.print(f"{self.campaign_id}: {final}/{total} final, {rate:.0f}/s", markup=False)
            self.last = (final, now)


def _print_outcome(
    engine: Engine, loaded: LoadedCampaign, summary: RunSummary, seconds: float
) -> None:
    done = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items())) or "nothing due"
    out.print(f"{loaded.campaign.id}: {done} in {seconds:.1f}s", markup=False)
    counts = deliveries.progress(engine, loaded.campaign.id)
    open_ = {k: v for k, v in counts.items() if k not in FINAL}
    row = campaign_store.get(engine, loaded.campaign.id)
    if open_ and row and row["paused"]:
        left = ", ".join(f"{v} {k}" for k, v in sorted(open_.items()))
        out.print(
            f"remaining: {left}; the campaign is paused: herald resume {loaded.campaign.id}",
            markup=False,
        )
    elif open_:
        due = deliveries.next_due(engine, loaded.campaign.id)
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(due)) if due else "unknown"
        left = ", ".join(f"{v} {k}" for k, v in sorted(open_.items()))
        out.print(f"remaining: {left}; next due {when}; run herald send again", markup=False)
    else:
        out.print("every delivery is final", markup=False)


@app.command("report")
def report_command(
    campaign: Annotated[str, typer.Argument(help="Campaign file or id.")],
    fmt: Annotated[str, typer.Option("--format", help="table, json or html")] = "table",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """Coverage: targeted, notified, failed and pending, by channel, country and locale."""
    if fmt not in ("table", "json", "html"):
        raise typer.BadParameter("expected table, json or html", param_hint="--format")
    try:
        loaded = load_campaign(resolve_campaign_path(campaign))
    except EngineError as exc:
        fail(str(exc))
    settings, engine = open_store()
    report = campaign_report(engine, loaded.campaign)
    report["evidence"] = evidence_status(settings.var / "verified", engine, loaded.campaign.id)
    if fmt == "json":
        text = json.dumps(report, indent=2, ensure_ascii=False)
        if out_file:
            out_file.write_text(text + "\n", encoding="utf-8")
        else:
            print(text)  # noqa: T201 - machine-readable output
    elif fmt == "html":
        page = render_report_html(report, report["evidence"], dt.datetime.now(dt.UTC))
        if out_file:
            out_file.write_text(page, encoding="utf-8")
        else:
            sys.stdout.write(page)
    elif out_file:
        with out_file.open("w", encoding="utf-8") as fp:
            print_report(Console(file=fp, width=120, highlight=False), report)
    else:
        print_report(out, report)


def _without_window(loaded: LoadedCampaign) -> LoadedCampaign:
    schedule = loaded.campaign.schedule.model_copy(update={"send_window": None})
    campaign = loaded.campaign.model_copy(update={"schedule": schedule})
    return dataclasses.replace(loaded, campaign=campaign)


@app.command("demo")
def demo_command(
    users: Annotated[int, typer.Option(min=1, help="Synthetic users to generate.")] = 2000,
) -> None:
    """Run the shipped campaign end to end on the embedded defaults (SQLite + outbox)."""
    loaded = _without_window(_launchable("ai-training-notice"))
    settings, engine = open_store()

    def step(text: str) -> None:
        out.print(f"» {text}", markup=False)

    step(f"database {settings.db_url}; email to the outbox {settings.outbox}/")
    step(
        "the demo sends at once; herald send and herald daemon hold each message for its "
        "recipient's send window"
    )
    step(f"generating {users} synthetic users")
    insert_users(engine, generate_users(users, seed=1))
    result = plan_campaign(engine, loaded, Keys(settings.secret))
    step(f"planned {result.new_deliveries} new deliveries for {result.targeted} targeted users")
    started = time.monotonic()
    summary = asyncio.run(_send(engine, loaded, settings, SendOptions(max_wait_s=0)))
    _checkpoint(settings, engine)
    step(
        f"sent in {time.monotonic() - started:.1f}s: "
        + (", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items())) or "nothing due")
    )
    deadline = loaded.campaign.schedule.deadline
    if deadline.timestamp() < time.time():
        step(
            f"note: the shipped campaign's deadline ({deadline:%Y-%m-%d}) is past; the demo "
            "sends now, so no notice counts as sent before the deadline"
        )
    print_report(out, campaign_report(engine, loaded.campaign))
    sample = first_reached(engine, loaded.campaign.id)
    if sample:
        keys = Keys(settings.secret)
        step(
            f"user {sample['user_id']}'s objection page ({sample['locale']}): run `herald serve`, "
            "then open"
        )
        out.print(f"  http://127.0.0.1:8080/object/{keys.token(sample['token_id'])}", markup=False)
