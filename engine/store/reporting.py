"""Aggregates for the coverage report, computed in SQL. I/O: the database.

Every figure is a GROUP BY over the delivery table (or a count over a join with it), so
the report costs the same memory for a thousand users as for ten million. Only notices
count: a confirmation queued after an objection is a second message to the same user,
not a second user told.
"""

import json
from typing import Any

from sqlalchemy import Connection, Engine, text

from engine.models import Backlog

_PER_USER = """
    SELECT user_id, MAX(country) AS country, MAX(locale) AS locale,
           MAX(CASE WHEN fell_back THEN 1 ELSE 0 END) AS fell_back,
           MAX(CASE WHEN status IN ('sent', 'delivered') THEN 1 ELSE 0 END) AS notified,
           MIN(CASE WHEN status IN ('sent', 'delivered', 'failed', 'bounced') THEN 1 ELSE 0 END)
               AS final,
           MIN(CASE WHEN status IN ('sent', 'delivered') THEN sent_at END) AS first_notified
    FROM delivery WHERE campaign_id = :c AND message = 'notice' GROUP BY user_id
"""

# Users who opened their in-app notice: one notification per in-app notice delivery.
_SEEN = """
    SELECT d.country AS country, d.locale AS locale
    FROM delivery d JOIN inapp_notification n ON n.delivery_id = d.id
    WHERE d.campaign_id = :c AND d.message = 'notice' AND n.seen_at IS NOT NULL
"""

# Objections carried by this campaign's links. The country is the user's, from their
# notice (a correlated lookup per objection, on the delivery key's index); the locale
# is the objection page's language and the channel the one the notice reached them by.
_OBJECTED = """
    SELECT o.locale AS locale, o.channel AS channel,
           (SELECT MAX(d.country) FROM delivery d
            WHERE d.campaign_id = :c AND d.user_id = o.user_id AND d.message = 'notice'
           ) AS country
    FROM objection o WHERE o.campaign_id = :c
"""

# Seconds from each user's first notice that went out to their objection; NULL when no
# notice went out, which the median ignores. The status test sits inside MIN so that the
# lookup uses the (campaign, user) key: as a WHERE term, SQLite picks the status index
# and scans every sent notice of the campaign for each objection.
_DELAYS = """
    SELECT o.objected_at - (
               SELECT MIN(CASE WHEN d.status IN ('sent', 'delivered') THEN d.sent_at END)
               FROM delivery d
               WHERE d.campaign_id = :c AND d.user_id = o.user_id AND d.message = 'notice'
           ) AS delay
    FROM objection o WHERE o.campaign_id = :c
"""


def coverage_rows(
    engine: Engine,
    campaign_id: str,
    deadline: float,
    effective: float,
    lead_cutoff: float | None = None,
) -> dict[str, Any]:
    """Per-user outcomes rolled up overall, by country and by locale, with the users
    who saw their notice in-app and who objected. `short_lead` counts users first
    notified after `lead_cutoff` (effective date minus min_lead_days; default: the
    deadline)."""

    def rollup(key: str | None) -> str:
        """Per-user rows summed by `key`, or over everyone when it is None."""
        group = f"GROUP BY {key} ORDER BY {key}" if key else ""
        return f"""
            SELECT {key or "'all'"} AS key, COUNT(*) AS targeted, SUM(notified) AS notified,
                   SUM(CASE WHEN notified = 0 AND final = 1 THEN 1 ELSE 0 END) AS failed,
                   SUM(CASE WHEN notified = 0 AND final = 0 THEN 1 ELSE 0 END) AS pending,
                   SUM(fell_back) AS fell_back,
                   SUM(CASE WHEN first_notified < :deadline THEN 1 ELSE 0 END) AS before_deadline,
                   SUM(CASE WHEN first_notified < :effective THEN 1 ELSE 0 END) AS before_effective,
                   SUM(CASE WHEN first_notified > :lead_cutoff THEN 1 ELSE 0 END) AS short_lead
            FROM ({_PER_USER}) AS per_user {group}"""

    cutoff = deadline if lead_cutoff is None else lead_cutoff
    params = {"c": campaign_id, "deadline": deadline, "effective": effective, "lead_cutoff": cutoff}
    with engine.connect() as conn:

        def rows(sql: str) -> list[dict[str, Any]]:
            return [
                {k: (v or 0) if k != "key" else v for k, v in r.items()}
                for r in conn.execute(text(sql), params).mappings()
            ]

        total = rows(rollup(None))
        channel_status = conn.execute(
            text(
                "SELECT channel, status, COUNT(*) FROM delivery "
                "WHERE campaign_id = :c AND message = 'notice' GROUP BY channel, status"
            ),
            params,
        ).all()
        reasons = conn.execute(
            text(
                "SELECT channel, last_error, COUNT(*) AS n FROM delivery "
                "WHERE campaign_id = :c AND message = 'notice' AND status = 'failed' "
                "GROUP BY channel, last_error ORDER BY n DESC, channel LIMIT 20"
            ),
            params,
        ).all()
        extra = conn.execute(
            text(
                "SELECT SUM(CASE WHEN interrupted > 0 AND status IN ('sent', 'delivered') "
                "THEN 1 ELSE 0 END), MIN(CASE WHEN status IN ('pending', 'deferred') "
                "THEN next_attempt_at END), SUM(CASE WHEN is_fallback THEN 1 ELSE 0 END) "
                "FROM delivery WHERE campaign_id = :c AND message = 'notice'"
            ),
            params,
        ).one()
        return {
            "bounces": _bounces(conn, params),
            "total": total[0] if total else None,
            "by_country": rows(rollup("country")),
            "by_locale": rows(rollup("locale")),
            "channel_status": [tuple(r) for r in channel_status],
            "reasons": [tuple(r) for r in reasons],
            "duplicates": extra[0] or 0,
            "next_due": extra[1],
            "fallback_planned": extra[2] or 0,
            "seen": _figures(conn, _SEEN, params, ("country", "locale")),
            "objected": _figures(conn, _OBJECTED, params, ("country", "locale", "channel")),
            "median_notice_to_objection_s": _median_delay(conn, params),
            "per_day": _per_day(conn, params, engine.dialect.name),
        }


