"""`herald daemon`: every campaign in campaigns/ on its schedule. The only APScheduler import.

    scan (every few seconds)  campaign files ▶ validate ▶ scheduled, or refused
    start (a date job each)   at schedule.start: plan, with the same planner as `herald plan`
    audience (every few s)    plan started campaigns again when users were imported
    tick (every second)       start a dispatcher where work is due, stop it when paused
    heartbeat, checkpoint     liveness for `herald status`; signed chain heads on disk

A campaign that has started runs from the files stored when it started: a changed file
on disk is refused (logged, noted on the campaign) and the running spec goes on. Every
job only reads and writes the database, so several daemons can share one.
"""

import asyncio
import datetime as dt
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine

from engine.authoring.campaigns import LoadedCampaign
from engine.authoring.specs import restore, spec_folder, spec_hash
from engine.bounces.receiver import receive_at
from engine.config import Settings
from engine.daemon.campaignfiles import CampaignFiles
from engine.daemon.outlook import Outlook
from engine.delivery.channels import build_transports, describe_email
from engine.delivery.channels.base import Transport
from engine.delivery.dispatch import Dispatcher, SendOptions
from engine.delivery.planning import PlanResult, plan_campaign
from engine.delivery.tokens import Keys
from engine.errors import EngineError
from engine.evidence.signing import sign_heads, signer_for
from engine.evidence.status import HEARTBEAT_SECONDS
from engine.logs import fields
from engine.statuses import FINAL
from engine.store import campaigns as campaign_store
from engine.store import daemons, deliveries
from engine.store.objections import purge_reasons
from engine.store.users import users_version

log = logging.getLogger("herald.daemon")


@dataclass(frozen=True)
class DaemonOptions:
    campaigns: Path = Path("campaigns")
    tick_s: float = 1.0  # how often due work and pauses are looked at
    scan_s: float = 5.0  # how often campaign files are looked at
    grace_s: float = 30.0  # on SIGTERM, how long messages in flight may take
    summary_s: float = 30.0  # how often a sending campaign's progress is logged
    checkpoint_s: float = 30.0  # every writer signs within 60 s
    concurrency: int = 8


@dataclass
class _Running:
    task: asyncio.Task[Any]
    stop: asyncio.Event
    paused: bool = False  # started while paused: it claims confirmations only


@dataclass
class _Memory:
    running: dict[str, _Running] = field(default_factory=dict)
    planning: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    dispatchers: dict[str, Dispatcher] = field(default_factory=dict)
    backoff: dict[str, float] = field(default_factory=dict)  # campaign -> not before
    noted: dict[str, str] = field(default_factory=dict)  # campaign -> last state logged
    audience: dict[str, tuple[int, float]] = field(default_factory=dict)  # users last planned
    specs: dict[str, LoadedCampaign] = field(default_factory=dict)  # started, restored


