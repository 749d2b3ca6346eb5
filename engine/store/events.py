"""Appending to and reading each campaign's evidence log (format v1). I/O: the database.

Appends happen inside the caller's transaction, the one that changes the state the
events record, so a status change and its evidence commit together or not at all. Each
event is stored as its canonical bytes (the Merkle leaf) and the campaign's tree head
moves with it, in O(log n), under a lock that serialises writers of one campaign.
"""

import datetime as dt
import hashlib
import hmac
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text

from engine.canonical import FORMAT, Frontier, canonical, leaf_hash
from engine.store import one_of, stream
from engine.store.tables import EventRow, SubjectKey, TreeHead

_event = EventRow.__table__  # type: ignore[attr-defined]
_head = TreeHead.__table__  # type: ignore[attr-defined]
_subject = SubjectKey.__table__  # type: ignore[attr-defined]

ERASED = "erased:"  # see delivery/erasure.py

_COLUMNS = "campaign_id, seq, kind, at, subject, delivery_id, channel, body"
_INSERT_SUBJECT = (
    "INSERT INTO subject_key (user_id, subject, secret) VALUES ({0}, {0}, {0}) "
    "ON CONFLICT (user_id) DO NOTHING"
)
_SUBJECTS_PER_QUERY = 1000  # ids in one IN list: far under SQLite's 32,766 parameters