def _bounces(conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Bounced notices by channel, country and reason; emails that went out (sent or
    bounced since); complaints, which are events and change no status."""
    rows = conn.execute(
        text(
            "SELECT channel, country, last_error, COUNT(*) FROM delivery "
            "WHERE campaign_id = :c AND message = 'notice' AND status = 'bounced' "
            "GROUP BY channel, country, last_error"
        ),
        params,
    ).all()
    went_out = conn.execute(
        text(
            "SELECT COUNT(*) FROM delivery WHERE campaign_id = :c AND message = 'notice' "
            "AND channel = 'email' AND status IN ('sent', 'bounced')"
        ),
        params,
    ).scalar_one()
    complaints = conn.execute(
        text("SELECT COUNT(*) FROM event WHERE campaign_id = :c AND kind = 'complained'"),
        params,
    ).scalar_one()
    return {"rows": [tuple(r) for r in rows], "emails_out": went_out, "complaints": complaints}


def unverified_tls_sends(engine: Engine, campaign_id: str) -> int:
    """Emails handed to an SMTP server in clear text or over TLS whose certificate was
    not verified: `sent` events whose data says tls_verified false. The outbox and
    in-app have no network hop and record no TLS. Canonical JSON has no spaces, so the
    pattern matches the key and nothing inside a string (a quote there is escaped)."""
    with engine.connect() as conn:
        count = conn.execute(
            text(
                "SELECT COUNT(*) FROM event WHERE campaign_id = :c AND kind = 'sent' "
                "AND channel = 'email' AND body LIKE :unverified"
            ),
            {"c": campaign_id, "unverified": '%"tls_verified":false%'},
        ).scalar_one()
    return int(count)


def latest_audience(engine: Engine, campaign_id: str) -> dict[str, Any] | None:
    """The `data` of the campaign's last `audience` event (its latest plan pass), read from
    the evidence itself. Only the few events with no delivery are scanned (on the
    (campaign, delivery, seq) index)."""
    with engine.connect() as conn:
        body = conn.execute(
            text(
                "SELECT body FROM event WHERE campaign_id = :c AND delivery_id IS NULL "
                "AND kind = 'audience' ORDER BY seq DESC LIMIT 1"
            ),
            {"c": campaign_id},
        ).scalar()
    if body is None:
        return None
    data: dict[str, Any] = json.loads(body)["data"]
    return data


def _figures(
    conn: Connection, source: str, params: dict[str, Any], keys: tuple[str, ...]
) -> dict[str, Any]:
    """{"total": n, "by_<key>": {value: n}} over the rows of `source`."""
    found: dict[str, Any] = {
        "total": conn.execute(text(f"SELECT COUNT(*) FROM ({source}) AS s"), params).scalar_one()
    }
    for key in keys:
        counts = conn.execute(
            text(
                f"SELECT {key}, COUNT(*) FROM ({source}) AS s "
                f"WHERE {key} IS NOT NULL GROUP BY {key}"
            ),
            params,
        ).all()
        found[f"by_{key}"] = {value: int(n) for value, n in counts}
    return found


def _median_delay(conn: Connection, params: dict[str, Any]) -> float | None:
    """The median of _DELAYS: count them, then read only the middle one or two."""
    sql = f"SELECT COUNT(delay) FROM ({_DELAYS}) AS s"
    count = conn.execute(text(sql), params).scalar_one()
    if not count:
        return None
    middle = conn.execute(
        text(
            f"SELECT delay FROM ({_DELAYS}) AS s WHERE delay IS NOT NULL "
            "ORDER BY delay LIMIT :n OFFSET :skip"
        ),
        {**params, "n": 2 - count % 2, "skip": (count - 1) // 2},
    ).scalars()
    values = [float(v) for v in middle]
    return sum(values) / len(values) if values else None


# The moments behind the "over time" figures, each an `at` in epoch seconds (and a channel
# for the notices that went out).
_TIMES = {
    "users_notified": f"SELECT first_notified AS at FROM ({_PER_USER}) AS per_user",
    "notices": "SELECT channel, sent_at AS at FROM delivery WHERE campaign_id = :c "
    "AND message = 'notice' AND status IN ('sent', 'delivered')",
    "seen": "SELECT n.seen_at AS at FROM delivery d "
    "JOIN inapp_notification n ON n.delivery_id = d.id "
    "WHERE d.campaign_id = :c AND d.message = 'notice'",
    "objected": "SELECT objected_at AS at FROM objection WHERE campaign_id = :c",
}


def _per_day(conn: Connection, params: dict[str, Any], dialect: str) -> dict[str, Any]:
    """Counts per UTC day, as days since the epoch: {"notices": [(channel, day, n)], and
    "users_notified", "seen", "objected": [(day, n)]}, each grouped in SQL."""
    # SQLite truncates a positive REAL cast to INTEGER; PostgreSQL rounds it, so floor first.
    day = (
        "CAST(at / 86400 AS INTEGER)"
        if dialect == "sqlite"
        else "CAST(FLOOR(at / 86400) AS BIGINT)"
    )
    found: dict[str, Any] = {}
    for name, source in _TIMES.items():
        channel = "channel, " if name == "notices" else ""
        rows = conn.execute(
            text(
                f"SELECT {channel}day, COUNT(*) FROM (SELECT {channel}{day} AS day "
                f"FROM ({source}) AS s WHERE at IS NOT NULL) AS d "
                f"GROUP BY {channel}day ORDER BY {channel}day"
            ),
            params,
        ).all()
        found[name] = [(*r[:-2], int(r[-2]), int(r[-1])) for r in rows]
    return found


RATE_WINDOW_SECONDS = 60.0


def targeted_users(engine: Engine, campaign_id: str) -> int:
    """The campaign's targeted users: every user planned a notice (README, "targeted")."""
    with engine.connect() as conn:
        count = conn.execute(
            text(
                "SELECT COUNT(DISTINCT user_id) FROM delivery "
                "WHERE campaign_id = :c AND message = 'notice'"
            ),
            {"c": campaign_id},
        ).scalar_one()
    return int(count or 0)


def status_figures(engine: Engine, campaign_id: str, now: float) -> dict[str, Any]:
    """Targeted users, notices per status, the send rate over the last minute, next due,
    and the open notices by channel and zone, and the confirmations still to send (counted
    apart: they are not notices)."""
    params = {"c": campaign_id, "since": now - RATE_WINDOW_SECONDS}
    with engine.connect() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT status, COUNT(*) FROM delivery "
                    "WHERE campaign_id = :c AND message = 'notice' GROUP BY status"
                ),
                params,
            ).all()
        )
        targeted, recent, next_due = conn.execute(
            text(
                "SELECT COUNT(DISTINCT user_id), "
                "SUM(CASE WHEN sent_at >= :since THEN 1 ELSE 0 END), "
                "MIN(CASE WHEN status IN ('pending', 'deferred') THEN next_attempt_at END) "
                "FROM delivery WHERE campaign_id = :c AND message = 'notice'"
            ),
            params,
        ).one()
        backlog = conn.execute(text(_BACKLOG), params).all()
        confirmations = conn.execute(
            text(
                "SELECT COUNT(*) FROM delivery WHERE campaign_id = :c "
                "AND message = 'confirmation' AND status IN ('pending', 'sending', 'deferred')"
            ),
            params,
        ).scalar_one()
    return {
        "counts": counts,
        "confirmations_pending": int(confirmations),
        "targeted": targeted or 0,
        "recent_rate": (recent or 0) / RATE_WINDOW_SECONDS,
        "next_due": next_due,
        "backlog": [Backlog(*row) for row in backlog],
    }


# Open notices by channel and the zone their user lives in (the user's own zone, else
# their country's), for the projection through send windows.
_BACKLOG = """
    SELECT d.channel, u.timezone, d.country, COUNT(*), MIN(d.next_attempt_at)
    FROM delivery d LEFT JOIN "user" u ON u.id = d.user_id
    WHERE d.campaign_id = :c AND d.message = 'notice'
      AND d.status IN ('pending', 'sending', 'deferred')
    GROUP BY d.channel, u.timezone, d.country
"""