class Daemon:
    def __init__(self, settings: Settings, engine: Engine, options: DaemonOptions) -> None:
        self.settings, self.engine, self.options = settings, engine, options
        self.keys = Keys(settings.secret)
        signer_for(settings)  # refuse to start with a missing or replaced key
        self.id = deliveries.worker_id()
        self.started = time.time()
        self.memory = _Memory()
        self.outlook = Outlook(engine)
        self.transports: dict[Any, Transport] = {}
        self.scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self.stopping = asyncio.Event()
        self.halt_planning = threading.Event()
        self.files = CampaignFiles(
            engine, options.campaigns, self._schedule_start, self._unschedule
        )

    async def run(self) -> None:
        """Until SIGTERM or SIGINT: then stop claiming, let messages in flight finish
        within the grace period, release the rest, write a last checkpoint."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        self.transports = build_transports(self.settings, self.options.concurrency)
        how, risks = describe_email(self.settings)
        folder = str(self.options.campaigns.resolve())
        log.info("started", extra=fields(daemon=self.id, campaigns=folder, email=how))
        for risk in risks:
            log.warning("email without verified TLS", extra=fields(risk=risk))
        self._heartbeat()
        o = self.options
        now = dt.datetime.now(dt.UTC)
        for job, seconds in (
            (self._scan, o.scan_s),
            (self._audience, o.scan_s),
            (self._tick, o.tick_s),
            (self._summaries, o.summary_s),
            (self._beat, HEARTBEAT_SECONDS),
            (self._checkpoint, o.checkpoint_s),
        ):
            self.scheduler.add_job(
                _logged(job),
                "interval",
                seconds=seconds,
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        self.scheduler.start()
        listen = self.settings.bounce_listen  # one process serves a small deployment
        receiver = await receive_at(listen, self.engine, self.keys) if listen else None
        await self.stopping.wait()
        if receiver is not None:
            receiver.close()
        await self._shutdown()

    def _on_signal(self) -> None:
        if self.stopping.is_set():
            log.warning("second signal: exiting now; unfinished leases are taken back later")
            os._exit(130)
        log.info(
            "stopping",
            extra=fields(grace_s=self.options.grace_s, sending=len(self.memory.running)),
        )
        self.stopping.set()

    async def _shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
        self.halt_planning.set()
        running = list(self.memory.running.values())
        for r in running:
            r.stop.set()
        tasks = [r.task for r in running] + list(self.memory.planning.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.options.grace_s)
            for task in late:
                task.cancel()
            if late:
                log.warning("grace period over: interrupted what was still in flight")
                await asyncio.gather(*late, return_exceptions=True)
        for transport in self.transports.values():
            await transport.close()
        await self._checkpoint()
        await asyncio.to_thread(daemons.stopped, self.engine, self.id, time.time())
        log.info("stopped", extra=fields(daemon=self.id))

    # -- campaign files: start jobs -----------------------------------------------------

    def _schedule_start(self, loaded: LoadedCampaign, digest: str) -> None:
        c = loaded.campaign
        self.scheduler.add_job(
            _logged(self._start),
            "date",
            run_date=c.schedule.start,
            args=[loaded, digest],
            id=f"start:{c.id}",
            replace_existing=True,
            misfire_grace_time=None,  # a start already past runs at once, once
        )
        when = c.schedule.start.isoformat()
        log.info("scheduled", extra=fields(campaign=c.id, start=when, spec=digest[:12]))

    def _unschedule(self, campaign_id: str, why: str) -> None:
        if self.scheduler.get_job(f"start:{campaign_id}"):
            self.scheduler.remove_job(f"start:{campaign_id}")
            log.info("unscheduled", extra=fields(campaign=campaign_id, reason=why))

    # -- start: plan ------------------------------------------------------------------

    async def _start(self, loaded: LoadedCampaign, digest: str) -> None:
        """Plan at schedule.start: the files are fixed as they were validated."""
        if spec_hash(loaded) != digest:  # edited since the scan; the next scan reschedules
            return
        task = self._plan(loaded, digest)
        await asyncio.wait([task])

    def _plan(self, loaded: LoadedCampaign, validated: str | None = None) -> asyncio.Task[Any]:
        """Plan in a thread (the loop keeps sending other campaigns); one at a time each.
        `validated`: the spec hash the scan validated (plan_campaign)."""
        c = loaded.campaign
        if c.id in self.memory.planning:
            return self.memory.planning[c.id]
        log.info("planning", extra=fields(campaign=c.id))

        def plan() -> tuple[tuple[int, float], PlanResult]:
            version = users_version(self.engine)  # read first: later changes plan again
            return version, plan_campaign(
                self.engine, loaded, self.keys, None, self.halt_planning.is_set, validated
            )

        task = asyncio.create_task(asyncio.to_thread(plan))
        self.memory.planning[c.id] = task

        def done(task: asyncio.Task[Any]) -> None:
            del self.memory.planning[c.id]
            if task.cancelled():
                return
            if task.exception():
                log.error(
                    "planning failed", extra=fields(campaign=c.id, error=str(task.exception()))
                )
            elif task.result()[1].stopped:
                log.info("planning interrupted", extra=fields(campaign=c.id))
            else:
                version, result = task.result()
                self.memory.audience[c.id] = version
                log.info(
                    "planned",
                    extra=fields(
                        campaign=c.id,
                        in_audience=result.in_audience,
                        new_deliveries=result.new_deliveries,
                    ),
                )

        task.add_done_callback(done)
        return task

    async def _scan(self) -> None:
        await self.files.scan(self.stopping)

    async def _audience(self) -> None:
        """Plan started campaigns again when the user table changed (planning is
        idempotent), so that users imported after the start are told too."""
        version = await asyncio.to_thread(users_version, self.engine)
        for row in await asyncio.to_thread(campaign_store.all_campaigns, self.engine):
            campaign_id = row["id"]
            if (
                row["planned_at"] is None
                or row["state"] != "planned"
                or row["paused"]
                or campaign_id in self.memory.planning
                or self.memory.audience.get(campaign_id) == version
                or self.stopping.is_set()
            ):
                continue
            loaded = await self._stored(campaign_id, row["spec_hash"])
            if loaded:
                self._plan(loaded)

    # -- tick: dispatch ---------------------------------------------------------------

    async def _tick(self) -> None:
        if self.stopping.is_set():
            return
        now = time.time()
        for row in await asyncio.to_thread(campaign_store.all_campaigns, self.engine):
            campaign_id = row["id"]
            running = self.memory.running.get(campaign_id)
            if running and running.task.done():
                del self.memory.running[campaign_id]
                running = None
            if row["planned_at"] is None or campaign_id in self.memory.planning:
                continue
            self._note(campaign_id, "paused" if row["paused"] else "active")
            if running and running.paused != bool(row["paused"]):
                running.stop.set()  # paused: notices hold at once; resumed: notices go again
                continue
            if row["paused"]:  # confirmations are never held
                if not running and await asyncio.to_thread(self._has_work, campaign_id, now, True):
                    await self._dispatch(campaign_id, row["spec_hash"], paused=True)
                continue
            if row["state"] == "planning":  # a planner stopped half-way: plan again
                loaded = await self._stored(campaign_id, row["spec_hash"])
                if loaded:
                    self._plan(loaded)
                continue
            if running or self.memory.backoff.get(campaign_id, 0) > now:
                continue
            if await asyncio.to_thread(self._has_work, campaign_id, now):
                await self._dispatch(campaign_id, row["spec_hash"])

    def _has_work(self, campaign_id: str, now: float, paused: bool = False) -> bool:
        due = deliveries.next_due(self.engine, campaign_id, confirmations_only=paused)
        if due is not None and due <= now + self.options.tick_s:
            return True
        return not paused and bool(deliveries.sending_owners(self.engine, campaign_id))

    async def _dispatch(self, campaign_id: str, digest: str, paused: bool = False) -> None:
        dispatcher = self.memory.dispatchers.get(campaign_id)
        if dispatcher is None:
            loaded = await self._stored(campaign_id, digest)
            if loaded is None:
                return
            options = SendOptions(
                concurrency=self.options.concurrency, max_wait_s=5 * self.options.tick_s
            )
            dispatcher = Dispatcher(self.engine, loaded, self.keys, self.transports, options)
            self.memory.dispatchers[campaign_id] = dispatcher
        stop = asyncio.Event()
        task = asyncio.create_task(self._send(campaign_id, dispatcher, stop))
        self.memory.running[campaign_id] = _Running(task, stop, paused)

    async def _send(self, campaign_id: str, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
        try:
            summary = await dispatcher.run(stop)
        except EngineError as exc:  # our setup (TLS, password): mark no one failed, hold
            self.memory.backoff[campaign_id] = time.time() + 60  # then try again
            log.error("held", extra=fields(campaign=campaign_id, error=str(exc)))
            return
        if summary.counts:
            log.info("sent", extra=fields(campaign=campaign_id, **summary.counts))
        counts = await asyncio.to_thread(deliveries.progress, self.engine, campaign_id)
        if not any(k not in FINAL for k in counts):
            log.info("done", extra=fields(campaign=campaign_id, **counts))

    async def _stored(self, campaign_id: str, digest: str) -> LoadedCampaign | None:
        """The campaign as it started, from the files stored with it (read once: a
        started campaign's spec never changes)."""
        if campaign_id in self.memory.specs:
            return self.memory.specs[campaign_id]
        files = await asyncio.to_thread(campaign_store.stored_files, self.engine, campaign_id)
        folder = spec_folder(self.settings.var, campaign_id, digest)
        try:
            loaded = await asyncio.to_thread(restore, campaign_id, files, folder)
        except (EngineError, OSError) as exc:
            self.memory.backoff[campaign_id] = time.time() + 60
            log.error(
                "cannot restore the started spec",
                extra=fields(campaign=campaign_id, error=str(exc)),
            )
            return None
        self.memory.specs[campaign_id] = loaded
        return loaded

    def _note(self, campaign_id: str, state: str) -> None:
        """Log a campaign's pause or resumption once, when this daemon first sees it."""
        before = self.memory.noted.get(campaign_id)
        self.memory.noted[campaign_id] = state
        if before is not None and before != state:
            log.info(state if state == "paused" else "resumed", extra=fields(campaign=campaign_id))

    # -- summaries, heartbeat, checkpoints --------------------------------------------

    async def _summaries(self) -> None:
        await self.outlook.summarize(list(self.memory.running), self._stored, time.time())

    def _heartbeat(self) -> None:
        daemons.heartbeat(
            self.engine, self.id, socket.gethostname(), os.getpid(), self.started, time.time()
        )

    async def _beat(self) -> None:
        await asyncio.to_thread(self._heartbeat)

    async def _checkpoint(self) -> None:
        """Purge expired objection reasons (recording it), then sign what was written."""
        for campaign_id, count in (
            await asyncio.to_thread(purge_reasons, self.engine, time.time())
        ).items():
            log.info(
                "purged expired objection reasons",
                extra=fields(campaign=campaign_id, reasons=count),
            )
        await asyncio.to_thread(sign_heads, self.settings, self.engine)


def _logged(job: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A job whose unexpected error is logged with our fields, and the daemon goes on."""

    async def run(*args: Any) -> None:
        try:
            await job(*args)
        except asyncio.CancelledError:  # the daemon is stopping: the job ends with it
            return
        except Exception:
            log.exception("job failed", extra=fields(job=job.__name__))

    run.__name__ = job.__name__
    return run
