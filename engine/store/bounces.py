"""Bounces in the delivery table: find the delivery a report names, move it to bounced,
record delays and complaints once. I/O: the database.

Every change commits with the events that record it; a report that changes nothing
(already bounced, seen before) records nothing.
"""

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, select, update

from engine.statuses import DeliveryStatus
from engine.store import pages, upsert_into, writing
from engine.store.deliveries import Fallback
from engine.store.events import append_events
from engine.store.tables import BounceReceipt, DeliveryRow, UserRow

_delivery = DeliveryRow.__table__  # type: ignore[attr-defined]
_receipt = BounceReceipt.__table__  # type: ignore[attr-defined]
_user = UserRow.__table__  # type: ignore[attr-defined]


def delivery_by_id(engine: Engine, delivery_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(_delivery).where(_delivery.c.id == delivery_id)).mappings()
        first = row.first()
    return dict(first) if first else None


def delivery_by_message_id(engine: Engine, message_ids: Sequence[str]) -> dict[str, Any] | None:
    """The email delivery that carried one of `message_ids` (the first found)."""
    if not message_ids:
        return None
    with engine.connect() as conn:
        row = (
            conn.execute(
                select(_delivery)
                .where(
                    _delivery.c.message_id.in_(list(message_ids)), _delivery.c.channel == "email"
                )
                .order_by(_delivery.c.id)
                .limit(1)
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


def mark_bounced(
    engine: Engine,
    delivery: dict[str, Any],
    last_error: str,
    event: dict[str, Any],
    now: float,
    fallback: Fallback | None,
) -> bool:
    """Move a sent email to bounced, with its event and the fallback it calls for.

    False, and nothing written, when the delivery is no longer `sent` (bounced already,
    or never sent): a final status never moves twice.
    """
    with writing(engine) as conn:
        moved = conn.execute(
            update(_delivery)
            .where(
                _delivery.c.id == delivery["id"],
                _delivery.c.status == DeliveryStatus.SENT.value,
                _delivery.c.channel == "email",
            )
            .values(status=DeliveryStatus.BOUNCED.value, last_error=last_error, bounced_at=now)
        ).rowcount
        if moved != 1:
            return False
        events = [event]
        if fallback is not None:
            events += fallback.plan(conn, [delivery["user_id"]])
        append_events(conn, delivery["campaign_id"], events)
    return True


def record_once(
    engine: Engine, key: str, delivery: dict[str, Any], event: dict[str, Any], now: float
) -> bool:
    """Append `event` unless a report with this `key` was recorded before."""
    with writing(engine) as conn:
        inserted = conn.execute(
            upsert_into(conn, _receipt)
            .values(key=key, delivery_id=delivery["id"], kind=event["kind"], received_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(_receipt.c.key)  # rowcount is -1 here on psycopg
        ).first()
        if inserted is None:
            return False
        append_events(conn, delivery["campaign_id"], [event])
    return True


def bounced(engine: Engine, campaign_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Bounced deliveries with the user's address (None once erased), oldest first, streamed."""
    where = _delivery.c.status == DeliveryStatus.BOUNCED.value
    if campaign_id is not None:
        where = where & (_delivery.c.campaign_id == campaign_id)
    for rows in pages(engine, _delivery, where, _delivery.c.id, 2000):
        with engine.connect() as conn:
            emails: dict[str, str | None] = dict(
                conn.execute(
                    select(_user.c.id, _user.c.email).where(
                        _user.c.id.in_(sorted({r["user_id"] for r in rows}))
                    )
                ).all()
            )
        for row in rows:
            yield {**row, "email": emails.get(row["user_id"])}
