"""The coverage report's seen and objected figures, end to end: the CLI on a real database
(a SQLite file, or PostgreSQL with HERALD_TEST_POSTGRES), with objections and seen events
recorded through the store exactly as `herald serve` records them."""

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, text

from engine.delivery.tokens import Keys
from engine.evidence.reportpage import format_duration
from engine.store.objections import find_notice, mark_seen, record_objection

CAMPAIGN = "ai-training-notice"
PURPOSE = "ai-training"  # the shipped campaign's policy.purpose
# Users without an email address: their notice reaches them in-app only, so their
# objections count on the in-app channel.
NO_EMAIL = "id,email,name,country,locale,timezone\nno-mail-1,,Kari,NO,nb,Europe/Oslo\n"
NO_EMAIL += "no-mail-2,,Ana,PT,pt,Europe/Lisbon\n"
COVERAGE = ("targeted", "notified", "failed", "pending", "coverage_equation_holds", "channels")


@dataclass(frozen=True)
class Notified:
    """One targeted user as the database has it, read back to build expectations."""

    user_id: str
    country: str
    locale: str
    first_sent: float | None  # the first notice that went out
    by_email: bool  # the notice reached them by email
    notification: int | None  # their in-app notice's notification id

    @property
    def sent_at(self) -> float:
        assert self.first_sent is not None, f"{self.user_id}: no notice went out"
        return self.first_sent

    @property
    def inbox_id(self) -> int:
        assert self.notification is not None, f"{self.user_id}: no in-app notification"
        return self.notification


@pytest.fixture
def store(herald) -> Iterator[Engine]:
    engine = herald.database()
    yield engine
    engine.dispose()


@pytest.fixture
def sent(herald, tmp_path) -> dict[str, Notified]:
    """40 synthetic users and two without email, planned and sent through the outbox."""
    extra = tmp_path / "no-email.csv"
    extra.write_text(NO_EMAIL, encoding="utf-8")
    # Users imported later are still planned (plan_until has not passed).
    herald.set_campaign(
        "rate_per_second: 100000", "rate_per_second: 100000\n  plan_until: 2999-01-01"
    )
    assert herald("users", "generate", "--count", "40").exit_code == 0
    assert herald("users", "import", str(extra)).exit_code == 0
    planned = herald("plan", f"campaigns/{CAMPAIGN}.yaml")
    assert planned.exit_code == 0, planned.output
    result = herald("send", f"campaigns/{CAMPAIGN}.yaml")
    assert result.exit_code == 0, result.output
    return _notified(herald)


def _notified(herald) -> dict[str, Notified]:
    engine = herald.database()
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.user_id, d.channel, d.country, d.locale, d.status, d.sent_at, "
                "n.id AS notification FROM delivery d "
                "LEFT JOIN inapp_notification n ON n.delivery_id = d.id "
                "WHERE d.campaign_id = :c AND d.message = 'notice'"
            ),
            {"c": CAMPAIGN},
        ).mappings()
        by_user: dict[str, list[Any]] = {}
        for row in rows:
            by_user.setdefault(row["user_id"], []).append(row)
    engine.dispose()
    users = {}
    for user_id, found in by_user.items():
        assert len({(r["country"], r["locale"]) for r in found}) == 1
        reached = [r for r in found if r["status"] in ("sent", "delivered")]
        users[user_id] = Notified(
            user_id,
            found[0]["country"],
            found[0]["locale"],
            min((r["sent_at"] for r in reached), default=None),
            any(r["channel"] == "email" for r in reached),
            next((r["notification"] for r in found if r["notification"] is not None), None),
        )
    return users


def _object(herald, store: Engine, user: Notified, at: float, locale: str | None = None) -> str:
    """Object as the objection page does for `user`'s link; returns the notice's channel."""
    secret = herald.env["HERALD_SECRET"].encode()
    notice = find_notice(store, Keys(secret).token_id(CAMPAIGN, user.user_id))
    assert notice is not None
    recorded = record_objection(store, notice, PURPOSE, locale or user.locale, None, "page", at)
    assert recorded.first
    return notice.channel


def _engagement(entry: dict[str, int]) -> dict[str, int]:
    return {"seen": entry["seen"], "objected": entry["objected"]}


def _report(herald) -> dict[str, Any]:
    result = herald("report", CAMPAIGN, "--format", "json")
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _table(herald) -> str:
    result = herald("report", CAMPAIGN)
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def _table_row(table: str, first_cell: str, after: str = "") -> list[str]:
    """The cells of the first row starting with `first_cell` after the line `after`."""
    lines = table.splitlines()
    if after:
        lines = lines[lines.index(after) :]
    for line in lines:
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{table}")


