"""The dispatcher: claim due deliveries, render, hand to transports, record. I/O: via interfaces.

The only module that touches every stage. It is a small pipeline inside one process:

    producer: claim a batch ▶ pack ▶ queue ─▶ senders (one per connection) ─▶ results
                                                                   recorder ▶ database

so that rendering and packing (packing.py) and database writes overlap with messages in
flight. Database calls run on one worker thread; everything else is on the event loop.
A transport that `batches` (in-app: a delivery is a row) skips the queue and senders: it
gets each claimed batch at once, and the producer records its results right after the
next claim, so the database thread writes one batch while this thread packs the next.
"""

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine

from engine.authoring.campaigns import LoadedCampaign
from engine.delivery.channels.base import Outgoing, Transport
from engine.delivery.outcomes import Outcomes, Sent
from engine.delivery.packing import Packer, Renderers
from engine.delivery.ratelimit import RateLimiter
from engine.delivery.tokens import Keys
from engine.errors import DeliveryError, TransportConfigError, UnreachableError
from engine.models import Channel, RenderedMessage, RunSummary, SendOptions
from engine.statuses import CONFIRMATION, DeliveryStatus
from engine.store import campaigns as campaign_store
from engine.store import deliveries, rates
from engine.store.deliveries import Fallback
from engine.store.events import iso
from engine.store.objections import objections_of
from engine.store.results import Result, record

