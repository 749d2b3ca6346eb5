"""The delivery table: planning inserts, claims under a lease, results. I/O: the database.

This is the one module that knows how workers share the queue. A claim is one UPDATE
over the (campaign_id, status, next_attempt_at) index; on PostgreSQL its inner SELECT
takes FOR UPDATE SKIP LOCKED so that workers on several machines never wait on each
other. Every status change commits together with the events that record it.
"""

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from engine.statuses import CONFIRMATION, FINAL, NOTICE, UNREACHED, DeliveryStatus
from engine.store import dicts, executemany, writing
from engine.store.events import append_events
from engine.store.planned import insert_planned as insert_planned  # re-exported
from engine.store.tables import CampaignRow, DeliveryRow, InAppNotification, UserRow

_delivery = DeliveryRow.__table__  # type: ignore[attr-defined]
_campaign = CampaignRow.__table__  # type: ignore[attr-defined]
_user = UserRow.__table__  # type: ignore[attr-defined]
_inapp = InAppNotification.__table__  # type: ignore[attr-defined]
_FINAL = tuple(s.value for s in FINAL)
_DUE = (DeliveryStatus.PENDING.value, DeliveryStatus.DEFERRED.value)
_UNREACHED = tuple(s.value for s in UNREACHED)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead_local(owner: str) -> bool:
    """A worker_id() of this host whose process no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim(
    engine: Engine, campaign_id: str, owner: str, now: float, lease_s: float, limit: int
) -> list[dict[str, Any]]:
    """Take up to `limit` due deliveries for `owner` until now + lease_s; only
    confirmations while the campaign is paused (checked in the same statement, so a pause
    holds notices at once: it exists to stop a wrong notice, never an acknowledgement)."""
    paused = select(_campaign.c.id).where(_campaign.c.id == campaign_id, _campaign.c.paused)
    due = (
        select(_delivery.c.id)
        .where(
            _delivery.c.campaign_id == campaign_id,
            _delivery.c.status.in_(_DUE),
            _delivery.c.next_attempt_at <= now,
            ~paused.exists() | (_delivery.c.message == CONFIRMATION),
        )
        .order_by(_delivery.c.next_attempt_at, _delivery.c.id)
        .limit(limit)
    )
    with writing(engine) as conn:
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        statement = (
            update(_delivery)
            .where(_delivery.c.id.in_(due.scalar_subquery()))
            .values(
                status=DeliveryStatus.SENDING.value,
                lease_owner=owner,
                lease_until=now + lease_s,
                attempts=_delivery.c.attempts + 1,
            )
            .returning(*_delivery.c)
        )
        rows = dicts(conn.execute(statement))
    rows.sort(key=lambda r: r["id"])
    return rows


def users_by_id(engine: Engine, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = dicts(conn.execute(select(_user).where(_user.c.id.in_(sorted(set(ids))))))
        return {r["id"]: r for r in rows}


def reclaim(engine: Engine, campaign_id: str, now: float, dead_owners: Sequence[str] = ()) -> int:
    """Put back deliveries whose lease expired, or whose owner is known dead.

    They may have reached the server before their worker died, so `interrupted` is
    counted: a later send of the same delivery (same Message-ID) is a possible duplicate.
    """
    stuck = (_delivery.c.lease_until < now) | _delivery.c.lease_owner.in_(list(dead_owners))
    with writing(engine) as conn:
        result = conn.execute(
            update(_delivery)
            .where(
                _delivery.c.campaign_id == campaign_id,
                _delivery.c.status == DeliveryStatus.SENDING.value,
                stuck,
            )
            .values(
                status=DeliveryStatus.DEFERRED.value,
                lease_owner=None,
                lease_until=None,
                next_attempt_at=now,
                interrupted=_delivery.c.interrupted + 1,
            )
        )
        return result.rowcount


def sending_owners(engine: Engine, campaign_id: str) -> list[str]:
    with engine.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                select(_delivery.c.lease_owner)
                .distinct()
                .where(
                    _delivery.c.campaign_id == campaign_id,
                    _delivery.c.status == DeliveryStatus.SENDING.value,
                )
            )
        ]


def release(
    engine: Engine, campaign_id: str, owner: str, now: float, interrupted: Sequence[int] = ()
) -> None:
    """Hand back what `owner` claimed: never attempted (a clean stop), or `interrupted`
    while at a transport (a cancelled send: it may have arrived, so it counts as such)."""
    mine = (
        (_delivery.c.campaign_id == campaign_id)
        & (_delivery.c.lease_owner == owner)
        & (_delivery.c.status == DeliveryStatus.SENDING.value)
    )
    freed = {"lease_owner": None, "lease_until": None, "next_attempt_at": now}
    with writing(engine) as conn:
        if interrupted:
            conn.execute(
                update(_delivery)
                .where(mine, _delivery.c.id.in_(list(interrupted)))
                .values(
                    status=DeliveryStatus.DEFERRED.value,
                    interrupted=_delivery.c.interrupted + 1,
                    **freed,
                )
            )
        conn.execute(
            update(_delivery)
            .where(mine)
            .values(status=DeliveryStatus.PENDING.value, attempts=_delivery.c.attempts - 1, **freed)
        )


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one claimed delivery; `event` is its evidence record."""

    delivery_id: int
    user_id: str
    status: DeliveryStatus
    values: dict[str, Any]  # columns to set on the delivery row
    event: dict[str, Any] | None  # None: not an attempt (moved to its send window)
    notification: dict[str, Any] | None = None  # an in-app row to store with it