def iso(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def subject_of(user_id: str, secret: bytes) -> str:
    """A user's pseudonym: the first 128 bits of HMAC-SHA256(secret, user id), in hex."""
    return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def subjects(conn: Connection, user_ids: Iterable[str]) -> dict[str, str]:
    """The subject of each user, made (with a new random secret) for users who have none.
    An erased user's rows carry `erased:<subject>` instead of their id: that subject.

    Plain driver statements with positional parameters, rows fetched at once: this
    lookup was ~20% of append_events on a plan, mostly SQLAlchemy compiling a bind name
    per id of its expanding IN and fetching row by row (bench/profile_send.py)."""
    wanted = sorted(set(user_ids))
    erased = {u: u.removeprefix(ERASED) for u in wanted if u.startswith(ERASED)}
    wanted = [u for u in wanted if u not in erased]
    if not wanted:
        return erased
    found = _known_subjects(conn, wanted)
    missing = [u for u in wanted if u not in found]
    if missing:
        mark = _mark(conn)
        rows = []
        for user_id in missing:
            secret = os.urandom(32)
            rows.append((user_id, subject_of(user_id, secret), secret.hex()))
        conn.exec_driver_sql(_INSERT_SUBJECT.format(mark), rows)
        # Read back rather than trust our own rows: another writer may have made the
        # subject first (DO NOTHING kept theirs).
        found |= _known_subjects(conn, missing)
    return found | erased


def _known_subjects(conn: Connection, user_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for first in range(0, len(user_ids), _SUBJECTS_PER_QUERY):
        where, params = one_of(conn, "user_id", user_ids[first : first + _SUBJECTS_PER_QUERY])
        sql = f"SELECT user_id, subject FROM subject_key WHERE {where}"
        found.update(conn.exec_driver_sql(sql, params).fetchall())
    return found


def _mark(conn: Connection) -> str:
    """The driver's positional parameter: sqlite3 takes ?, psycopg %s."""
    return "?" if conn.dialect.name == "sqlite" else "%s"


def append_events(conn: Connection, campaign_id: str, events: Sequence[dict[str, Any]]) -> None:
    """Append `events` (kind, at, and optionally delivery_id, user_id or subject, channel,
    data: a dict) to the campaign's log.

    The head row is locked for the rest of the transaction (SQLite: by BEGIN IMMEDIATE;
    PostgreSQL: FOR UPDATE), so concurrent writers append one after another. A user id
    never reaches the log: it becomes the user's subject. The rows go to the driver as
    tuples in one executemany (named parameters cost sqlite3 a dict lookup per column).
    """
    if not events:
        return
    query = select(_head.c.size, _head.c.frontier).where(_head.c.campaign_id == campaign_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    head = conn.execute(query).first()
    tree = Frontier.load(head[0], head[1]) if head else Frontier()
    by_user = subjects(conn, [e["user_id"] for e in events if e.get("user_id")])
    rows = []
    seq = tree.size
    append = tree.append
    for event in events:
        get = event.get
        subject = get("subject") or by_user.get(get("user_id") or "")
        seq += 1
        kind, at, delivery, channel = event["kind"], event["at"], get("delivery_id"), get("channel")
        body = canonical(
            {
                "v": FORMAT,
                "campaign": campaign_id,
                "seq": seq,
                "kind": kind,
                "at": at,
                "subject": subject,
                "delivery": delivery,
                "channel": channel,
                "data": get("data", {}),
            }
        )
        append(leaf_hash(body))
        rows.append((campaign_id, seq, kind, at, subject, delivery, channel, body.decode()))
    mark = _mark(conn)
    conn.exec_driver_sql(f"INSERT INTO event ({_COLUMNS}) VALUES ({', '.join([mark] * 8)})", rows)
    values = {"size": tree.size, "root": tree.root().hex(), "frontier": tree.dump()}
    if head:
        conn.execute(_head.update().where(_head.c.campaign_id == campaign_id).values(**values))
    else:
        conn.execute(insert(_head).values(campaign_id=campaign_id, **values))


def iter_events(
    engine: Engine, campaign_id: str, batch: int = 1000, after: int = 0
) -> Iterator[dict[str, Any]]:
    """A campaign's event rows in seq order, from seq `after + 1`, streamed: one read,
    `batch` rows from the driver at a time, each made a dict only as the caller reaches it.

    Keyset pages of 5,000 dicts held two pages at once: a checkpoint of ~20k events took
    `herald send`'s RSS up 16 MB, which stayed (bench: 100k users, parent 159 MB vs a
    worker's 126); pages of 500 cost 3x the CPU (a connection and a query per page).
    Streamed: +1 MB at the same CPU. On SQLite the read holds one WAL snapshot meanwhile."""
    sql = "SELECT * FROM event WHERE campaign_id = :c AND seq > :after ORDER BY seq"
    for row in stream(engine, sql, {"c": campaign_id, "after": after}, batch):
        yield row._asdict()


def tree_heads(engine: Engine) -> dict[str, tuple[int, str]]:
    """(size, root hex) of every campaign's tree as the head rows record it."""
    with engine.connect() as conn:
        return {
            r[0]: (r[1], r[2])
            for r in conn.execute(text("SELECT campaign_id, size, root FROM tree_head"))
        }


def logged_campaigns(engine: Engine) -> set[str]:
    """Every campaign with events, a head or a campaign row: deleting one of them hides
    nothing from `verify`."""
    with engine.connect() as conn:
        return {
            r[0]
            for r in conn.execute(
                text(
                    "SELECT DISTINCT campaign_id FROM event UNION SELECT campaign_id FROM "
                    "tree_head UNION SELECT id FROM campaign WHERE planned_at IS NOT NULL"
                )
            )
        }


def subject_secret(engine: Engine, user_id: str) -> tuple[str, str] | None:
    """(subject, secret hex) of a user, or None (never logged, or erased)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(_subject.c.subject, _subject.c.secret).where(_subject.c.user_id == user_id)
        ).first()
    return (row[0], row[1]) if row else None


def v0_heads(engine: Engine) -> dict[str, tuple[int, str]]:
    """Campaigns logged in evidence format v0 (a database from before v1), with their heads."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, "chain_head_v0"):
            return {}
        rows = conn.execute(text("SELECT campaign_id, seq, hash FROM chain_head_v0"))
        return {r[0]: (r[1], r[2]) for r in rows}


def iter_v0_events(engine: Engine, campaign_id: str) -> Iterator[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM event_v0 WHERE campaign_id = :c ORDER BY seq"), {"c": campaign_id}
        ).mappings()
        yield from (dict(r) for r in rows)
