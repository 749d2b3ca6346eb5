"""Delivery commands: users, plan, send, report, demo. I/O: database, terminal."""

import dataclasses
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from engine.cli.common import (
    CsvOrJsonl,
    ReportFormat,
    app,
    campaign_id_of,
    err,
    fail,
    importing,
    open_out,
    open_store,
    out,
)
from engine.cli.tables import print_plan, print_report
from engine.errors import CampaignError, ConfigError, EngineError

# The store, the authoring layer and the dispatcher are imported inside each command, so
# that `herald --help` and the other commands start without them (see cli/common.py).
if TYPE_CHECKING:
    from rich.progress import Progress
    from sqlalchemy import Engine

    from engine.authoring.campaigns import LoadedCampaign
    from engine.config import Settings
    from engine.delivery.dispatch import RunSummary, SendOptions
    from engine.delivery.packing import Renderers

users_app = typer.Typer(help="Import or generate the audience.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _launchable(campaign: str) -> "tuple[LoadedCampaign, str]":
    """The campaign and the spec hash of the files it was validated at, if `herald
    validate` passes on it, or passed on exactly these files with this Herald
    (authoring/validated.py); else every reason, exit 1."""
    with importing():
        from engine.authoring import validated
        from engine.authoring.campaigns import load_campaign, resolve_campaign_path
        from engine.authoring.specs import spec_hash
        from engine.config import var_path

    path, var = resolve_campaign_path(campaign), var_path()
    try:  # the files' hash before validating: what the checks saw, at the latest
        loaded = load_campaign(path)
        digest = spec_hash(loaded)
        warnings = validated.recall(var, loaded, digest)
    except (CampaignError, OSError):  # validate says why, with every other problem
        digest, warnings = "", None
    if warnings is None:
        with importing():
            from engine.authoring.validation import validate

        report = validate(path)
        warnings = [str(w) for w in report.warnings]
        if report.errors:
            fail([*warnings, *map(str, report.errors), f"{path}: refused: fix the errors above"])
        assert report.loaded is not None  # no errors: the campaign loaded
        loaded = report.loaded
        validated.remember(var, loaded, warnings, digest, create=True)  # plan makes var/
    else:
        err.print(
            f"{path}: validated before, on these very files: not rendered again", markup=False
        )
    for warning in warnings:
        err.print(warning, markup=False)
    return loaded, digest


@users_app.command("import")
def users_import(
    file: Annotated[
        Path, typer.Argument(help="CSV or JSONL: id,email,name,country,locale,timezone")
    ],
    fmt: Annotated[
        CsvOrJsonl | None, typer.Option("--format", help="Default: by the file's suffix.")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Reject the whole file on any bad row.")] = False,
) -> None:
    """Upsert users by id; report every rejected row with its line number."""
    from engine.delivery.audience import ImportFormatError, read_rows
    from engine.store.users import import_users

    _, engine = open_store()

    def show(rejection: Any) -> None:
        who = f" (id {rejection.user_id})" if rejection.user_id else ""
        err.print(f"{file}:{rejection.line}: {rejection.reason}{who}", markup=False)

    try:
        rows = read_rows(file, fmt.value if fmt else None)
        result = import_users(engine, rows, strict=strict, on_reject=show)
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
    """Add synthetic users across the regions (for demos and benchmarks), with new ids
    after the last synthetic one: existing users are never changed."""
    from engine.delivery.synthetic import generate_users, synthetic_id
    from engine.store.users import insert_users, last_synthetic_number

    _, engine = open_store()
    first = last_synthetic_number(engine) + 1
    added = insert_users(engine, generate_users(count, seed, first=first))
    out.print(
        f"generated {added} user(s), {synthetic_id(first)} to {synthetic_id(first + count - 1)}",
        markup=False,
    )


@app.command("plan")
def plan_command(campaign: Annotated[str, typer.Argument(help="Campaign file or id.")]) -> None:
    """Target the audience: one delivery per user and channel. Safe to rerun."""
    with importing():
        from engine.delivery.planning import plan_campaign
        from engine.delivery.tokens import Keys
        from engine.store.reporting import targeted_users

    loaded, digest = _launchable(campaign)
    settings, engine = open_store()
    try:
        result = plan_campaign(engine, loaded, Keys(settings.secret), validated=digest)
    except CampaignError as exc:
        fail([str(p) for p in exc.problems])
    if result.spec_changed:
        from engine.delivery import runs  # the dispatcher and transports: ~0.15 s to import

        fail(runs.spec_changed(engine, loaded).lines)
    print_plan(out, loaded.campaign.id, result, targeted_users(engine, loaded.campaign.id))
    _checkpoint(settings, engine)  # `started`, `audience`, `planned`: signed like any write


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
    with importing():
        import asyncio

        from engine.authoring.campaigns import resolve_campaign_path
        from engine.delivery import runs
        from engine.delivery.channels import describe_email
        from engine.delivery.dispatch import SendOptions

    settings, engine = open_store()
    # `plan` validated the campaign; check_planned proves the files are unchanged. A
    # campaign with no file here (the daemon ran it from another folder) sends as stored.
    from_file = resolve_campaign_path(campaign).exists()
    loaded = _campaign(engine, settings, campaign, stored_first=not from_file, reading=False)
    try:
        runs.check_planned(engine, loaded)
    except runs.LaunchError as exc:
        fail(exc.lines)
    if from_file:  # the same files: send the copy stored at launch, as the daemon does
        # Templates and catalogs are read as each language is first rendered: from the
        # project's folders, an edit made during the send reached the languages not yet
        # rendered, with the evidence still naming the files the campaign launched with.
        loaded = _campaign(engine, settings, campaign, stored_first=True, reading=False)
    try:
        how, risks = describe_email(settings)
    except ConfigError as exc:
        fail(str(exc))
    out.print(f"email: {how}", markup=False)
    for risk in risks:
        err.print(f"warning: {risk}", markup=False)
    options = SendOptions(concurrency=concurrency, max_wait_s=max_wait)
    started = time.monotonic()
    extra = runs.Workers.spawn(loaded, options, workers - 1, engine)
    try:
        summary = asyncio.run(_send(engine, loaded, settings, options, extra.renderers))
    except EngineError as exc:
        extra.join(stop_first=True)
        fail(str(exc))
    ended = extra.join(stop_first=summary.stopped)  # SIGTERM: they finish what is in flight
    _checkpoint(settings, engine)
    _print_outcome(engine, loaded, ended.add_to(summary), time.monotonic() - started)
    if ended.problems:  # what it left claimed goes again once its lease runs out
        fail(ended.problems)


def _campaign(
    engine: "Engine", settings: "Settings", campaign: str, stored_first: bool, reading: bool
) -> "LoadedCampaign":
    """The campaign as launched (from the files stored with it) when `stored_first` and the
    database holds it, else its file; exit 1 saying why neither can be read. `reading`:
    for a report (runs.launched)."""
    from engine.authoring.campaigns import load_campaign, resolve_campaign_path
    from engine.delivery import runs

    campaign_id, path = campaign_id_of(campaign), resolve_campaign_path(campaign)
    try:
        stored = None
        if stored_first:
            stored = runs.launched(engine, settings.var, campaign_id, reading=reading)
        if stored is not None:
            for warning in stored.warnings:  # launched by an earlier version (asstored.py)
                err.print(f"warning: {warning}", markup=False)
            return stored
        if not path.exists():
            fail(
                f"unknown campaign {campaign_id!r}: the database does not know it and {path} "
                "does not exist"
            )
        return load_campaign(path)
    except (EngineError, OSError) as exc:
        fail(str(exc))


def _checkpoint(settings: "Settings", engine: "Engine") -> None:
    """Every writer signs what it wrote; a signing problem (a missing or replaced key, a
    witness that refused a line) is reported, and exits 1."""
    from engine.evidence.signing import sign_heads

    try:
        sign_heads(settings, engine)
    except EngineError as exc:
        fail(str(exc))


async def _send(
    engine: "Engine",
    loaded: "LoadedCampaign",
    settings: "Settings",
    options: "SendOptions",
    warm: "Renderers | None" = None,
) -> "RunSummary":
    from engine.delivery import runs

    def stopping() -> None:
        err.print("stopping: finishing messages in flight (Ctrl-C again to quit at once)")

    progress = _Progress(loaded.campaign.id)
    with progress as show:
        every_s = 0.5 if progress.bar else 5.0  # a line every 5 s needs no more counting
        return await runs.send(
            engine, loaded, settings, options, stopping, show, watch_every_s=every_s, renderers=warm
        )


class _Progress:
    """A progress bar on a terminal; otherwise a line every 5 s with the rate."""

    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        self.bar: Progress | None = None
        self.last: tuple[int, float] | None = None

    def __enter__(self) -> Callable[[int, int], None]:
        if sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )

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
    engine: "Engine", loaded: "LoadedCampaign", summary: "RunSummary", seconds: float
) -> None:
    from engine.statuses import FINAL
    from engine.store import campaigns as campaign_store
    from engine.store import deliveries

    done = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items()))
    if done:
        out.print(f"{loaded.campaign.id}: {done} in {seconds:.1f}s", markup=False)
    else:
        out.print(f"{loaded.campaign.id}: nothing was due", markup=False)
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
    fmt: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.TABLE,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
) -> None:
    """Coverage: targeted, notified, failed and pending, by channel, country and locale."""
    from engine.evidence.report import campaign_report
    from engine.evidence.verify import evidence_status

    settings, engine = open_store(create=False)
    loaded = _campaign(engine, settings, campaign, stored_first=True, reading=True)
    report = campaign_report(engine, loaded.campaign)
    report["evidence"] = evidence_status(settings.var / "verified", engine, loaded.campaign.id)
    if fmt is ReportFormat.JSON:
        text = json.dumps(report, indent=2, ensure_ascii=False)
        if out_file:
            with open_out(out_file) as fp:
                fp.write(text + "\n")
        else:
            print(text)  # noqa: T201 - machine-readable output
    elif fmt is ReportFormat.HTML:
        from engine.evidence.reportpage import render_report_html

        page = render_report_html(report, report["evidence"], dt.datetime.now(dt.UTC))
        if out_file:
            with open_out(out_file) as fp:
                fp.write(page)
        else:
            sys.stdout.write(page)
    elif out_file:
        with open_out(out_file) as fp:
            print_report(Console(file=fp, width=120, highlight=False), report)
    else:
        print_report(out, report)


