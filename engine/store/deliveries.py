"""The delivery table: planning inserts, claims under a lease, results. I/O: the database.

This is the one module that knows how workers share the queue. A claim is one UPDATE
over the (campaign_id, status, next_attempt_at) index; on PostgreSQL its inner SELECT
takes FOR UPDATE SKIP LOCKED so that workers on several machines never wait on each
other. Every status change commits together with the events that record it.
"""

import functools
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, func, select, text, update

from engine.models import Channel
from engine.statuses import CONFIRMATION, NOTICE, UNREACHED, DeliveryStatus
from engine.store import one_of, writing
from engine.store.planned import insert_planned as insert_planned  # re-exported
from engine.store.tables import DeliveryRow

_delivery = DeliveryRow.__table__  # type: ignore[attr-defined]
_DUE = (DeliveryStatus.PENDING.value, DeliveryStatus.DEFERRED.value)
_UNREACHED = tuple(s.value for s in UNREACHED)
_CLAIMED = (
    "id user_id channel message country locale locale_source fell_back token_id attempts "
    "next_attempt_at interrupted"
).split()
_USER = ("id", "email", "name", "country", "locale", "timezone")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead_local(owner: str) -> bool:
    """A worker_id() of this host whose process no longer exists, or has ended and waits
    only to be reaped (a zombie: a `send --workers` worker that was killed is one until
    the command joins it, after its own run)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """Linux's word for it (proc(5): the state after the command's name in parentheses);
    False where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


def claim(
    engine: Engine, campaign_id: str, owner: str, now: float, lease_s: float, limit: int
) -> list[dict[str, Any]]:
    """Take up to `limit` due deliveries for `owner` until now + lease_s, in id order,
    with the columns a send needs (_CLAIMED); only confirmations while the campaign is
    paused (checked in the same statement, so a pause holds notices at once: it exists to
    stop a wrong notice, never an acknowledgement)."""
    with writing(engine) as conn:
        sql = _claim_sql(conn.dialect.name)
        result = conn.exec_driver_sql(
            sql, (owner, now + lease_s, campaign_id, now, campaign_id, limit)
        )
        rows = [dict(zip(_CLAIMED, row, strict=True)) for row in result]
    for row in rows:
        row["fell_back"] = bool(row["fell_back"])  # SQLite returns 0 or 1; the evidence says false
    rows.sort(key=lambda r: r["id"])
    return rows


@functools.cache
def _claim_sql(dialect: str) -> str:
    """The claim as one UPDATE over the (campaign_id, status, next_attempt_at) index, straight
    through the driver: SQLAlchemy's statement and row layers cost more than SQLite's own
    work here (claim was ~8% of an in-app send's CPU)."""
    m = "?" if dialect == "sqlite" else "%s"
    lock = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
    return (
        f"UPDATE delivery SET status = '{DeliveryStatus.SENDING.value}', lease_owner = {m}, "
        f"lease_until = {m}, attempts = attempts + 1 WHERE id IN (SELECT id FROM delivery "
        f"WHERE campaign_id = {m} AND status IN ('{_DUE[0]}', '{_DUE[1]}') "
        f"AND next_attempt_at <= {m} "
        f"AND (message = '{CONFIRMATION}' OR NOT EXISTS "
        f"(SELECT 1 FROM campaign WHERE id = {m} AND paused)) "
        f"ORDER BY next_attempt_at, id LIMIT {m}{lock}) RETURNING {', '.join(_CLAIMED)}"
    )


def users_by_id(engine: Engine, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The users a send needs (id, email, name, country, locale, timezone), by id."""
    wanted = tuple(sorted(set(ids)))
    if not wanted:
        return {}
    with engine.connect() as conn:
        where, params = one_of(conn, "id", wanted)
        sql = f'SELECT {", ".join(_USER)} FROM "user" WHERE {where}'
        return {
            row[0]: dict(zip(_USER, row, strict=True)) for row in conn.exec_driver_sql(sql, params)
        }


def samples(engine: Engine, campaign_id: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One due notice for each channel, locale and country, with and without a user
    name, as claim() and users_by_id() give them (a row and its user), in id order.
    Rendering these before the workers start prepares what each would otherwise prepare
    again: every language's catalog and dates, and the variants most users share."""
    wanted = (
        'SELECT MIN(d.id) FROM delivery d JOIN "user" u ON u.id = d.user_id '
        "WHERE d.campaign_id = :campaign AND d.status IN :due AND d.message = :notice "
        "GROUP BY d.channel, d.locale, d.country, u.name IS NULL"
    )
    columns = [f"d.{c}" for c in _CLAIMED] + [f"u.{c}" for c in _USER]
    sql = (
        f'SELECT {", ".join(columns)} FROM delivery d JOIN "user" u ON u.id = d.user_id '
        f"WHERE d.id IN ({wanted}) ORDER BY d.id"
    )
    statement = text(sql).bindparams(bindparam("due", expanding=True))
    params = {"campaign": campaign_id, "due": list(_DUE), "notice": NOTICE}
    out = []
    with engine.connect() as conn:
        for row in conn.execute(statement, params):
            claimed = dict(zip(_CLAIMED, row[: len(_CLAIMED)], strict=True))
            claimed["fell_back"] = bool(claimed["fell_back"])
            out.append((claimed, dict(zip(_USER, row[len(_CLAIMED) :], strict=True))))
    return out


def reclaim(engine: Engine, campaign_id: str, now: float, dead_owners: Sequence[str] = ()) -> int:
    """Put back deliveries whose lease expired, or whose owner is known dead.

    An email may have reached the server before its worker died, so `interrupted` is
    counted: a later send of the same delivery (same Message-ID) is a possible duplicate.
    An in-app delivery cannot be: its notification row is written with its outcome."""
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
                interrupted=_delivery.c.interrupted
                + case((_delivery.c.channel == Channel.EMAIL.value, 1), else_=0),
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
