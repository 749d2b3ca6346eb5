"""Daemon heartbeats, so `herald status` can tell whether one is alive. I/O: the database."""

from typing import Any

from sqlalchemy import Engine, select, update

from engine.store import upsert_into, writing
from engine.store.tables import DaemonRow

_daemon = DaemonRow.__table__  # type: ignore[attr-defined]


def heartbeat(
    engine: Engine, daemon_id: str, host: str, pid: int, started: float, now: float
) -> None:
    with writing(engine) as conn:
        statement = upsert_into(conn, _daemon).values(
            id=daemon_id, host=host, pid=pid, started_at=started, heartbeat_at=now
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["id"], set_={"heartbeat_at": now, "stopped_at": None}
            )
        )


def stopped(engine: Engine, daemon_id: str, now: float) -> None:
    with writing(engine) as conn:
        conn.execute(update(_daemon).where(_daemon.c.id == daemon_id).values(stopped_at=now))


def recent(engine: Engine, since: float) -> list[dict[str, Any]]:
    """Daemons that beat since `since`, or have not said they stopped."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(_daemon)
            .where((_daemon.c.heartbeat_at >= since) | _daemon.c.stopped_at.is_(None))
            .order_by(_daemon.c.started_at)
        ).mappings()
        return [dict(r) for r in rows]