def _without_window(loaded: "LoadedCampaign") -> "LoadedCampaign":
    schedule = loaded.campaign.schedule.model_copy(update={"send_window": None})
    campaign = loaded.campaign.model_copy(update={"schedule": schedule})
    return dataclasses.replace(loaded, campaign=campaign)


@app.command("demo")
def demo_command(
    users: Annotated[int, typer.Option(min=1, help="Synthetic users to generate.")] = 2000,
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="The port you will give herald serve.")
    ] = 8080,
) -> None:
    """Run the shipped campaign end to end on the embedded defaults (SQLite + outbox)."""
    import asyncio

    from engine.delivery.dispatch import SendOptions
    from engine.delivery.planning import plan_campaign
    from engine.delivery.synthetic import generate_users
    from engine.delivery.tokens import Keys
    from engine.evidence.report import campaign_report
    from engine.store.deliveries import first_reached
    from engine.store.reporting import targeted_users
    from engine.store.users import insert_users

    launchable, digest = _launchable("ai-training-notice")
    loaded = _without_window(launchable)
    settings, engine = open_store()

    def step(text: str) -> None:
        out.print(f"» {text}", markup=False)

    step(f"database {settings.db_url}; email to the outbox {settings.outbox}/")
    step(
        "the demo sends at once; herald send and herald daemon hold each message for its "
        "recipient's send window"
    )
    step(f"generating {users} synthetic users (those from an earlier run are kept as they are)")
    insert_users(engine, generate_users(users, seed=1))
    try:
        result = plan_campaign(engine, loaded, Keys(settings.secret), validated=digest)
    except CampaignError as exc:
        fail([str(p) for p in exc.problems])
    targeted = targeted_users(engine, loaded.campaign.id)
    step(f"planned {result.new_deliveries} new deliveries; {targeted} users targeted")
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
        serve = "herald serve" + (f" --port {port}" if port != 8080 else "")
        who = f"user {sample['user_id']}'s objection page ({sample['locale']})"
        step(f"{who}: run `{serve}`, then open")
        out.print(
            f"  http://127.0.0.1:{port}/object/{keys.token(sample['token_id'])}", markup=False
        )
    step("to start over: rm -rf var/ (the database, the outbox and the keys)")
