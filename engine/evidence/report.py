"""The coverage report: who was told, how, and who is left. Pure, but for `campaign_report`,
which reads the aggregates from the database.

The coverage equation holds by construction: each targeted user is in exactly one of
notified (some channel reached them), failed (every channel failed or bounced for good) or
pending. A bounced email notified nobody.
Seen and objected come beside it: users who opened their in-app notice, and objections
carried by this campaign's links. Users of the campaign's countries whom planning left out
(objectors to the purpose, users new after schedule.plan_until) are outside "targeted":
their counts come from the campaign's latest `audience` event.
"""

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from engine.authoring.campaigns import Campaign
from engine.evidence.status import iso
from engine.models import Channel
from engine.statuses import DeliveryStatus
from engine.store.reporting import coverage_rows, latest_audience, unverified_tls_sends

_EPOCH = dt.date(1970, 1, 1)
# The reasons planning leaves out users of the campaign's countries (delivery.binding).
LEFT_OUT = ("objected", "joined_after_effective_date")
_BUCKETS = (
    "targeted",
    "notified",
    "failed",
    "pending",
    "fell_back",
    "before_deadline",
    "before_effective",
    "short_lead",
)


def build_report(
    campaign_id: str,
    title: str,
    deadline: dt.datetime,
    effective: dt.datetime,
    rows: dict[str, Any],
    min_lead_days: int = 0,
    unverified_tls: int = 0,
    audience: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-ready report from store.reporting.coverage_rows(), the count of emails sent
    without verified TLS, and the data of the latest `audience` event."""
    total = rows["total"] or dict.fromkeys(_BUCKETS, 0)
    channels: dict[str, dict[str, int]] = {}
    for channel, status, count in rows["channel_status"]:
        channels.setdefault(channel, {s.value: 0 for s in DeliveryStatus})[status] = count

    seen, objected = rows["seen"], rows["objected"]

    def breakdown(key: str) -> dict[str, dict[str, int]]:
        """Coverage by `key` with seen and objected beside it. An objection page's
        language need not be a notice's, so a locale may appear with objections only."""
        table = {r["key"]: {k: int(r[k]) for k in _BUCKETS} for r in rows[key]}
        names = set(table) | set(seen[key]) | set(objected[key])
        return {
            name: {
                **table.get(name, dict.fromkeys(_BUCKETS, 0)),
                "seen": int(seen[key].get(name, 0)),
                "objected": int(objected[key].get(name, 0)),
            }
            for name in sorted(names)
        }

    # In-app is the only channel that tells us a notice was seen.
    by_channel = {
        name: {
            "seen": int(seen["total"]) if name == Channel.INAPP.value else 0,
            "objected": int(objected["by_channel"].get(name, 0)),
        }
        for name in sorted({c.value for c in Channel} | set(objected["by_channel"]))
    }
    median = rows["median_notice_to_objection_s"]

    return {
        "campaign": campaign_id,
        "title": title,
        "targeted": int(total["targeted"]),
        "notified": int(total["notified"]),
        "failed": int(total["failed"]),
        "pending": int(total["pending"]),
        "coverage_equation_holds": total["targeted"]
        == total["notified"] + total["failed"] + total["pending"],
        "notified_before_deadline": int(total["before_deadline"]),
        "notified_late": int(total["notified"]) - int(total["before_deadline"]),
        "deadline": deadline.isoformat(),
        "notified_before_effective_date": int(total["before_effective"]),
        "notified_after_effective_date": int(total["notified"]) - int(total["before_effective"]),
        "effective_date": effective.date().isoformat(),
        "min_lead_days": min_lead_days,
        "notified_with_less_lead": int(total["short_lead"]),  # than min_lead_days
        "fell_back_locale": int(total["fell_back"]),
        "possible_duplicates": int(rows["duplicates"]),
        "fallback_planned": int(rows["fallback_planned"]),
        "emails_sent_without_verified_tls": unverified_tls,
        "next_due": iso(rows["next_due"]),
        "channels": channels,
        "failure_reasons": [
            {"channel": ch, "reason": reason, "count": n} for ch, reason, n in rows["reasons"]
        ],
        "seen": int(seen["total"]),
        "objected": int(objected["total"]),
        "median_notice_to_objection_s": None if median is None else float(median),
        "left_out": _left_out(audience),
        "left_out_by_country": {
            country: _left_out(entry)
            for country, entry in sorted(((audience or {}).get("by_country") or {}).items())
            if any(_left_out(entry).values())
        },
        "by_country": breakdown("by_country"),
        "by_locale": breakdown("by_locale"),
        "by_channel": by_channel,
        "over_time": _over_time(rows["per_day"]),
        "bounces": bounce_figures(rows["bounces"]),
    }


def _left_out(audience: dict[str, Any] | None) -> dict[str, int]:
    """Users of the campaign's countries that planning left out, by reason."""
    excluded = (audience or {}).get("excluded") or {}
    return {reason: int(excluded.get(reason, 0)) for reason in LEFT_OUT}


def _over_time(per_day: dict[str, Any]) -> dict[str, Any]:
    """Counts per UTC day ("2024-06-01"): users first notified, notices that went out per
    channel, notices seen in-app, objections. Days with nothing are left out."""

    def date(day: int) -> str:
        return (_EPOCH + dt.timedelta(days=day)).isoformat()

    notices: dict[str, dict[str, int]] = {}
    for channel, day, n in per_day["notices"]:
        notices.setdefault(channel, {})[date(day)] = n
    return {
        "users_notified": {date(day): n for day, n in per_day["users_notified"]},
        "notices_by_channel": notices,
        "seen": {date(day): n for day, n in per_day["seen"]},
        "objected": {date(day): n for day, n in per_day["objected"]},
    }


def bounce_figures(found: dict[str, Any]) -> dict[str, Any]:
    """Bounced notices by channel, country and reason (the status class: bad-address,
    mailbox-full, policy...), and their share of the emails that went out."""
    by: dict[str, dict[str, int]] = {"by_channel": {}, "by_country": {}, "by_reason": {}}
    total = 0
    for channel, country, last_error, count in found["rows"]:
        reason = (last_error or "").partition(" ")[2] or "unknown"
        for key, name in (("by_channel", channel), ("by_country", country), ("by_reason", reason)):
            by[key][name] = by[key].get(name, 0) + int(count)
        total += int(count)
    out = int(found["emails_out"])
    return {
        "bounced": total,
        "rate": round(total / out, 4) if out else 0.0,
        "complaints": int(found["complaints"]),
        **{key: dict(sorted(value.items())) for key, value in by.items()},
    }


def campaign_report(engine: Engine, c: Campaign) -> dict[str, Any]:
    """The report of one campaign, from the database."""
    effective = dt.datetime.combine(c.policy.effective_date, dt.time(0), dt.UTC)
    cutoff = effective - dt.timedelta(days=c.policy.min_lead_days)
    rows = coverage_rows(
        engine, c.id, c.schedule.deadline.timestamp(), effective.timestamp(), cutoff.timestamp()
    )
    unverified = unverified_tls_sends(engine, c.id)
    audience = latest_audience(engine, c.id)
    return build_report(
        c.id,
        c.title,
        c.schedule.deadline,
        effective,
        rows,
        c.policy.min_lead_days,
        unverified,
        audience,
    )