__all__ = ["Dispatcher", "RunSummary", "SendOptions"]  # the options and summary live in models
logger = logging.getLogger(__name__)
T = TypeVar("T")
_DONE = object()
_DEFAULTS = SendOptions()


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        loaded: LoadedCampaign,
        keys: Keys,
        transports: dict[Channel, Transport],
        options: SendOptions = _DEFAULTS,
        clock: Callable[[], float] = time.time,
        renderers: Renderers | None = None,
    ) -> None:
        c = loaded.campaign
        self.engine, self.campaign, self.keys, self.transports = engine, c, keys, transports
        self.options, self.clock = options, clock
        self.owner = deliveries.worker_id()
        email = transports.get(Channel.EMAIL)
        eight_bit = bool(email and email.takes_eight_bit)
        self.packer = Packer(loaded, keys, clock, eight_bit, renderers)
        self.outcomes = Outcomes(c, keys, clock)
        self._channels = {ch.value: ch for ch in Channel}  # Channel(value): ~1 µs a call
        self.limiters = {
            ch: RateLimiter(c.schedule.rate_per_second, self._slots(ch), clock) for ch in Channel
        }
        self._inflight = 0  # claimed by this worker and not yet recorded
        # Emails the server may hold whose outcome is not committed yet: at the transport,
        # or answered and waiting to be recorded. Should the run end before they are (a
        # stop, a full disk), they are handed back as interrupted, never as unattempted:
        # a later send of one is a possible duplicate. (An in-app delivery is its row,
        # written with its outcome: it cannot be duplicated.)
        self._unrecorded: set[int] = set()
        # Sends in a row that could not reach our relay, and the last reason: past two per
        # connection, with none delivered between, the relay is down and the run stops
        # (the daemon tries again a minute later) instead of spinning on retries.
        self._unreachable: tuple[int, str] = (0, "")
        self._db: ThreadPoolExecutor  # database calls, one thread; made by each run()

    def _slots(self, channel: Channel) -> Callable[[int, float], Awaitable[float]]:
        async def reserve(count: int, interval: float) -> float:
            return await self._in_db(
                rates.reserve,
                self.engine,
                self.campaign.id,
                channel.value,
                count,
                interval,
                self.clock(),
            )

        return reserve

    async def _in_db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def run(self, stop: asyncio.Event | None = None) -> RunSummary:
        """Send until every delivery is final, nothing is due within max_wait, the
        campaign is paused, or `stop`.

        Raises TransportConfigError or TemplateError, which stop the run. Claimed work
        that was not attempted is released first, so nothing is lost; an email the server
        may hold whose outcome was not recorded (at a transport when the run was
        cancelled, or answered but not written: a full disk) is marked interrupted, so a
        later send of it is a possible duplicate.
        """
        stop = stop or asyncio.Event()
        if self.campaign.delivery.require_verified_tls and Channel.EMAIL in self.transports:
            self.transports[Channel.EMAIL].check_verified_tls()  # before anything is claimed
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="herald-db")
        # What is loaded by now (templates, catalogs, SQLAlchemy, pydantic) lives as long as
        # the process; a run makes many short-lived dicts, and each full collection would
        # walk all of it. Frozen for the run: ~10% less CPU per in-app delivery (CLI send
        # of 8,725, two runs each). Unfrozen at the end, so nothing stays uncollectable.
        gc.freeze()
        summary = RunSummary()
        # A few packed messages per connection keep every sender busy; a deeper queue only
        # holds more rendered messages in memory (a batch's worth was ~25 MB of RSS)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.options.concurrency * 4)
        results: list[Result] = []
        finished = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._recorder(results, summary, finished))
                senders = [
                    tasks.create_task(self._sender(queue, results, stop))
                    for _ in range(self.options.concurrency)
                ]
                await self._producer(queue, results, summary, stop)
                for _ in senders:
                    await queue.put(_DONE)
                await asyncio.gather(*senders)
                finished.set()
        except ExceptionGroup as group:  # a sender or the recorder failed: stop the run
            raise group.exceptions[0] from None
        finally:
            try:
                try:
                    await self._flush(results, summary)
                finally:
                    # Claimed and not recorded (a stop, or an error elsewhere, even the
                    # flush's): hand them back. Rows already recorded are not 'sending'
                    # any more and are left alone.
                    await self._in_db(
                        deliveries.release,
                        self.engine,
                        self.campaign.id,
                        self.owner,
                        self.clock(),
                        sorted(self._unrecorded),
                    )
            finally:
                self._unrecorded.clear()
                self._inflight = 0
                self._db.shutdown(wait=True)
                gc.unfreeze()
        summary.stopped = stop.is_set()
        return summary

    async def _producer(
        self,
        queue: asyncio.Queue[Any],
        results: list[Result],
        summary: RunSummary,
        stop: asyncio.Event,
    ) -> None:
        # The next batch is claimed as soon as this one is in hand, so it is ready when the
        # senders drain the queue (a claim can wait for another worker's write lock, and one
        # made only then left every connection idle meanwhile). Results of batched channels
        # are held and recorded on the database thread, in order, while this thread packs.
        held: list[Result] = []
        claiming: asyncio.Future[Any] | None = None
        try:
            await self._reclaim_dead()
            while not stop.is_set():
                claimed = await (claiming or self._in_db(self._claim, self.clock()))
                claiming = None
                recording = self._record_soon(held, summary)
                if not claimed[0]:
                    if recording:
                        await recording
                    if self._inflight:
                        await _wait(stop, 0.02)  # results still to come may make retries due
                        continue
                    wake = await self._next_wake()
                    if wake is None or wake - self.clock() > self.options.max_wait_s:
                        return
                    await _wait(stop, max(0.05, min(wake - self.clock(), 1.0)))
                    continue
                loop = asyncio.get_running_loop()  # submitted now, behind the recording
                claiming = loop.run_in_executor(self._db, self._claim, self.clock())
                held += await self._pack_and_hand_over(claimed, queue)
                if recording:
                    await recording
        finally:
            if claiming is not None:  # its rows are this worker's: run() releases them
                await asyncio.wait([claiming])
                if not claiming.cancelled():
                    claiming.exception()  # retrieved; a stop or the first error wins
            results += held  # run() records them

    def _claim(self, now: float) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        """On the database thread: claim a batch, with its users and the objections its
        confirmations confirm."""
        c, o = self.campaign, self.options
        # A claimed batch holds its lease while it waits for the rate limit, and the next
        # one is claimed ahead: claim at most a quarter of a lease's worth at the rate, so
        # both go well before their leases run out (and no other worker takes them over).
        limit = min(o.batch_size, max(1, int(c.schedule.rate_per_second * o.lease_s / 4)))
        batch = deliveries.claim(self.engine, c.id, self.owner, now, o.lease_s, limit)
        users = deliveries.users_by_id(self.engine, [row["user_id"] for row in batch])
        confirming = [r["user_id"] for r in batch if r["message"] == CONFIRMATION]
        purpose = c.policy.purpose
        objected = objections_of(self.engine, confirming, purpose) if confirming else {}
        return batch, users, objected

    async def _pack_and_hand_over(
        self,
        claimed: tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]],
        queue: asyncio.Queue[Any],
    ) -> list[Result]:
        """Pack a claimed batch: queue it for the senders, or hand it over at once to a
        transport that batches (whose results are returned)."""
        batch, users, objected = claimed
        self._inflight += len(batch)
        batched: dict[Channel, list[Any]] = {}
        for i, row in enumerate(batch):
            user = users.get(row["user_id"])
            row["timezone"] = user["timezone"] if user else None
            row["objected_at"] = objected.get(row["user_id"])
            channel = self._channels[row["channel"]]
            if self.transports[channel].batches:
                batched.setdefault(channel, []).append((row, self.packer.pack(row, user)))
                continue
            await queue.put((row, self.packer.pack(row, user)))
            if i % 32 == 31:
                await asyncio.sleep(0)  # let senders run between renders
        done: list[Result] = []
        for channel, items in batched.items():
            done += await self._deliver_many(channel, items)
        return done

    async def _next_wake(self) -> float | None:
        """When there may be work again: the next due time or the next expiring lease.
        None when there is nothing left to do. While paused, only confirmations count."""
        c = self.campaign
        row = await self._in_db(campaign_store.get, self.engine, c.id)
        if row is not None and row["paused"]:  # only confirmations go
            return await self._in_db(deliveries.next_due, self.engine, c.id, True)
        await self._reclaim_dead()
        due = await self._in_db(deliveries.next_due, self.engine, c.id)
        lease = await self._in_db(deliveries.lease_expiry, self.engine, c.id)
        if lease is not None and lease <= self.clock():
            await self._in_db(deliveries.reclaim, self.engine, c.id, self.clock(), ())
            return self.clock()
        times = [t for t in (due, lease) if t is not None]
        return min(times) if times else None

    async def _reclaim_dead(self) -> None:
        """Take back at once the leases of workers on this host that no longer exist."""
        owners = await self._in_db(deliveries.sending_owners, self.engine, self.campaign.id)
        dead = [o for o in owners if o and o != self.owner and deliveries.is_dead_local(o)]
        if dead:
            count = await self._in_db(
                deliveries.reclaim, self.engine, self.campaign.id, self.clock(), dead
            )
            logger.warning("took back %d deliveries from stopped workers %s", count, dead)

    async def _sender(
        self, queue: asyncio.Queue[Any], results: list[Result], stop: asyncio.Event
    ) -> None:
        while True:
            item = await queue.get()
            if item is _DONE or stop.is_set():
                if item is not _DONE:
                    continue  # leave it claimed; run() releases what was never attempted
                return
            row, _ = item
            results.extend(await self._deliver_many(self._channels[row["channel"]], [item]))
            count, reason = self._unreachable
            if count >= 2 * self.options.concurrency:
                raise TransportConfigError(
                    f"the SMTP relay cannot be reached: {reason}. No one was marked failed "
                    "and nothing counts against anyone: what is due waits, and goes when "
                    "herald send runs again (the daemon tries again every minute)"
                )

    async def _deliver_many(
        self,
        channel: Channel,
        items: list[tuple[dict[str, Any], tuple[RenderedMessage, Outgoing] | DeliveryError]],
    ) -> list[Result]:
        """Hand claimed, packed rows to the channel's transport in one send_many call."""
        done = [self.outcomes.failure(r, p, None) for r, p in items if isinstance(p, DeliveryError)]
        ready = [(r, *p) for r, p in items if not isinstance(p, DeliveryError)]
        if ready:
            await self.limiters[channel].acquire(len(ready))
        sending: list[Sent] = []
        now = self.clock()
        for row, message, outgoing in ready:
            allowed = self.outcomes.allowed(row, now)
            if allowed > now:  # the window closed while it waited: not an attempt
                done.append(self.outcomes.reschedule(row, allowed))
            else:
                sending.append((row, message, outgoing))
        emails = {row["id"] for row, _, _ in sending} if channel is Channel.EMAIL else set()
        self._unrecorded |= emails
        try:
            receipts = await self.transports[channel].send_many([o for _, _, o in sending])
        except DeliveryError as exc:
            if not exc.maybe_delivered:  # refused, or never reached the server
                self._unrecorded -= emails
            # a relay that answers, even with a refusal, is reachable: the streak ends
            reached = not isinstance(exc, UnreachableError)
            streak = self._unreachable[0] + len(sending)
            self._unreachable = (0, "") if reached else (streak, exc.reason)
            return done + [self.outcomes.failure(row, exc, message) for row, message, _ in sending]
        except TransportConfigError:  # our setup, refused before any message: not tried
            self._unrecorded -= emails
            raise
        except asyncio.CancelledError:  # the run stopped: only a message that went is in doubt
            transport = self.transports[channel]
            self._unrecorded -= {i for i in emails if not transport.in_doubt(i)}
            raise
        self._unreachable = (0, "")
        # One instant for what one send_many handed over: sent_at, and the same in the
        # events' `at` (iso() is ~5 µs, once per batch instead of once per delivery).
        now = self.clock()
        at = iso(now)
        pairs = zip(sending, receipts, strict=True)
        return done + [self.outcomes.success(sent, receipt, now, at) for sent, receipt in pairs]

    async def _recorder(
        self, results: list[Result], summary: RunSummary, finished: asyncio.Event
    ) -> None:
        while not finished.is_set():
            if len(results) < self.options.batch_size:
                await _wait(finished, 0.2)
            await self._flush(results, summary)

    async def _flush(self, results: list[Result], summary: RunSummary) -> None:
        if recording := self._record_soon(results, summary):
            await recording

    def _record_soon(
        self, results: list[Result], summary: RunSummary
    ) -> "asyncio.Future[None] | None":
        """Take what `results` holds and queue its recording on the database thread now,
        behind the calls already queued; the future completes once it is committed and
        counted in `summary`. None when there is nothing to record."""
        if not results:
            return None
        batch = results[:]
        del results[:]
        fallback = None
        if self.campaign.fallback and any(r.status is DeliveryStatus.FAILED for r in batch):
            now = self.clock()
            fallback = Fallback(
                self.campaign.id,
                [ch.value for ch in self.campaign.channels],
                self.campaign.fallback.value,
                now,
                iso(now),
            )

        def counted(future: "asyncio.Future[None]") -> None:
            if future.cancelled() or future.exception() is not None:
                return
            self._inflight -= len(batch)
            self._unrecorded.difference_update(r.delivery_id for r in batch)
            for result in batch:
                if result.event is not None:  # a rescheduled delivery was not an outcome
                    summary.add(result.status)

        recording = asyncio.get_running_loop().run_in_executor(
            self._db, record, self.engine, self.campaign.id, self.owner, batch, fallback
        )
        recording.add_done_callback(counted)  # runs before the awaiting task resumes
        return recording


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
