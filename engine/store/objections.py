"""Objections, the in-app feed and `seen`. I/O: the database.

An objection, its `objected` event and the confirmation it queues commit together, or
not at all. One objection per user and purpose: a second post, on the same or a later
campaign's link, finds the first.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, text, update

from engine.models import Channel, LocaleSource
from engine.statuses import CONFIRMATION, NOTICE, DeliveryStatus
from engine.store import pages, upsert_into, writing
from engine.store.deliveries import insert_planned
from engine.store.events import append_events, iso
from engine.store.tables import DeliveryRow, InAppNotification, ObjectionRow, UserRow

_delivery = DeliveryRow.__table__  # type: ignore[attr-defined]
_objection = ObjectionRow.__table__  # type: ignore[attr-defined]
_inapp = InAppNotification.__table__  # type: ignore[attr-defined]
_user = UserRow.__table__  # type: ignore[attr-defined]
_REACHED = (DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value)


@dataclass(frozen=True, slots=True)
class Notice:
    """What a token points at: one user's notice of one campaign."""

    campaign_id: str
    user_id: str
    token_id: str
    country: str
    locale: str  # the language the notice was written in
    locale_source: str
    fell_back: bool
    channel: str  # email if the notice reached the user by email, else inapp
    delivery_id: int  # the notice's delivery on that channel (or the first one)
    timezone: str | None  # the user's, for dates shown to them


def find_notice(engine: Engine, token_id: str) -> Notice | None:
    with engine.connect() as conn:
        rows = (
            conn.execute(
                select(_delivery)
                .where(_delivery.c.token_id == token_id, _delivery.c.message == NOTICE)
                .order_by(_delivery.c.id)
            )
            .mappings()
            .all()
        )
        if not rows:
            return None
        timezone = conn.execute(
            select(_user.c.timezone).where(_user.c.id == rows[0]["user_id"])
        ).scalar()
    by_email = [r for r in rows if r["channel"] == Channel.EMAIL.value and r["status"] in _REACHED]
    row = by_email[0] if by_email else rows[0]
    channel = Channel.EMAIL.value if by_email else Channel.INAPP.value
    return Notice(
        row["campaign_id"],
        row["user_id"],
        token_id,
        row["country"],
        row["locale"],
        row["locale_source"],
        bool(row["fell_back"]),
        channel,
        row["id"],
        timezone,
    )


