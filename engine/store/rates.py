"""Send slots shared by every worker and daemon on one database. I/O: the database.

The rate of a campaign's channel holds across processes because each process reserves
its send times here, a block at a time: one short write per block, not per message.
"""

from sqlalchemy import Engine, select, update

from engine.store import upsert_into, writing
from engine.store.tables import RateSlot

_slot = RateSlot.__table__  # type: ignore[attr-defined]


def reserve(
    engine: Engine, campaign_id: str, channel: str, count: int, interval: float, now: float
) -> float:
    """Reserve `count` send slots `interval` seconds apart; returns the first slot's time.

    Slots never go back in time: a worker that was idle starts from `now`, not from the
    slots nobody used, so the rate holds over any stretch of time."""
    key = (_slot.c.campaign_id == campaign_id) & (_slot.c.channel == channel)
    with writing(engine) as conn:
        conn.execute(
            upsert_into(conn, _slot)
            .values(campaign_id=campaign_id, channel=channel, next_at=now)
            .on_conflict_do_nothing()
        )
        query = select(_slot.c.next_at).where(key)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        first = max(float(conn.execute(query).scalar_one()), now)
        conn.execute(update(_slot).where(key).values(next_at=first + count * interval))
    return first
