"""Send windows: exact opening instants across zones, DST changes, midnight and retries."""

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from engine.delivery.windows import Window, zone_for

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
ALL_DAYS = [*WEEKDAYS, "sat", "sun"]
OFFICE = Window.of(WEEKDAYS, dt.time(9), dt.time(18))
EVERY_DAY = Window.of(ALL_DAYS, dt.time(9), dt.time(18))
NIGHT = Window.of(WEEKDAYS, dt.time(22), dt.time(6))
BERLIN_GAP = Window.of(ALL_DAYS, dt.time(2, 30), dt.time(3, 30))
SUNDAY_MIDNIGHT = Window.of(["sun"], dt.time(0), dt.time(0, 30))
BERLIN = ZoneInfo("Europe/Berlin")


def utc(s: str) -> float:
    return dt.datetime.fromisoformat(s).timestamp()


def iso(instant: float) -> str:
    return dt.datetime.fromtimestamp(instant, dt.UTC).isoformat()


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        pytest.param("Europe/Lisbon", "2024-06-10T08:00:00+00:00", id="lisbon-utc+1"),
        pytest.param("Europe/Helsinki", "2024-06-10T06:00:00+00:00", id="helsinki-utc+3"),
        pytest.param("Asia/Kolkata", "2024-06-10T03:30:00+00:00", id="kolkata-utc+5:30"),
        pytest.param("Asia/Kathmandu", "2024-06-10T03:15:00+00:00", id="kathmandu-utc+5:45"),
    ],
)
def test_office_hours_from_saturday_open_at_9_on_monday_local(zone: str, expected: str) -> None:
    saturday_noon = utc("2024-06-08T12:00:00+00:00")
    assert iso(OFFICE.next_open(saturday_noon, ZoneInfo(zone))) == iso(utc(expected))


@pytest.mark.parametrize(
    ("zone", "is_open", "expected"),
    [
        pytest.param("Asia/Kolkata", True, "2024-06-05T07:30:00+00:00", id="kolkata-13:00-open"),
        pytest.param("Europe/Lisbon", False, "2024-06-05T08:00:00+00:00", id="lisbon-08:30-closed"),
        pytest.param(
            "Europe/Helsinki", True, "2024-06-05T07:30:00+00:00", id="helsinki-10:30-open"
        ),
    ],
)
def test_office_hours_on_a_wednesday_depend_on_the_zone(
    zone: str, is_open: bool, expected: str
) -> None:
    wednesday = utc("2024-06-05T07:30:00+00:00")
    assert OFFICE.is_open(wednesday, ZoneInfo(zone)) is is_open
    assert iso(OFFICE.next_open(wednesday, ZoneInfo(zone))) == iso(utc(expected))


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        pytest.param("2024-03-30T17:30:00+00:00", "2024-03-31T07:00:00+00:00", id="into-cest"),
        pytest.param("2024-10-26T16:30:00+00:00", "2024-10-27T08:00:00+00:00", id="into-cet"),
    ],
)
def test_berlin_opens_at_9_local_on_both_dst_sundays(instant: str, expected: str) -> None:
    assert not EVERY_DAY.is_open(utc(instant), BERLIN)  # 18:30 local on Saturday
    assert iso(EVERY_DAY.next_open(utc(instant), BERLIN)) == iso(utc(expected))


@pytest.mark.parametrize(
    ("instant", "is_open"),
    [
        pytest.param("2024-03-31T06:59:00+00:00", False, id="spring-08:59-cest"),
        pytest.param("2024-03-31T15:59:00+00:00", True, id="spring-17:59-cest"),
        pytest.param("2024-03-31T16:00:00+00:00", False, id="spring-18:00-cest"),
        pytest.param("2024-10-27T07:59:00+00:00", False, id="autumn-08:59-cet"),
        pytest.param("2024-10-27T16:59:00+00:00", True, id="autumn-17:59-cet"),
        pytest.param("2024-10-27T17:00:00+00:00", False, id="autumn-18:00-cet"),
    ],
)
def test_berlin_closes_at_18_local_on_both_dst_sundays(instant: str, is_open: bool) -> None:
    assert EVERY_DAY.is_open(utc(instant), BERLIN) is is_open


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        pytest.param("2024-06-07T21:00:00+00:00", None, id="fri-23:00-open"),
        pytest.param("2024-06-08T03:00:00+00:00", None, id="sat-05:00-tail-of-friday-open"),
        pytest.param("2024-06-08T04:00:00+00:00", "2024-06-10T20:00:00+00:00", id="sat-06:00"),
        pytest.param("2024-06-10T03:00:00+00:00", "2024-06-10T20:00:00+00:00", id="mon-05:00"),
        pytest.param("2024-06-11T03:00:00+00:00", None, id="tue-05:00-tail-of-monday-open"),
    ],
)
def test_night_window_crosses_midnight(instant: str, expected: str | None) -> None:
    """22:00-06:00 Mon-Fri in Berlin (UTC+2): None means open at `instant`."""
    assert NIGHT.is_open(utc(instant), BERLIN) is (expected is None)
    assert iso(NIGHT.next_open(utc(instant), BERLIN)) == iso(utc(expected or instant))