def record(
    engine: Engine,
    campaign_id: str,
    owner: str,
    results: Sequence[Result],
    fallback: "Fallback | None" = None,
) -> None:
    """Commit a batch of results and their events in one transaction.

    A row whose lease another worker took over meanwhile is left alone; the event is
    still recorded, because the attempt did happen.
    """
    if not results:
        return
    with writing(engine) as conn:
        executemany(
            conn,
            _RECORD,
            [
                {
                    "b_id": r.delivery_id,
                    "owner": owner,
                    **{k: r.values.get(k) for k in _RESULT_COLUMNS},
                }
                for r in results
            ],
        )
        executemany(conn, _NOTIFY, [r.notification for r in results if r.notification])
        events = [r.event for r in results if r.event is not None]
        failed = [r for r in results if r.status is DeliveryStatus.FAILED]
        if fallback and failed:
            events += fallback.plan(conn, [r.user_id for r in failed])
        if failed:
            events += _confirm_in_app(conn, failed)
        append_events(conn, campaign_id, events)


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


_RESULT_COLUMNS = (
    "status",
    "attempts",
    "next_attempt_at",
    "message_id",
    "content_sha256",
    "reply",
    "last_error",
    "sent_at",
)
_RECORD = (
    "UPDATE delivery SET lease_owner = NULL, lease_until = NULL, "
    + ", ".join(f"{c} = :{c}" for c in _RESULT_COLUMNS)
    + " WHERE id = :b_id AND lease_owner = :owner"
)
_NOTIFY = (
    "INSERT INTO inapp_notification (delivery_id, user_id, campaign_id, locale, title, body, "
    "objection_url, created_at) VALUES (:delivery_id, :user_id, :campaign_id, :locale, :title, "
    ":body, :objection_url, :created_at) ON CONFLICT (delivery_id) DO NOTHING"
)


class Fallback:
    """Plans the campaign's fallback channel for users whose listed channels all failed
    or bounced."""

    def __init__(
        self, campaign_id: str, channels: Sequence[str], channel: str, now: float, event_at: str
    ) -> None:
        self.campaign_id, self.channels, self.channel = campaign_id, tuple(channels), channel
        self.now, self.event_at = now, event_at

    def plan(self, conn: Connection, user_ids: Sequence[str]) -> list[dict[str, Any]]:
        rows = (
            conn.execute(
                select(_delivery).where(
                    _delivery.c.campaign_id == self.campaign_id,
                    _delivery.c.user_id.in_(sorted(set(user_ids))),
                    _delivery.c.channel.in_(self.channels),
                    _delivery.c.message == NOTICE,
                )
            )
            .mappings()
            .all()
        )
        by_user: dict[str, list[Any]] = {}
        for row in rows:
            by_user.setdefault(row["user_id"], []).append(row)
        new = []
        for user_id, deliveries in by_user.items():
            if len(deliveries) == len(self.channels) and all(
                d["status"] in _UNREACHED for d in deliveries
            ):
                template = deliveries[0]
                new.append(
                    {
                        "campaign_id": self.campaign_id,
                        "user_id": user_id,
                        "channel": self.channel,
                        "country": template["country"],
                        "locale": template["locale"],
                        "locale_source": template["locale_source"],
                        "fell_back": template["fell_back"],
                        "is_fallback": True,
                        "token_id": template["token_id"],
                        "status": DeliveryStatus.PENDING.value,
                        "next_attempt_at": self.now,
                    }
                )
        inserted = insert_planned(conn, new) if new else []
        return [
            {
                "kind": "planned",
                "at": self.event_at,
                "delivery_id": row["id"],
                "user_id": row["user_id"],
                "channel": row["channel"],
                "data": {
                    "fallback": True,
                    "locale": row["locale"],
                    "locale_source": row["locale_source"],
                    "fell_back": row["fell_back"],
                },
            }
            for row in inserted
        ]


def progress(engine: Engine, campaign_id: str) -> dict[str, int]:
    """Deliveries per status."""
    with engine.connect() as conn:
        return {
            r[0]: r[1]
            for r in conn.execute(
                select(_delivery.c.status, func.count())
                .where(_delivery.c.campaign_id == campaign_id)
                .group_by(_delivery.c.status)
            )
        }


def next_due(engine: Engine, campaign_id: str, confirmations_only: bool = False) -> float | None:
    """When the earliest non-final, unclaimed delivery (or confirmation) becomes due."""
    where = [_delivery.c.campaign_id == campaign_id, _delivery.c.status.in_(_DUE)]
    if confirmations_only:
        where.append(_delivery.c.message == CONFIRMATION)
    with engine.connect() as conn:
        value = conn.execute(select(func.min(_delivery.c.next_attempt_at)).where(*where)).scalar()
    return None if value is None else float(value)


def lease_expiry(engine: Engine, campaign_id: str) -> float | None:
    with engine.connect() as conn:
        value = conn.execute(
            select(func.min(_delivery.c.lease_until)).where(
                _delivery.c.campaign_id == campaign_id,
                _delivery.c.status == DeliveryStatus.SENDING.value,
            )
        ).scalar()
    return None if value is None else float(value)


def first_reached(engine: Engine, campaign_id: str) -> dict[str, Any] | None:
    """A user the campaign's notice reached by email (the first by id), for a demo."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                select(_delivery.c.user_id, _delivery.c.token_id, _delivery.c.locale)
                .where(
                    _delivery.c.campaign_id == campaign_id,
                    _delivery.c.message == NOTICE,
                    _delivery.c.channel == "email",
                    _delivery.c.status == DeliveryStatus.SENT.value,
                )
                .order_by(_delivery.c.user_id)
                .limit(1)
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None