def test_report_counts_seen_and_objected_by_country_locale_and_channel(herald, store, sent):
    before = _report(herald)
    users = sorted(sent.values(), key=lambda u: u.user_id)
    by_email = [u for u in users if u.by_email]
    inapp_only = [u for u in users if not u.by_email]
    assert len(inapp_only) == 2
    seen = by_email[:5] + inapp_only[:1]
    for user in seen:
        assert mark_seen(store, user.inbox_id, None, user.sent_at + 60) is not None
    again = mark_seen(store, seen[0].inbox_id, None, seen[0].sent_at + 120)
    assert again is not None
    assert again["seen_at"] == seen[0].sent_at + 60  # seen once
    objectors = [by_email[2], by_email[6], by_email[7], inapp_only[1]]
    # One objects on a page in another language: objections count by the page's locale.
    page_locales = [u.locale for u in objectors]
    page_locales[1] = "en" if objectors[1].locale != "en" else "de"
    channels = [
        _object(herald, store, u, u.sent_at + 3600, page)
        for u, page in zip(objectors, page_locales, strict=True)
    ]
    assert channels == ["email", "email", "email", "inapp"]

    report = _report(herald)
    assert (report["seen"], report["objected"]) == (6, 4)
    assert report["by_channel"] == {
        "email": {"seen": 0, "objected": 3},
        "inapp": {"seen": 6, "objected": 1},
    }
    seen_by = Counter(u.country for u in seen), Counter(u.locale for u in seen)
    objected_by = Counter(u.country for u in objectors), Counter(page_locales)
    for key, seen_in, objected_in in zip(
        ("by_country", "by_locale"), seen_by, objected_by, strict=True
    ):
        assert {k: v["seen"] for k, v in report[key].items() if v["seen"]} == seen_in
        assert {k: v["objected"] for k, v in report[key].items() if v["objected"]} == objected_in
    for key in ("by_country", "by_locale"):  # the coverage figures beside them are kept
        for name, figures in before[key].items():
            assert report[key][name] == {**figures, **_engagement(report[key][name])}

    table = _table(herald)
    assert _table_row(table, "seen in-app")[1] == f"6 ({100 * 6 / len(users):.1f}%)"
    assert _table_row(table, "objected")[1] == f"4 ({100 * 4 / len(users):.1f}%)"
    assert _table_row(table, "median time from notice to objection")[1] == "1 h"
    assert _table_row(table, "inapp", after="seen and objected by channel") == ["inapp", "6", "1"]
    for key in ("by_country", "by_locale"):
        for name, figures in report[key].items():
            row = _table_row(table, name, after=key.replace("_", " "))
            assert row[-2:] == [str(figures["seen"]), str(figures["objected"])]


@pytest.mark.parametrize(
    ("delays", "median", "shown"),
    [
        pytest.param((600, 7500, 86400), 7500.0, "2 h 5 min", id="odd"),
        pytest.param((86400, 600, 9900, 7500), 8700.0, "2 h 25 min", id="even"),
    ],
)
def test_report_median_notice_to_objection(herald, store, sent, tmp_path, delays, median, shown):
    before = _report(herald)
    assert before["median_notice_to_objection_s"] is None
    assert _table_row(_table(herald), "median time from notice to objection")[1] == "none"
    # The last objector is reached in-app only: their first notice is the in-app one.
    users = sorted(sent.values(), key=lambda u: (not u.by_email, u.user_id))
    objectors = users[: len(delays) - 1] + users[-1:]
    assert not objectors[-1].by_email
    for user, delay in zip(objectors, delays, strict=True):
        _object(herald, store, user, user.sent_at + delay)
    # A user whose notice has not gone out yet objects too (a forwarded link, say): the
    # objection counts, and has no place in the median.
    late = tmp_path / "late.csv"
    late.write_text("id,email,name,country\nlate-1,late@example.com,Lea,AT\n", "utf-8")
    assert herald("users", "import", str(late)).exit_code == 0
    assert herald("plan", CAMPAIGN).exit_code == 0
    _object(herald, store, _notified(herald)["late-1"], 2e9)

    report = _report(herald)
    assert report["objected"] == len(delays) + 1
    assert report["median_notice_to_objection_s"] == pytest.approx(median)
    assert report["pending"] == 1
    assert _table_row(_table(herald), "median time from notice to objection")[1] == shown