def test_window_ending_at_midnight_runs_until_midnight() -> None:
    friday_evening = Window.of(["fri"], dt.time(20), dt.time(0))
    assert friday_evening.is_open(utc("2024-06-07T21:59:59+00:00"), BERLIN)  # Fri 23:59:59
    midnight = utc("2024-06-07T22:00:00+00:00")  # Sat 00:00 local
    assert not friday_evening.is_open(midnight, BERLIN)
    assert iso(friday_evening.next_open(midnight, BERLIN)) == "2024-06-14T18:00:00+00:00"


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        pytest.param(600, "2024-06-10T07:00:00+00:00", id="18:05-local-waits-for-monday"),
        pytest.param(60, "2024-06-07T15:56:00+00:00", id="17:56-local-retries-at-once"),
    ],
)
def test_retry_outside_the_window_moves_to_the_next_opening(backoff: int, expected: str) -> None:
    failed_at = utc("2024-06-07T15:55:00+00:00")  # Friday 17:55 in Berlin
    assert iso(OFFICE.next_open(failed_at + backoff, BERLIN)) == expected


@pytest.mark.parametrize(
    ("window", "zone", "instant", "expected"),
    [
        pytest.param(
            BERLIN_GAP,
            "Europe/Berlin",
            "2024-03-31T00:30:00+00:00",  # 01:30 CET; 02:00-03:00 does not exist
            "2024-03-31T01:00:00+00:00",  # 03:00 CEST: the clock jumps past 02:30
            id="berlin-start-in-spring-gap",
        ),
        pytest.param(
            Window.of(ALL_DAYS, dt.time(2, 15), dt.time(2, 45)),
            "Europe/Berlin",
            "2024-03-31T00:00:00+00:00",  # 01:00 CET; the whole window is skipped
            "2024-04-01T00:15:00+00:00",  # 02:15 CEST the next day
            id="berlin-window-inside-spring-gap",
        ),
        pytest.param(
            BERLIN_GAP,
            "Europe/Berlin",
            "2024-10-27T00:00:00+00:00",  # 02:00 CEST
            "2024-10-27T00:30:00+00:00",  # 02:30 CEST, first occurrence
            id="berlin-autumn-first-occurrence",
        ),
        pytest.param(
            BERLIN_GAP,
            "Europe/Berlin",
            "2024-10-27T01:10:00+00:00",  # 02:10 CET: the clock was set back below 02:30
            "2024-10-27T01:30:00+00:00",  # 02:30 CET, second occurrence
            id="berlin-autumn-second-occurrence",
        ),
        pytest.param(
            Window.of(ALL_DAYS, dt.time(0), dt.time(2, 30)),
            "Europe/Berlin",
            "2024-10-27T00:45:00+00:00",  # 02:45 CEST, closed
            "2024-10-27T01:00:00+00:00",  # 02:00 CET: the clock is set back into the window
            id="berlin-autumn-clock-set-back-into-window",
        ),
        pytest.param(
            BERLIN_GAP,
            "America/New_York",
            "2024-03-10T06:00:00+00:00",  # 01:00 EST
            "2024-03-10T07:00:00+00:00",  # 03:00 EDT
            id="new-york-start-in-spring-gap",
        ),
        pytest.param(
            BERLIN_GAP,
            "Australia/Lord_Howe",
            "2024-10-05T15:00:00+00:00",  # 01:30 +10:30
            "2024-10-05T15:30:00+00:00",  # 02:00 +10:30 becomes 02:30 +11:00
            id="lord-howe-half-hour-gap-ends-at-start",
        ),
    ],
)
def test_dst_openings_follow_the_wall_clock(
    window: Window, zone: str, instant: str, expected: str
) -> None:
    opening = window.next_open(utc(instant), ZoneInfo(zone))
    assert iso(opening) == expected
    assert window.is_open(opening, ZoneInfo(zone))
    assert not window.is_open(opening - 1, ZoneInfo(zone))


