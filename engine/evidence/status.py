"""What `herald status` shows: each campaign's state, progress and outlook. Pure.

Built from the campaign row, delivery counts and the recent send rate, all read by
store.reporting.status_figures(); nothing here reads the clock or the database.
"""

import datetime as dt
from typing import Any

from engine.statuses import DeliveryStatus

HEARTBEAT_SECONDS = 5.0  # how often a daemon writes its heartbeat
_OPEN = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)


def display_state(row: dict[str, Any], remaining: int) -> str:
    """scheduled, planning, sending, paused, done or refused."""
    if row["state"] == "refused":
        return "refused"
    if row["paused"]:
        return "paused"
    if row["state"] in ("scheduled", "planning"):
        return str(row["state"])
    return "sending" if remaining else "done"


def projection(
    now: float,
    remaining: int,
    recent_rate: float,
    configured_rate: float | None,
    next_due: float | None,
) -> float | None:
    """When the last delivery should go at the current rate (or, while nothing is being
    sent, at the configured rate from the next due time). None when it cannot be told."""
    if not remaining:
        return None
    if recent_rate > 0:
        return now + remaining / recent_rate
    if configured_rate and next_due is not None:
        return max(now, next_due) + remaining / configured_rate
    return None


def campaign_status(
    row: dict[str, Any],
    counts: dict[str, int],
    targeted: int,
    recent_rate: float,
    next_due: float | None,
    now: float,
    confirmations_pending: int = 0,
) -> dict[str, Any]:
    """One campaign's line of `herald status`, JSON-ready. `counts` are the notices';
    a campaign is not done while a confirmation of an objection still waits."""
    remaining = sum(counts.get(s.value, 0) for s in _OPEN)
    projected = projection(now, remaining, recent_rate, row["rate_per_second"], next_due)
    deadline = row["deadline_at"]
    at_risk = remaining > 0 and deadline is not None and (projected or now) > deadline
    state = display_state(row, remaining + confirmations_pending)
    return {
        "id": row["id"],
        "title": row["title"],
        "state": state,
        "targeted": targeted,
        "notified": counts.get(DeliveryStatus.SENT.value, 0)
        + counts.get(DeliveryStatus.DELIVERED.value, 0),
        "pending": counts.get(DeliveryStatus.PENDING.value, 0)
        + counts.get(DeliveryStatus.SENDING.value, 0),
        "deferred": counts.get(DeliveryStatus.DEFERRED.value, 0),
        "failed": counts.get(DeliveryStatus.FAILED.value, 0),
        "confirmations_pending": confirmations_pending,
        "start": iso(row["start_at"]),
        "next_due": iso(next_due) if remaining else None,
        "rate_per_second": round(recent_rate, 2),
        "configured_rate_per_second": row["rate_per_second"],
        "projected_completion": iso(projected),
        "deadline": iso(deadline),
        "outlook": None
        if state in ("refused", "done") or not remaining
        else ("at risk" if at_risk else "on track"),
        "problem": row["problem"],
    }


def daemon_status(row: dict[str, Any], now: float) -> dict[str, Any]:
    alive = row["stopped_at"] is None and now - row["heartbeat_at"] < 3 * HEARTBEAT_SECONDS
    return {
        "id": row["id"],
        "host": row["host"],
        "pid": row["pid"],
        "alive": alive,
        "started_at": iso(row["started_at"]),
        "heartbeat_at": iso(row["heartbeat_at"]),
    }


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")
