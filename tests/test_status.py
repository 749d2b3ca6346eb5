"""`herald status`'s projection through send windows, in each recipient's zone. Pure."""

import datetime as dt

import pytest

from engine.delivery.windows import SendTimes, Window
from engine.evidence.status import campaign_status
from engine.models import Backlog


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


class _Spec:
    """The shape of a campaign's send_window: Mon-Fri 09:00-18:00, email only."""

    days = ("mon", "tue", "wed", "thu", "fri")
    from_, to = dt.time(9), dt.time(18)
    channels = ("email",)


OFFICE_HOURS = SendTimes(_Spec())  # type: ignore[arg-type]  # duck-typed SendWindow


def _row(deadline: str) -> dict[str, object]:
    return {
        "id": "c", "title": "t", "state": "planned", "paused": False, "problem": None,
        "start_at": 0.0, "deadline_at": utc(deadline), "rate_per_second": 200.0,
    }  # fmt: skip


def _status(now: str, deadline: str, backlog: list[Backlog], recent: float = 1.0):
    pending = sum(b.count for b in backlog)
    return campaign_status(
        _row(deadline),
        {"pending": pending, "sent": 100},
        pending + 100,
        recent,
        min(b.due or utc(now) for b in backlog),
        utc(now),
        backlog=backlog,
        next_allowed=OFFICE_HOURS.next_allowed,
    )


def test_friday_evening_backlog_waits_for_monday_and_is_at_risk():
    # Friday 17:59 in Berlin, sending at 1/s: 2,630 emails would take 44 min, but the
    # window closes at 18:00; the rest waits for Monday 09:00, after Saturday's deadline.
    now = "2024-06-07T15:59:00+00:00"
    status = _status(now, "2024-06-08T12:00:00+00:00", [Backlog("email", None, "DE", 2630, None)])
    assert status["outlook"] == "at risk"
    projected = utc(status["projected_completion"])
    assert utc("2024-06-10T07:00:00+00:00") <= projected <= utc("2024-06-10T08:00:00+00:00")
    assert status["projected_through_send_windows"] is True


def test_without_windows_the_same_backlog_would_be_on_track():
    """The projection the operator was shown before: it ignored the window."""
    now = utc("2024-06-07T15:59:00+00:00")
    status = campaign_status(
        _row("2024-06-08T12:00:00+00:00"), {"pending": 2630}, 2630, 1.0, now, now
    )
    assert status["outlook"] == "on track"


def test_each_zone_sends_in_its_own_window():
    # Friday 16:30 UTC: 17:30 in Lisbon (open), 19:30 in Helsinki (closed until Monday).
    now = "2024-06-07T16:30:00+00:00"
    lisbon = Backlog("email", "Europe/Lisbon", "PT", 100, None)
    helsinki = Backlog("email", None, "FI", 100, None)  # no zone of their own: Finland's
    alone = _status(now, "2024-06-20T00:00:00+00:00", [lisbon])
    assert utc(alone["projected_completion"]) <= utc(now) + 15 * 60
    both = _status(now, "2024-06-20T00:00:00+00:00", [lisbon, helsinki])
    projected = utc(both["projected_completion"])  # Monday 09:00 in Helsinki is 06:00 UTC
    assert utc("2024-06-10T06:00:00+00:00") <= projected <= utc("2024-06-10T06:20:00+00:00")
    assert both["outlook"] == "on track"


def test_inapp_is_not_held_by_an_email_window():
    now = "2024-06-08T10:00:00+00:00"  # Saturday
    status = _status(now, "2024-06-08T12:00:00+00:00", [Backlog("inapp", None, "DE", 500, None)])
    assert status["outlook"] == "on track"


def test_a_slow_minute_while_waiting_for_the_window_is_not_the_capacity():
    # Saturday: 10,000 emails wait for Monday; a few in-app notices went out in the last
    # minute. At the configured 200/s the emails take under a minute on Monday morning.
    now = "2024-06-08T10:00:00+00:00"
    backlog = [Backlog("email", None, "DE", 10_000, None)]
    status = _status(now, "2024-06-11T00:00:00+00:00", backlog, recent=0.2)
    assert status["outlook"] == "on track"
    assert status["projected_completion"] == "2024-06-10T07:00:50+00:00"  # 09:00 CEST + 50 s


def test_a_deadline_already_past_is_missed_not_at_risk():
    status = _status(
        "2024-06-12T10:00:00+00:00",
        "2024-06-12T00:00:00+00:00",
        [Backlog("email", None, "DE", 5, None)],
    )
    assert status["outlook"] == "missed"


def test_counts_say_which_are_users_and_which_are_deliveries():
    status = _status(
        "2024-06-05T10:00:00+00:00",
        "2024-06-12T00:00:00+00:00",
        [Backlog("email", None, "DE", 5, None), Backlog("inapp", None, "DE", 5, None)],
    )
    assert status["users"] == {"targeted": 110}
    assert status["deliveries"] == {
        "notified": 100,
        "pending": 10,
        "deferred": 0,
        "failed": 0,
        "bounced": 0,
    }
    assert "targeted" not in status
    assert "pending" not in status


@pytest.mark.parametrize("days", [("sat",), ("mon", "sun")])
def test_projection_is_bounded_when_the_window_rarely_opens(days):
    class Rare(_Spec):
        pass

    Rare.days = days
    times = SendTimes(Rare())  # type: ignore[arg-type]
    assert isinstance(times.window, Window)
    now = utc("2024-06-05T10:00:00+00:00")
    status = campaign_status(
        _row("2024-06-06T00:00:00+00:00"),
        {"pending": 10**7},
        10**7,
        0.0,
        now,
        now,
        backlog=[Backlog("email", None, "DE", 10**7, None)],
        next_allowed=times.next_allowed,
    )
    assert status["outlook"] == "at risk"


def test_a_campaign_planned_ahead_of_its_start_is_scheduled_until_then():
    backlog = [Backlog("email", None, "DE", 5, utc("2024-06-10T09:00:00+00:00"))]
    row = {**_row("2024-06-20T00:00:00+00:00"), "start_at": utc("2024-06-10T09:00:00+00:00")}

    def state(now: str) -> str:
        status = campaign_status(row, {"pending": 5}, 5, 0.0, backlog[0].due, utc(now), backlog)
        return str(status["state"])

    assert state("2024-06-05T10:00:00+00:00") == "scheduled"
    assert state("2024-06-10T09:00:01+00:00") == "sending"
