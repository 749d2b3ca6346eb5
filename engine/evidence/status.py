"""What `herald status` shows: each campaign's state, progress and outlook. Pure.

Built from the campaign row, delivery counts, the open notices by zone and the recent
send rate, all read by store.reporting.status_figures(); nothing here reads the clock or
the database. Counts are labelled by what they count: targeted *users*, and *deliveries*
(one per user and channel) by status.
"""

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from engine.models import Backlog
from engine.statuses import DeliveryStatus

HEARTBEAT_SECONDS = 5.0  # how often a daemon writes its heartbeat
_OPEN = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)


def display_state(row: dict[str, Any], remaining: int, now: float) -> str:
    """scheduled, planning, sending, paused, done or refused. A campaign planned ahead of
    its start is scheduled until then."""
    if row["state"] == "refused":
        return "refused"
    if row["paused"]:
        return "paused"
    if row["state"] in ("scheduled", "planning"):
        return str(row["state"])
    if remaining and row.get("start_at") and now < row["start_at"]:
        return "scheduled"
    return "sending" if remaining else "done"


# When a delivery may reach its transport: (instant, channel, user's zone, country) ->
# that instant, or the next opening of the send window in the user's zone. It comes from
# delivery.windows.SendTimes.next_allowed, which this layer may not import.
NextAllowed = Callable[[float, str, str | None, str], float]

SLICE_SECONDS = 900.0  # the projection's step while some window is open
HORIZON_SECONDS = 60 * 86400.0  # beyond the deadline: "cannot finish", not a date
RATE_MINUTE = 60.0  # the recent rate is measured over the last minute (store.reporting)


def projection(
    now: float,
    backlog: Sequence[Backlog],
    rate_per_channel: float,
    next_allowed: NextAllowed | None,
    horizon: float,
) -> float | None:
    """When the last open notice should go out: each channel sends `rate_per_channel` a
    second, only to users whose send window is open (in their zone) and whose notice is
    due. None when nothing is left, or when it would not be done by `horizon`."""
    left = [g.count for g in backlog]
    if not sum(left) or rate_per_channel <= 0:
        return None
    ready = [max(now, g.due or now) for g in backlog]  # no group sends before this
    t = now
    while t <= horizon:
        sending: dict[str, list[int]] = {}
        for i, g in enumerate(backlog):
            if not left[i] or ready[i] > t:
                continue
            if next_allowed is not None:
                ready[i] = next_allowed(t, g.channel, g.timezone, g.country)
            if ready[i] <= t:
                sending.setdefault(g.channel, []).append(i)
        if not sending:  # every window is closed: jump to the next opening
            t = min(ready[i] for i, n in enumerate(left) if n)
            continue
        finished = t
        for groups in sending.values():
            capacity = rate_per_channel * SLICE_SECONDS
            used = 0.0
            for i in sorted(groups, key=lambda i: ready[i]):
                take = min(left[i], int(capacity - used))
                left[i] -= take
                used += take
            finished = max(finished, t + used / rate_per_channel)
        if not any(left):
            return finished
        t += SLICE_SECONDS
    return None


def _due_now(now: float, backlog: Sequence[Backlog], next_allowed: NextAllowed | None) -> int:
    """How many open notices may be sent right now (due, and in their window)."""
    return sum(
        g.count
        for g in backlog
        if (g.due or now) <= now
        and (next_allowed is None or next_allowed(now, g.channel, g.timezone, g.country) <= now)
    )


def campaign_status(
    row: dict[str, Any],
    counts: dict[str, int],
    targeted: int,
    recent_rate: float,
    next_due: float | None,
    now: float,
    backlog: Sequence[Backlog] = (),
    next_allowed: NextAllowed | None = None,
    confirmations_pending: int = 0,
) -> dict[str, Any]:
    """One campaign's line of `herald status`, JSON-ready. `counts` are the notices'; a
    campaign is not done while a confirmation of an objection still waits.

    The projection runs through each recipient's send window when `next_allowed` is given;
    the outlook is "missed" once the deadline has passed with notices still open, "at
    risk" when the projection ends after the deadline (or not at all), else "on track"."""
    remaining = sum(counts.get(s.value, 0) for s in _OPEN)
    if remaining and not backlog:  # counted, but not yet by zone: project without windows
        backlog, next_allowed = [Backlog("", None, "", remaining, next_due)], None
    configured = row["rate_per_second"]
    rate = configured or recent_rate
    # The rate of the last minute tells the capacity only while more was due than went
    # out; a campaign waiting for its windows sends little because little is due.
    if recent_rate > 0 and _due_now(now, backlog, next_allowed) > recent_rate * RATE_MINUTE:
        rate = min(configured, recent_rate) if configured else recent_rate
    deadline = row["deadline_at"]
    horizon = max(now, deadline or now) + HORIZON_SECONDS
    projected = projection(now, backlog, rate or 0.0, next_allowed, horizon)
    state = display_state(row, remaining + confirmations_pending, now)
    bounced = counts.get(DeliveryStatus.BOUNCED.value, 0)
    went_out = bounced + counts.get(DeliveryStatus.SENT.value, 0)  # only email is 'sent'
    if state in ("refused", "done") or not remaining:
        outlook = None
    elif deadline is not None and now >= deadline:
        outlook = "missed"
    elif deadline is not None and (projected is None or projected > deadline):
        outlook = "at risk"
    else:
        outlook = "on track"
    return {
        "id": row["id"],
        "title": row["title"],
        "state": state,
        "users": {"targeted": targeted},
        "deliveries": {
            "notified": counts.get(DeliveryStatus.SENT.value, 0)
            + counts.get(DeliveryStatus.DELIVERED.value, 0),
            "pending": counts.get(DeliveryStatus.PENDING.value, 0)
            + counts.get(DeliveryStatus.SENDING.value, 0),
            "deferred": counts.get(DeliveryStatus.DEFERRED.value, 0),
            "failed": counts.get(DeliveryStatus.FAILED.value, 0),
            "bounced": bounced,
        },
        "confirmations_pending": confirmations_pending,
        "bounce_rate": round(bounced / went_out, 4) if went_out else None,
        "start": iso(row["start_at"]),
        "next_due": iso(next_due) if remaining else None,
        "rate_per_second": round(recent_rate, 2),
        "configured_rate_per_second": configured,
        "projected_completion": iso(projected),
        "projected_through_send_windows": next_allowed is not None,
        "deadline": iso(deadline),
        "outlook": outlook,
        "problem": row["problem"],
    }


def daemon_status(row: dict[str, Any], now: float, gone: bool = False) -> dict[str, Any]:
    """`gone`: its process is known to have ended (on this host), heartbeat or not."""
    alive = (
        not gone and row["stopped_at"] is None and now - row["heartbeat_at"] < 3 * HEARTBEAT_SECONDS
    )
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