PROPERTY_ZONES = [
    "UTC",
    "Europe/Berlin",
    "Europe/Lisbon",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/New_York",
    "Australia/Lord_Howe",
]
PROPERTY_WINDOWS = [
    pytest.param(OFFICE, id="office-mon-fri-09-18"),
    pytest.param(NIGHT, id="night-mon-fri-22-06"),
    pytest.param(BERLIN_GAP, id="all-days-0230-0330"),
    pytest.param(SUNDAY_MIDNIGHT, id="sun-0000-0030"),
]
STEP = 37 * 60


def samples(zone: ZoneInfo) -> Iterator[float]:
    """2024 every 37 minutes within two days of an offset change, every 7 * 37 minutes elsewhere."""
    instant, end = utc("2024-01-01T00:00:00+00:00"), utc("2025-01-01T00:00:00+00:00")
    while instant < end:
        yield instant
        before, after = (dt.datetime.fromtimestamp(instant + d, zone) for d in (-2e5, 2e5))
        instant += STEP if before.utcoffset() != after.utcoffset() else 7 * STEP


@pytest.mark.parametrize("window", PROPERTY_WINDOWS)
@pytest.mark.parametrize("zone_name", PROPERTY_ZONES)
def test_next_open_is_the_first_open_instant(window: Window, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    failures = []
    previous_next = -1.0
    for instant in samples(zone):
        opening = window.next_open(instant, zone)
        is_open = window.is_open(instant, zone)
        if opening < instant or not window.is_open(opening, zone):
            failures.append(f"{iso(instant)} -> {iso(opening)}: earlier or not open")
        if (opening == instant) is not is_open:
            failures.append(f"{iso(instant)} -> {iso(opening)}: is_open is {is_open}")
        if opening - 1 >= instant and window.is_open(opening - 1, zone):
            failures.append(f"{iso(instant)} -> {iso(opening)}: open a second earlier")
        if is_open and previous_next > instant:
            failures.append(f"{iso(instant)} is open but the previous sample skipped it")
        previous_next = opening
    assert failures == []


@pytest.mark.parametrize(
    ("timezone", "fallback", "expected"),
    [
        pytest.param("Asia/Kolkata", "Europe/Lisbon", "Asia/Kolkata", id="valid-zone"),
        pytest.param("Mars/Olympus_Mons", "Europe/Lisbon", "Europe/Lisbon", id="unknown-zone"),
        pytest.param(None, "Europe/Lisbon", "Europe/Lisbon", id="no-zone"),
        pytest.param("", "Europe/Lisbon", "Europe/Lisbon", id="empty-zone"),
        pytest.param("../etc/passwd", "Europe/Lisbon", "Europe/Lisbon", id="malformed-zone"),
        pytest.param(None, None, "UTC", id="neither"),
        pytest.param("Mars/Olympus_Mons", "Europe/", "UTC", id="both-invalid"),
    ],
)
def test_zone_for_falls_back_to_country_then_utc(
    timezone: str | None, fallback: str | None, expected: str
) -> None:
    assert zone_for(timezone, fallback).key == expected


def test_window_of_maps_day_names_to_weekdays() -> None:
    window = Window.of(["sun", "mon", "wed"], dt.time(9), dt.time(17, 30))
    assert window == Window(frozenset({6, 0, 2}), dt.time(9), dt.time(17, 30))


@pytest.mark.parametrize(
    ("days", "start", "end"),
    [
        pytest.param(["mon", "funday"], dt.time(9), dt.time(18), id="unknown-day"),
        pytest.param(["Monday"], dt.time(9), dt.time(18), id="long-day-name"),
        pytest.param(["mon"], dt.time(9), dt.time(9), id="start-equals-end"),
        pytest.param([], dt.time(9), dt.time(18), id="no-days"),
    ],
)
def test_window_of_rejects(days: list[str], start: dt.time, end: dt.time) -> None:
    with pytest.raises(ValueError, match=r"day|start"):
        Window.of(days, start, end)
