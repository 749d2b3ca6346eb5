"""In-app at table speed: a transport that batches gets each claimed batch in one call, and
every delivery in it is recorded with its event; the rate limiter hands out many slots."""

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

from engine.authoring.campaigns import load_campaign
from engine.delivery.channels.base import Outgoing, Receipt, Transport
from engine.delivery.channels.inapp import InAppTransport
from engine.delivery.channels.memory import MemoryTransport
from engine.delivery.dispatch import Dispatcher, SendOptions
from engine.delivery.planning import plan_campaign
from engine.delivery.ratelimit import RateLimiter, local_slots
from engine.delivery.synthetic import generate_users
from engine.delivery.tokens import Keys
from engine.errors import TemporaryDeliveryError
from engine.models import Channel
from engine.store import open_database
from engine.store.users import insert_users

KEYS = Keys(b"test-secret-0123456789abcdef")


class CountingInApp(InAppTransport):
    """The shipped in-app transport, counting how it is called; `stop` is set after the
    first batch, as SIGINT would."""

    def __init__(self, fail: bool = False, stop: asyncio.Event | None = None) -> None:
        self.calls: list[int] = []
        self.fail, self.stop = fail, stop

    async def send(self, message: Outgoing) -> Receipt:
        raise AssertionError("a batching transport is handed whole batches")

    async def send_many(self, messages: Sequence[Outgoing]) -> list[Receipt]:
        self.calls.append(len(messages))
        if self.fail:
            raise TemporaryDeliveryError("inbox store busy")
        if self.stop:
            self.stop.set()
        return await super().send_many(messages)


def _dispatch(
    project, inapp: Transport, users: int = 300, stop: Any = None, lease_s: float = 300.0
) -> Any:
    project.campaign.write_text(
        project.campaign.read_text().replace("channels: [email, inapp]", "channels: [inapp]")
    )
    engine = open_database(f"sqlite:///{project.root / 'herald.db'}")
    insert_users(engine, generate_users(users, seed=3))
    loaded = load_campaign(project.campaign)
    plan_campaign(engine, loaded, KEYS, now=1718000000.0)  # inside any send window
    transports = {Channel.EMAIL: MemoryTransport(), Channel.INAPP: inapp}
    options = SendOptions(batch_size=100, max_wait_s=0, lease_s=lease_s)
    summary = asyncio.run(
        Dispatcher(engine, loaded, KEYS, transports, options, lambda: 1718000000.0).run(stop)
    )
    return engine, summary


def test_inapp_goes_a_claimed_batch_at_a_time_with_every_row_and_event(project):
    inapp = CountingInApp()
    engine, summary = _dispatch(project, inapp)
    with engine.connect() as conn:
        delivered = conn.execute(
            text("SELECT COUNT(*) FROM delivery WHERE status = 'delivered'")
        ).scalar()
        rows = conn.execute(text("SELECT COUNT(*) FROM inapp_notification")).scalar()
        events = conn.execute(text("SELECT COUNT(*) FROM event WHERE kind = 'delivered'")).scalar()
    assert delivered == rows == events == summary.counts["delivered"] == sum(inapp.calls) > 100
    assert max(inapp.calls) == 100  # the claim's batch size, in one call
    assert len(inapp.calls) == -(-delivered // 100)


def test_a_stop_records_the_batch_handed_over_and_hands_back_the_rest(project):
    # The producer holds a batch's results until its next claim; a stop in between must
    # still record them with their rows and events, and release what was never attempted.
    stop = asyncio.Event()
    inapp = CountingInApp(stop=stop)
    engine, summary = _dispatch(project, inapp, stop=stop)
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, COUNT(*) FROM delivery GROUP BY status")).all()
        )
        rows = conn.execute(text("SELECT COUNT(*) FROM inapp_notification")).scalar()
        events = conn.execute(text("SELECT COUNT(*) FROM event WHERE kind = 'delivered'")).scalar()
        attempts = conn.execute(
            text("SELECT COUNT(*) FROM delivery WHERE status = 'pending' AND attempts = 0")
        ).scalar()
    assert summary.stopped
    assert inapp.calls == [100]
    assert statuses["delivered"] == rows == events == summary.counts["delivered"] == 100
    assert set(statuses) == {"delivered", "pending"}  # nothing left claimed
    assert attempts == statuses["pending"] > 0  # handed back as never attempted


def test_a_slow_rate_claims_no_more_than_a_quarter_lease_can_send(project):
    """At 2 a second and an 8 s lease, a batch is 4 deliveries: sent in ~2 s, well before
    its lease (and the one claimed ahead of it) runs out."""
    project.campaign.write_text(
        project.campaign.read_text().replace("rate_per_second: 200", "rate_per_second: 2")
    )
    inapp = CountingInApp()
    engine, summary = _dispatch(project, inapp, users=10, lease_s=8.0)
    assert summary.counts["delivered"] == sum(inapp.calls) > 4
    assert max(inapp.calls) == 4


def test_a_failed_batch_defers_every_delivery_in_it(project):
    inapp = CountingInApp(fail=True)
    engine, summary = _dispatch(project, inapp, users=30)
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(text("SELECT status, COUNT(*) FROM delivery GROUP BY status")).all()
        )
    assert inapp.calls == [sum(statuses.values())]  # one batch, then a retry is not yet due
    assert statuses == {"deferred": inapp.calls[0]}
    assert "delivered" not in statuses


def test_acquire_takes_count_slots_and_waits_for_the_last():
    limiter = RateLimiter(20.0, local_slots(), block_seconds=0.25)  # blocks of 5 slots
    started = time.monotonic()
    asyncio.run(limiter.acquire(7))  # slots 0..6: the last is 0.30 s after the first
    waited = time.monotonic() - started
    assert 0.25 <= waited < 2.0
    started = time.monotonic()
    asyncio.run(limiter.acquire(1))  # slot 7: 0.05 s after the last one
    assert time.monotonic() - started < 0.5
