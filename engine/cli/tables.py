"""Terminal tables for plan and report output."""

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from engine.delivery.planning import PlanResult


def print_plan(console: Console, campaign_id: str, result: "PlanResult", targeted: int) -> None:
    """`targeted` is the campaign's figure (README: every user planned a notice, as report
    and status count them); the tables break down the users in the audience now."""
    left = targeted - result.in_audience
    since = f"; {left} planned earlier no longer match the audience" if left > 0 else ""
    console.print(
        f"{campaign_id}: {targeted} users targeted, "
        f"{result.new_deliveries} new deliveries planned{since}",
        markup=False,
    )
    for title, counts in (
        ("region", result.by_region),
        ("channel", result.by_channel),
        ("country", result.by_country),
    ):
        table = Table(title=f"in the audience now, by {title}", title_justify="left")
        table.add_column(title)
        table.add_column("users" if title != "channel" else "deliveries", justify="right")
        for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(key, str(count))
        console.print(table)


def print_report(console: Console, report: dict[str, Any]) -> None:
    from engine.evidence.reportpage import format_duration  # here: it loads the templates

    targeted = report["targeted"]

    def share(n: int) -> str:
        return f"{n} ({100 * n / targeted:.1f}%)" if targeted else str(n)

    summary = Table(
        title=f"{report['campaign']}: coverage", title_justify="left", show_header=False
    )
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    for label, value in (
        ("targeted users", str(targeted)),
        ("left out: objected before", str(report["left_out"]["objected"])),
        (
            "left out: joined after the effective date",
            str(report["left_out"]["joined_after_effective_date"]),
        ),
        ("notified", share(report["notified"])),
        ("failed", share(report["failed"])),
        ("pending", share(report["pending"])),
        ("notified before the deadline", share(report["notified_before_deadline"])),
        ("notified after the deadline", share(report["notified_late"])),
        (
            f"notified less than {report['min_lead_days']} days ahead",
            share(report["notified_with_less_lead"]),
        ),
        ("notified before the effective date", share(report["notified_before_effective_date"])),
        ("notified after the effective date", share(report["notified_after_effective_date"])),
        ("fell back to another locale", share(report["fell_back_locale"])),
        ("possible duplicates", str(report["possible_duplicates"])),
        ("fallback deliveries planned", str(report["fallback_planned"])),
        (
            "bounced emails",
            f"{report['bounces']['bounced']} ({report['bounces']['rate']:.1%} of those sent)",
        ),
        ("complaints", str(report["bounces"]["complaints"])),
        ("emails sent without verified TLS", str(report["emails_sent_without_verified_tls"])),
        ("seen in-app", share(report["seen"])),
        ("objected", share(report["objected"])),
        ("evidence", _evidence(report.get("evidence") or {})),
        (
            "median time from notice to objection",
            format_duration(report["median_notice_to_objection_s"]),
        ),
    ):
        summary.add_row(label, value)
    holds = "holds" if report["coverage_equation_holds"] else "DOES NOT HOLD"
    summary.caption = f"targeted = notified + failed + pending: {holds}"
    console.print(summary)
    channels = Table(title="by channel", title_justify="left")
    statuses = ["pending", "sending", "deferred", "sent", "delivered", "failed", "bounced"]
    channels.add_column("channel")
    for status in statuses:
        channels.add_column(status, justify="right")
    for channel, counts in sorted(report["channels"].items()):
        channels.add_row(channel, *(str(counts.get(s, 0)) for s in statuses))
    console.print(channels)
    engagement = Table(title="seen and objected by channel", title_justify="left")
    for column in ("channel", "seen", "objected"):
        engagement.add_column(column, justify="left" if column == "channel" else "right")
    for channel, figures in report["by_channel"].items():
        engagement.add_row(channel, str(figures["seen"]), str(figures["objected"]))
    console.print(engagement)
    if report["failure_reasons"]:
        reasons = Table(title="failures", title_justify="left")
        for column in ("channel", "reason", "count"):
            reasons.add_column(column, justify="right" if column == "count" else "left")
        for row in report["failure_reasons"]:
            reasons.add_row(row["channel"], row["reason"] or "", str(row["count"]))
        console.print(reasons)
    if report["left_out_by_country"]:
        left = Table(title="left out (not targeted) by country", title_justify="left")
        for column in ("country", "objected before", "joined after the effective date"):
            left.add_column(column, justify="left" if column == "country" else "right")
        for country, counts in report["left_out_by_country"].items():
            left.add_row(
                country, str(counts["objected"]), str(counts["joined_after_effective_date"])
            )
        console.print(left)
    for key in ("by_country", "by_locale"):
        table = Table(title=key.replace("_", " "), title_justify="left")
        table.add_column(key.split("_")[1])
        for column in _BREAKDOWN:
            label = column.replace("_", " ")
            # Narrow terminals wrap "fell back" rather than cut a header to "object…".
            table.add_column(label, justify="right", min_width=max(map(len, label.split())))
        for name, row in report[key].items():
            table.add_row(name, *(str(row[c]) for c in _BREAKDOWN))
        console.print(table)


_BREAKDOWN = ("targeted", "notified", "failed", "pending", "fell_back", "seen", "objected")


def _evidence(e: dict[str, Any]) -> str:
    if e.get("verified") is None:
        return "not verified: run herald evidence verify --db --public-key KEY"
    if not e["verified"]:
        return f"BROKEN at {e['checked_at']}: {e.get('problem')}"
    pinned = "pinned key" if e.get("pinned_key") else "local key"
    covered = f"{e.get('events_verified')} of {e.get('events_now')} events"
    return f"verified {e['checked_at']} ({covered}, {pinned} {str(e['key_fingerprint'])[:16]}…)"