def objection_of(engine: Engine, user_id: str, purpose: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        return _objection_of(conn, user_id, purpose)


def _objection_of(conn: Connection, user_id: str, purpose: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            select(_objection).where(
                _objection.c.user_id == user_id, _objection.c.purpose == purpose
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def objections_of(engine: Engine, user_ids: Sequence[str], purpose: str) -> dict[str, float]:
    """When each of `user_ids` objected to `purpose`."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(_objection.c.user_id, _objection.c.objected_at).where(
                _objection.c.user_id.in_(sorted(set(user_ids))), _objection.c.purpose == purpose
            )
        )
        return {r.user_id: r.objected_at for r in rows}


@dataclass(frozen=True, slots=True)
class Recorded:
    objection: dict[str, Any]
    first: bool  # False: the user had already objected to this purpose


def record_objection(
    engine: Engine,
    notice: Notice,
    purpose: str,
    locale: str,
    reason: str | None,
    via: str,
    now: float,
) -> Recorded:
    """Record the objection, its event and the confirmation to send, in one transaction."""
    values = {
        "user_id": notice.user_id,
        "purpose": purpose,
        "campaign_id": notice.campaign_id,
        "channel": notice.channel,
        "locale": locale,
        "reason": reason,
        "objected_at": now,
        "via": via,
    }
    with writing(engine) as conn:
        inserted = conn.execute(
            upsert_into(conn, _objection)
            .values(values)
            .on_conflict_do_nothing(index_elements=["user_id", "purpose"])
            .returning(_objection.c.id)
        ).first()
        if inserted is None:
            existing = _objection_of(conn, notice.user_id, purpose)
            assert existing is not None
            return Recorded(existing, first=False)
        confirmation = insert_planned(
            conn,
            [
                {
                    "campaign_id": notice.campaign_id,
                    "user_id": notice.user_id,
                    "channel": notice.channel,
                    "message": CONFIRMATION,
                    "country": notice.country,
                    "locale": locale,
                    "locale_source": (
                        notice.locale_source if locale == notice.locale else LocaleSource.USER.value
                    ),
                    "fell_back": notice.fell_back and locale == notice.locale,
                    "token_id": notice.token_id,
                    "status": DeliveryStatus.PENDING.value,
                    "next_attempt_at": now,
                }
            ],
        )
        at = iso(now)
        events: list[dict[str, Any]] = [
            {
                "kind": "objected",
                "at": at,
                "delivery_id": notice.delivery_id,
                "user_id": notice.user_id,
                "channel": notice.channel,
                "data": {
                    "objection_id": inserted.id,
                    "purpose": purpose,
                    "locale": locale,
                    "via": via,
                    "reason_given": bool(reason),
                },
            }
        ]
        events += [
            {
                "kind": "planned",
                "at": at,
                "delivery_id": row["id"],
                "user_id": row["user_id"],
                "channel": row["channel"],
                "data": {"message": CONFIRMATION, "locale": locale},
            }
            for row in confirmation
        ]
        append_events(conn, notice.campaign_id, events)
    return Recorded({**values, "id": inserted.id}, first=True)


def notifications(
    engine: Engine,
    user_id: str,
    campaigns: frozenset[str] | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A user's in-app notifications, newest first, `limit` at a time (keyset: `before`
    is the last id of the previous page)."""
    query = select(_inapp).where(_inapp.c.user_id == user_id)
    if campaigns is not None:
        query = query.where(_inapp.c.campaign_id.in_(sorted(campaigns)))
    if before is not None:
        query = query.where(_inapp.c.id < before)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(_inapp.c.id.desc()).limit(limit)).mappings()
        return [dict(r) for r in rows]


def mark_seen(
    engine: Engine,
    notification_id: int,
    campaigns: frozenset[str] | None,
    now: float,
    by: str | None = None,
) -> dict[str, Any] | None:
    """Set seen_at once and record a `seen` event with it, naming the API key `by`;
    None if there is no such notification among `campaigns`."""
    query = select(_inapp).where(_inapp.c.id == notification_id)
    with writing(engine) as conn:
        if conn.dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE already serialises
            query = query.with_for_update()
        found = conn.execute(query).mappings().first()
        if found is None or (campaigns is not None and found["campaign_id"] not in campaigns):
            return None
        row = dict(found)
        if row["seen_at"] is not None:
            return row
        conn.execute(update(_inapp).where(_inapp.c.id == notification_id).values(seen_at=now))
        append_events(
            conn,
            row["campaign_id"],
            [
                {
                    "kind": "seen",
                    "at": iso(now),
                    "delivery_id": row["delivery_id"],
                    "user_id": row["user_id"],
                    "channel": Channel.INAPP.value,
                    "data": {
                        "notification_id": notification_id,
                        "locale": row["locale"],
                        **({"key": by} if by else {}),
                    },
                }
            ],
        )
        return {**row, "seen_at": now}


def iter_objections(
    engine: Engine, purpose: str | None, since: float | None, batch: int = 5000
) -> Iterator[dict[str, Any]]:
    """Objections in the order they were recorded, streamed."""
    condition = _objection.c.id > 0
    if purpose is not None:
        condition = condition & (_objection.c.purpose == purpose)
    if since is not None:
        condition = condition & (_objection.c.objected_at >= since)
    for rows in pages(engine, _objection, condition, _objection.c.id, batch):
        yield from rows


def purge_reasons(engine: Engine, now: float) -> dict[str, int]:
    """Forget the reasons given with objections older than their campaign's
    `objection.reason_retention_days`, recording a `purged` event per campaign; how many
    per campaign."""
    purged: dict[str, int] = {}
    with engine.connect() as conn:
        campaigns = conn.execute(
            text(
                "SELECT id, reason_retention_days FROM campaign "
                "WHERE reason_retention_days IS NOT NULL AND planned_at IS NOT NULL"
            )
        ).all()
    for campaign_id, days in campaigns:
        cutoff = now - days * 86400
        with writing(engine) as conn:
            count = conn.execute(
                text(
                    "UPDATE objection SET reason = NULL WHERE campaign_id = :c "
                    "AND reason IS NOT NULL AND objected_at < :t"
                ),
                {"c": campaign_id, "t": cutoff},
            ).rowcount
            if count:
                data = {"reasons": count, "objected_before": iso(cutoff), "retention_days": days}
                append_events(conn, campaign_id, [{"kind": "purged", "at": iso(now), "data": data}])
                purged[campaign_id] = count
    return purged
