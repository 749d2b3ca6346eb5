"""Send windows, pauses and the shared rate, through the real dispatcher and a SQLite file."""

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import text

from engine.authoring.campaigns import load_campaign
from engine.delivery.channels.base import Transport
from engine.delivery.channels.memory import MemoryTransport
from engine.delivery.dispatch import Dispatcher, SendOptions
from engine.delivery.planning import plan_campaign
from engine.delivery.ratelimit import RateLimiter, local_slots
from engine.delivery.tokens import Keys
from engine.errors import TemporaryDeliveryError
from engine.evidence.status import campaign_status
from engine.models import Channel
from engine.store import open_database
from engine.store.users import insert_users

KEYS = Keys(b"test-secret-0123456789abcdef")
# One recipient per zone; the shipped window is Mon-Fri 09:00-18:00 in their local time.
USERS: list[dict[str, Any]] = [
    {"id": "lisbon", "email": "l@example.com", "name": "L", "country": "PT", "locale": "pt",
     "timezone": "Europe/Lisbon"},
    {"id": "helsinki", "email": "h@example.com", "name": "H", "country": "FI", "locale": "fi",
     "timezone": "Europe/Helsinki"},
    {"id": "berlin", "email": "b@example.com", "name": "B", "country": "DE", "locale": "de",
     "timezone": None},  # no zone of its own: Germany's
]  # fmt: skip


def utc(text_: str) -> float:
    return dt.datetime.fromisoformat(text_).timestamp()


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


class Clock:
    def __init__(self, at: str) -> None:
        self.now = utc(at)

    def __call__(self) -> float:
        return self.now


def _setup(project, at: str, failures=None):
    engine = open_database(f"sqlite:///{project.root / 'herald.db'}")
    insert_users(engine, USERS)
    loaded = load_campaign(project.campaign)
    plan_campaign(engine, loaded, KEYS, now=utc(at))
    email = MemoryTransport(Channel.EMAIL, failures)
    inapp = MemoryTransport(Channel.INAPP)
    transports: dict[Channel, Transport] = {Channel.EMAIL: email, Channel.INAPP: inapp}
    clock = Clock(at)
    dispatcher = Dispatcher(engine, loaded, KEYS, transports, SendOptions(max_wait_s=0), clock)
    return engine, email, inapp, dispatcher, clock