def test_confirmations_do_not_count_as_notices(herald, store, sent):
    def coverage() -> tuple[dict[str, Any], dict[str, Any]]:
        report = _report(herald)
        status = herald("status", CAMPAIGN, "--format", "json")
        assert status.exit_code == 0, status.output
        [line] = json.loads(status.stdout)["campaigns"]
        figures = {"targeted": line["users"]["targeted"], "state": line["state"]}
        return {k: report[k] for k in COVERAGE}, {**figures, **line["deliveries"]}

    before = coverage()
    assert before[0]["pending"] == 0
    assert before[1]["state"] == "done"
    # Now, so that the confirmations are due at once; one user is reached in-app only.
    objectors = sorted(sent.values(), key=lambda u: (u.by_email, u.user_id))[:3]
    assert [u.by_email for u in objectors] == [False, False, True]
    for user in objectors:
        _object(herald, store, user, time.time())
    assert _confirmations(store) == ["pending"] * 3
    queued = coverage()
    assert queued[0] == before[0]  # queued, not sent: not pending notices
    assert queued[1] == {**before[1], "state": "sending"}  # but not done while they wait
    result = herald("send", CAMPAIGN, "--max-wait", "5")
    assert result.exit_code == 0, result.output
    assert _confirmations(store) == ["delivered", "delivered", "sent"]
    assert coverage() == before  # sent, and still not notices
    # An in-app confirmation that is seen is not a seen notice.
    with store.connect() as conn:
        inbox = conn.execute(
            text(
                "SELECT n.id FROM inapp_notification n JOIN delivery d ON d.id = n.delivery_id "
                "WHERE d.message = 'confirmation'"
            )
        ).scalars()
        confirmations = list(inbox)
    assert len(confirmations) == 2
    for notification in confirmations:
        assert mark_seen(store, notification, None, time.time()) is not None
    report = _report(herald)
    assert (report["seen"], report["objected"]) == (0, 3)
    assert report["by_channel"]["inapp"] == {"seen": 0, "objected": 2}


def _confirmations(store: Engine) -> list[str]:
    with store.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status FROM delivery WHERE message = 'confirmation' "
                "ORDER BY user_id, channel"
            )
        ).scalars()
        return list(rows)


def test_evidence_verify_passes_after_objections_and_seen_events(herald, store, sent):
    users = sorted(sent.values(), key=lambda u: u.user_id)
    for user in users[:4]:
        assert mark_seen(store, user.inbox_id, None, time.time()) is not None
    for user in users[2:5]:
        _object(herald, store, user, time.time())
    sent_again = herald("send", CAMPAIGN, "--max-wait", "5")  # the confirmations
    assert sent_again.exit_code == 0, sent_again.output
    with store.connect() as conn:
        kinds = dict(
            conn.execute(
                text("SELECT kind, COUNT(*) FROM event WHERE campaign_id = :c GROUP BY kind"),
                {"c": CAMPAIGN},
            ).all()
        )
    assert (kinds["seen"], kinds["objected"]) == (4, 3)
    assert set(_confirmations(store)) <= {"sent", "delivered"}
    verified = herald("evidence", "verify", "--db")
    assert verified.exit_code == 0, verified.output
    assert f"OK {CAMPAIGN}:" in verified.stdout


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        pytest.param(None, "none", id="none"),
        pytest.param(0.4, "0 s", id="zero"),
        pytest.param(59, "59 s", id="seconds"),
        pytest.param(7500, "2 h 5 min", id="hours-minutes"),
        pytest.param(7530, "2 h 5 min", id="seconds-dropped"),
        pytest.param(3600, "1 h", id="whole-hour"),
        pytest.param(90061, "1 d 1 h", id="days"),
    ],
)
def test_format_duration_shows_the_two_largest_units(seconds, shown):
    assert format_duration(seconds) == shown


def _day(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat()


def test_report_counts_per_utc_day(herald, store, sent):
    users = sorted(sent.values(), key=lambda u: u.user_id)
    midnight = (max(u.sent_at for u in users) // 86400 + 2) * 86400  # a UTC midnight
    # Less than a second either side of midnight: a cast that rounds puts both on one day.
    seen_at = [midnight - 0.4, midnight + 0.4, midnight + 0.6, midnight + 3 * 86400]
    for user, at in zip(users, seen_at, strict=False):
        assert mark_seen(store, user.inbox_id, None, at) is not None
    objected_at = [midnight - 0.6, midnight - 0.2, midnight - 10 * 86400]
    for user, at in zip(users[4:], objected_at, strict=False):
        _object(herald, store, user, at)
    with store.connect() as conn:
        notices = Counter(
            (channel, _day(at))
            for channel, at in conn.execute(
                text(
                    "SELECT channel, sent_at FROM delivery WHERE campaign_id = :c "
                    "AND message = 'notice' AND status IN ('sent', 'delivered')"
                ),
                {"c": CAMPAIGN},
            ).all()
        )

    report = _report(herald)
    over = report["over_time"]
    assert over["seen"] == Counter(map(_day, seen_at))
    assert over["objected"] == Counter(map(_day, objected_at))
    assert list(over["objected"]) == sorted(over["objected"])  # day by day
    assert over["users_notified"] == Counter(_day(u.sent_at) for u in users)
    assert sum(over["users_notified"].values()) == report["notified"] == len(users)
    assert {
        (channel, day): n
        for channel, days in over["notices_by_channel"].items()
        for day, n in days.items()
    } == notices
    for channel, days in over["notices_by_channel"].items():
        counts = report["channels"][channel]
        assert sum(days.values()) == counts["sent"] + counts["delivered"]
