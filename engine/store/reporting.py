"""Aggregates for the coverage report, computed in SQL. I/O: the database.

Every figure is a GROUP BY over the delivery table, so the report costs the same memory
for a thousand users as for ten million.
"""

from typing import Any

from sqlalchemy import Engine, text

_PER_USER = """
    SELECT user_id, MAX(country) AS country, MAX(locale) AS locale,
           MAX(CASE WHEN fell_back THEN 1 ELSE 0 END) AS fell_back,
           MAX(CASE WHEN status IN ('sent', 'delivered') THEN 1 ELSE 0 END) AS notified,
           MIN(CASE WHEN status IN ('sent', 'delivered', 'failed') THEN 1 ELSE 0 END) AS final,
           MIN(CASE WHEN status IN ('sent', 'delivered') THEN sent_at END) AS first_notified
    FROM delivery WHERE campaign_id = :c GROUP BY user_id
"""


def coverage_rows(
    engine: Engine, campaign_id: str, deadline: float, effective: float
) -> dict[str, Any]:
    """Per-user outcomes rolled up overall, by country and by locale."""

    def rollup(key: str | None) -> str:
        """Per-user rows summed by `key`, or over everyone when it is None."""
        group = f"GROUP BY {key} ORDER BY {key}" if key else ""
        return f"""
            SELECT {key or "'all'"} AS key, COUNT(*) AS targeted, SUM(notified) AS notified,
                   SUM(CASE WHEN notified = 0 AND final = 1 THEN 1 ELSE 0 END) AS failed,
                   SUM(CASE WHEN notified = 0 AND final = 0 THEN 1 ELSE 0 END) AS pending,
                   SUM(fell_back) AS fell_back,
                   SUM(CASE WHEN first_notified < :deadline THEN 1 ELSE 0 END) AS before_deadline,
                   SUM(CASE WHEN first_notified < :effective THEN 1 ELSE 0 END) AS before_effective
            FROM ({_PER_USER}) AS per_user {group}"""

    params = {"c": campaign_id, "deadline": deadline, "effective": effective}
    with engine.connect() as conn:

        def rows(sql: str) -> list[dict[str, Any]]:
            return [
                {k: (v or 0) if k != "key" else v for k, v in r.items()}
                for r in conn.execute(text(sql), params).mappings()
            ]

        total = rows(rollup(None))
        channel_status = conn.execute(
            text(
                "SELECT channel, status, COUNT(*) FROM delivery WHERE campaign_id = :c "
                "GROUP BY channel, status"
            ),
            params,
        ).all()
        reasons = conn.execute(
            text(
                "SELECT channel, last_error, COUNT(*) AS n FROM delivery "
                "WHERE campaign_id = :c AND status = 'failed' GROUP BY channel, last_error "
                "ORDER BY n DESC, channel LIMIT 20"
            ),
            params,
        ).all()
        extra = conn.execute(
            text(
                "SELECT SUM(CASE WHEN interrupted > 0 AND status IN ('sent', 'delivered') "
                "THEN 1 ELSE 0 END), MIN(CASE WHEN status IN ('pending', 'deferred') "
                "THEN next_attempt_at END), SUM(CASE WHEN is_fallback THEN 1 ELSE 0 END) "
                "FROM delivery WHERE campaign_id = :c"
            ),
            params,
        ).one()
        return {
            "total": total[0] if total else None,
            "by_country": rows(rollup("country")),
            "by_locale": rows(rollup("locale")),
            "channel_status": [tuple(r) for r in channel_status],
            "reasons": [tuple(r) for r in reasons],
            "duplicates": extra[0] or 0,
            "next_due": extra[1],
            "fallback_planned": extra[2] or 0,
        }


RATE_WINDOW_SECONDS = 60.0


def status_figures(engine: Engine, campaign_id: str, now: float) -> dict[str, Any]:
    """Targeted users, deliveries per status, the send rate over the last minute, next due."""
    params = {"c": campaign_id, "since": now - RATE_WINDOW_SECONDS}
    with engine.connect() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT status, COUNT(*) FROM delivery WHERE campaign_id = :c GROUP BY status"
                ),
                params,
            ).all()
        )
        targeted, recent, next_due = conn.execute(
            text(
                "SELECT COUNT(DISTINCT user_id), "
                "SUM(CASE WHEN sent_at >= :since THEN 1 ELSE 0 END), "
                "MIN(CASE WHEN status IN ('pending', 'deferred') THEN next_attempt_at END) "
                "FROM delivery WHERE campaign_id = :c"
            ),
            params,
        ).one()
    return {
        "counts": counts,
        "targeted": targeted or 0,
        "recent_rate": (recent or 0) / RATE_WINDOW_SECONDS,
        "next_due": next_due,
    }