def _due(engine) -> dict[tuple[str, str], tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT user_id, channel, status, next_attempt_at FROM delivery"))
        return {(r[0], r[1]): (r[2], iso(r[3])) for r in rows}


def test_email_waits_for_each_recipients_window_and_inapp_does_not(project):
    # Wednesday 07:30 UTC: 08:30 in Lisbon (closed), 10:30 in Helsinki, 09:30 in Berlin.
    engine, email, inapp, dispatcher, _ = _setup(project, "2024-06-05T07:30:00+00:00")
    asyncio.run(dispatcher.run())
    assert {m.user_id for m in email.sent} == {"helsinki", "berlin"}
    assert {m.user_id for m in inapp.sent} == {"lisbon", "helsinki", "berlin"}
    assert _due(engine)[("lisbon", "email")] == ("pending", "2024-06-05T08:00:00+00:00")


def test_nothing_is_planned_or_sent_on_a_weekend(project):
    engine, email, _, dispatcher, _ = _setup(project, "2024-06-08T12:00:00+00:00")  # Saturday
    asyncio.run(dispatcher.run())
    assert email.sent == []
    due = _due(engine)
    assert due[("lisbon", "email")] == ("pending", "2024-06-10T08:00:00+00:00")
    assert due[("helsinki", "email")] == ("pending", "2024-06-10T06:00:00+00:00")
    assert due[("berlin", "email")] == ("pending", "2024-06-10T07:00:00+00:00")


def test_a_retry_that_falls_after_closing_moves_to_the_next_opening(project):
    project.edit(
        "campaigns/ai-training-notice.yaml", "retry_base_seconds: 60", "retry_base_seconds: 900"
    )
    # Friday 15:55 UTC = 17:55 in Berlin; a retry 7.5-15 minutes later is after 18:00.
    failures = {"berlin": TemporaryDeliveryError("451 try later")}
    engine, email, _, dispatcher, _ = _setup(project, "2024-06-07T15:55:00+00:00", failures)
    asyncio.run(dispatcher.run())
    assert _due(engine)[("berlin", "email")] == ("deferred", "2024-06-10T07:00:00+00:00")


def test_a_delivery_due_when_its_window_has_closed_is_moved_not_sent(project):
    engine, email, _, dispatcher, clock = _setup(project, "2024-06-05T07:30:00+00:00")
    clock.now = utc("2024-06-05T16:30:00+00:00")  # 18:30 in Berlin and 19:30 in Helsinki
    asyncio.run(dispatcher.run())
    assert {m.user_id for m in email.sent} == {"lisbon"}  # 17:30 in Lisbon
    due = _due(engine)
    assert due[("berlin", "email")] == ("pending", "2024-06-06T07:00:00+00:00")
    with engine.connect() as conn:
        attempts = conn.execute(
            text("SELECT attempts FROM delivery WHERE user_id = 'berlin' AND channel = 'email'")
        ).scalar()
    assert attempts == 0  # being held for the window is not a failed attempt


def test_a_paused_campaign_claims_nothing(project, herald):
    assert herald("users", "generate", "--count", "50").exit_code == 0
    assert herald("plan", "ai-training-notice").exit_code == 0
    result = herald("pause", "ai-training-notice")
    assert result.exit_code == 0
    assert "paused" in result.output
    assert "already paused" in herald("pause", "ai-training-notice").output
    sent = herald("send", "ai-training-notice", "--max-wait", "0")
    assert sent.exit_code == 0, sent.output
    assert "the campaign is paused: herald resume ai-training-notice" in sent.stdout
    assert not list((project.root / "var" / "outbox").glob("*.eml"))
    status = json.loads(herald("status", "--format", "json").stdout)
    assert status["campaigns"][0]["state"] == "paused"
    assert status["daemons"] == []
    table = herald("status").stdout
    assert "no daemon is running" in table
    assert "ai-training-notice: paused" in table
    herald.project.path("campaigns/broken.yaml").write_text("id: broken\n")
    refused = herald("pause", "broken")
    assert refused.exit_code == 1
    assert "broken.yaml" in refused.stderr
    assert herald("resume", "ai-training-notice").exit_code == 0
    assert herald("send", "ai-training-notice", "--max-wait", "0").exit_code == 0
    with herald.database().connect() as conn:
        emails = conn.execute(text("SELECT count(*) FROM delivery WHERE channel = 'email'"))
        assert len(list((project.root / "var" / "outbox").glob("*.eml"))) == emails.scalar()
        kinds = [
            r[0] for r in conn.execute(text("SELECT kind FROM event WHERE delivery_id IS NULL"))
        ]
    assert kinds == ["started", "audience", "paused", "resumed"]


def test_shared_slots_hold_the_rate_across_limiters():
    """Two workers sharing one slot store send no faster than the rate between them."""

    async def main() -> list[float]:
        reserve = local_slots()
        limiters = [RateLimiter(200, reserve) for _ in range(2)]
        loop = asyncio.get_running_loop()
        times: list[float] = []

        async def worker(limiter: RateLimiter) -> None:
            for _ in range(100):
                await limiter.acquire()
                times.append(loop.time())

        await asyncio.gather(*(worker(limiter) for limiter in limiters))
        return times

    times = sorted(asyncio.run(main()))
    # 200 sends at 200/s take ~1 s; unshared, each worker's 100 would take 0.5 s.
    assert times[-1] - times[0] >= 0.9


@pytest.mark.parametrize(
    ("recent", "next_due", "expected"),
    [
        (10.0, None, "on track"),  # 500 left at 10/s: 50 s, deadline in an hour
        (0.1, None, "at risk"),  # 500 left at 0.1/s: 5,000 s
        (0.0, 1000.0 + 3500, "at risk"),  # idle until the window opens, then 500 at 1/s
        (0.0, 1000.0 + 60, "on track"),
    ],
)
def test_outlook_compares_the_projected_completion_with_the_deadline(recent, next_due, expected):
    row = {
        "id": "c", "title": "t", "state": "planned", "paused": False, "problem": None,
        "start_at": 0.0, "deadline_at": 1000.0 + 3600, "rate_per_second": 1.0,
    }  # fmt: skip
    status = campaign_status(row, {"pending": 500, "sent": 100}, 600, recent, next_due, 1000.0)
    assert status["outlook"] == expected
    assert status["deliveries"]["pending"] == 500
    assert status["deliveries"]["notified"] == 100
    assert status["users"] == {"targeted": 600}


def test_send_slots_reserved_in_the_database_never_overlap(tmp_path):
    """Two threads standing for two workers reserve blocks from one SQLite file."""
    from concurrent.futures import ThreadPoolExecutor

    from engine.store import rates

    engine = open_database(f"sqlite:///{tmp_path / 'herald.db'}")
    now = utc("2024-06-05T07:30:00+00:00")

    def worker(_: int) -> list[float]:
        return [rates.reserve(engine, "c", "email", 10, 0.01, now) for _ in range(50)]

    with ThreadPoolExecutor(2) as pool:
        firsts = sorted(t for block in pool.map(worker, range(2)) for t in block)
    assert len(firsts) == 100
    gaps = [round(b - a, 6) for a, b in zip(firsts, firsts[1:], strict=False)]
    assert min(gaps) >= 0.1  # each block of 10 slots 0.01 s apart is its own
    assert firsts[0] == now
    assert rates.reserve(engine, "c", "inapp", 10, 0.01, now) == now  # per channel
