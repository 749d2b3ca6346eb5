"""Appending to and reading the hash chain. I/O: the database.

Appends happen inside the caller's transaction, the one that changes the state the
events record, so a status change and its evidence commit together or not at all.
"""

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text

from engine.canonical import GENESIS, canonical_json, event_hash
from engine.store import executemany, pages
from engine.store.tables import ChainHead, EventRow

_event = EventRow.__table__  # type: ignore[attr-defined]
_head = ChainHead.__table__  # type: ignore[attr-defined]


_INSERT = (
    "INSERT INTO event (campaign_id, seq, kind, at, delivery_id, user_id, channel, data, "
    "prev_hash, hash) VALUES (:campaign_id, :seq, :kind, :at, :delivery_id, :user_id, "
    ":channel, :data, :prev_hash, :hash)"
)


def iso(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def append_events(conn: Connection, campaign_id: str, events: Sequence[dict[str, Any]]) -> None:
    """Chain and insert `events` (kind, at, delivery_id, user_id, channel, data: dict).

    The head row is locked for the rest of the transaction (SQLite: by BEGIN IMMEDIATE;
    PostgreSQL: FOR UPDATE), so concurrent writers append one after another.
    """
    if not events:
        return
    query = select(_head.c.seq, _head.c.hash).where(_head.c.campaign_id == campaign_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    seq, prev = (row[0], row[1]) if row else (0, GENESIS)
    rows = []
    for event in events:
        seq += 1
        record = {
            "campaign_id": campaign_id,
            "seq": seq,
            "kind": event["kind"],
            "at": event["at"],
            "delivery_id": event.get("delivery_id"),
            "user_id": event.get("user_id"),
            "channel": event.get("channel"),
            "data": canonical_json(event.get("data", {})),
        }
        record["prev_hash"] = prev
        record["hash"] = prev = event_hash(prev, record)
        rows.append(record)
    executemany(conn, _INSERT, rows)
    if row:
        conn.execute(
            _head.update().where(_head.c.campaign_id == campaign_id).values(seq=seq, hash=prev)
        )
    else:
        conn.execute(insert(_head).values(campaign_id=campaign_id, seq=seq, hash=prev))


def iter_events(engine: Engine, campaign_id: str, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """A campaign's events in seq order, streamed."""
    for rows in pages(engine, _event, _event.c.campaign_id == campaign_id, _event.c.seq, batch):
        yield from rows


def chain_heads(engine: Engine) -> dict[str, tuple[int, str]]:
    with engine.connect() as conn:
        return {
            r[0]: (r[1], r[2])
            for r in conn.execute(text("SELECT campaign_id, seq, hash FROM chain_head"))
        }
