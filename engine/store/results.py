"""Recording a batch of send results: delivery rows, in-app rows, events. I/O: the database.

One transaction per batch: each delivery's new status, the in-app notifications of those
delivered, and the events that record them commit together or not at all, so a delivery
is `delivered` exactly when its notification and its event exist. Rows go straight through
the driver as tuples, one executemany per statement: SQLAlchemy's statement layer, and
SQLite's binding of named parameters, each cost more per row than SQLite's own work.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Engine, select

from engine.statuses import CONFIRMATION, DeliveryStatus
from engine.store import writing
from engine.store.deliveries import Fallback, insert_planned
from engine.store.events import append_events
from engine.store.tables import DeliveryRow

_delivery = DeliveryRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one claimed delivery; `event` is its evidence record."""

    delivery_id: int
    user_id: str
    status: DeliveryStatus
    values: dict[str, Any]  # columns to set on the delivery row (RESULT_COLUMNS)
    event: dict[str, Any] | None  # None: not an attempt (moved to its send window)
    notification: dict[str, Any] | None = None  # an in-app row to store with it (NOTIFIED)
    maybe_delivered: bool = False  # the server may have it: counted in `interrupted`


RESULT_COLUMNS = (
    "status",
    "attempts",
    "next_attempt_at",
    "message_id",
    "content_sha256",
    "reply",
    "last_error",
    "sent_at",
)
NOTIFIED = (
    "delivery_id",
    "user_id",
    "campaign_id",
    "locale",
    "title",
    "body",
    "objection_url",
    "created_at",
)
_notified = itemgetter(*NOTIFIED)


def record(
    engine: Engine,
    campaign_id: str,
    owner: str,
    results: Sequence[Result],
    fallback: Fallback | None = None,
) -> None:
    """Commit a batch of results and their events in one transaction.

    A row whose lease another worker took over meanwhile is left alone; the event is
    still recorded, because the attempt did happen.
    """
    if not results:
        return
    with writing(engine) as conn:
        update, insert, unknown = _statements(conn.dialect.name)
        if maybe := [(r.delivery_id, owner) for r in results if r.maybe_delivered]:
            conn.exec_driver_sql(unknown, maybe)  # before `update` releases the lease
        rows = [(*map(r.values.get, RESULT_COLUMNS), r.delivery_id, owner) for r in results]
        conn.exec_driver_sql(update, rows)
        notifications = [_notified(r.notification) for r in results if r.notification]
        if notifications:
            conn.exec_driver_sql(insert, notifications)
        events = [r.event for r in results if r.event is not None]
        failed = [r for r in results if r.status is DeliveryStatus.FAILED]
        if fallback and failed:
            events += fallback.plan(conn, [r.user_id for r in failed])
        if failed:
            events += _confirm_in_app(conn, failed)
        append_events(conn, campaign_id, events)


@functools.cache
def _statements(dialect: str) -> tuple[str, str, str]:
    """The delivery UPDATE, the notification INSERT and the count of an unknown outcome,
    with the driver's placeholders."""
    m = "?" if dialect == "sqlite" else "%s"
    update = (
        "UPDATE delivery SET lease_owner = NULL, lease_until = NULL, "
        + ", ".join(f"{c} = {m}" for c in RESULT_COLUMNS)
        + f" WHERE id = {m} AND lease_owner = {m}"
    )
    insert = (
        f"INSERT INTO inapp_notification ({', '.join(NOTIFIED)}) "
        f"VALUES ({', '.join([m] * len(NOTIFIED))}) ON CONFLICT (delivery_id) DO NOTHING"
    )
    unknown = (
        f"UPDATE delivery SET interrupted = interrupted + 1 WHERE id = {m} AND lease_owner = {m}"
    )
    return update, insert, unknown


def _confirm_in_app(conn: Connection, failed: Sequence[Result]) -> list[dict[str, Any]]:
    """An objection is always confirmed: when its email failed for good, in-app instead."""
    at = {r.delivery_id: r.event["at"] for r in failed if r.event}
    rows = (
        conn.execute(
            select(_delivery).where(
                _delivery.c.id.in_(list(at)),
                _delivery.c.message == CONFIRMATION,
                _delivery.c.channel == "email",
            )
        )
        .mappings()
        .all()
    )
    if not rows:
        return []
    keep = ("campaign_id", "user_id", "message", "country", "locale", "locale_source")
    when = {row["user_id"]: at[row["id"]] for row in rows}
    new = [
        {
            **{k: row[k] for k in keep},
            "channel": "inapp",
            "fell_back": row["fell_back"],
            "is_fallback": True,
            "token_id": row["token_id"],
            "status": DeliveryStatus.PENDING.value,
            "next_attempt_at": 0.0,  # due at once
        }
        for row in rows
    ]
    return [
        {
            "kind": "planned",
            "at": when[row["user_id"]],
            "delivery_id": row["id"],
            "user_id": row["user_id"],
            "channel": row["channel"],
            "data": {"message": CONFIRMATION, "fallback": True, "locale": row["locale"]},
        }
        for row in insert_planned(conn, new)
    ]
