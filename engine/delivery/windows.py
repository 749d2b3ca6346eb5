"""Send windows in the recipient's local time. Pure: instants in, instants out."""

import datetime as dt
import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from engine.authoring.regions import region_data
from engine.models import Channel

if TYPE_CHECKING:
    from engine.authoring.campaigns import SendWindow

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = dt.timedelta(days=1)
_DAY_SECONDS = 86400.0
_EPOCH_DAY = dt.date(1970, 1, 1).toordinal()
_SEARCH_DAYS = 16  # yesterday to two weeks ahead: a week's only opening may fall in a DST gap


@dataclass(frozen=True, slots=True)
class Window:
    """A weekly window in local wall-clock time; instants are UTC epoch seconds.

    Local time t = dt.datetime.fromtimestamp(instant, zone); `days` open the window, 0 = Monday.
    start < end: open iff weekday(t) in days and start <= t.time() < end.
    end < start (crosses midnight; end == 00:00 is until midnight): open iff (weekday(t) in days
    and t.time() >= start) or ((weekday(t) - 1) % 7 in days and t.time() < end).
    `next_open` gives the first instant >= the given one at which that rule holds. So under DST a
    start that occurs twice opens at its first occurrence (fold=0), and again at the second if the
    clock was set back below it; a clock set back into the window reopens it; a start skipped by a
    spring gap opens when the clock jumps past it (02:30 on 2024-03-31 in Europe/Berlin opens at
    03:00 CEST = 01:00 UTC), or not that day if the jump also passes end.
    """

    days: frozenset[int]
    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError(f"window days must be a non-empty subset of 0..6, got {self.days}")
        if self.start == self.end:
            raise ValueError(f"window start and end are both {self.start}")

    @classmethod
    def of(cls, days: Iterable[str], start: dt.time, end: dt.time) -> "Window":
        """A window from day names "mon".."sun"; ValueError if unknown, none, or start == end."""
        names = list(days)
        unknown = [name for name in names if name not in DAY_NAMES]
        if unknown:
            raise ValueError(f"unknown day names {unknown}; expected some of {DAY_NAMES}")
        return cls(frozenset(DAY_NAMES.index(name) for name in names), start, end)

    def is_open(self, instant: float, zone: ZoneInfo) -> bool:
        """Whether the window is open at `instant` in `zone`."""
        return self._open_at(dt.datetime.fromtimestamp(instant, zone))

    def next_open(self, instant: float, zone: ZoneInfo) -> float:
        """`instant` if the window is open then, else the first later instant at which it opens."""
        local = dt.datetime.fromtimestamp(instant, zone)
        if self._open_at(local):
            return instant
        best = math.inf
        day = local.date() - _DAY
        earliest = _as_utc(day, self.start) - _DAY_SECONDS  # no opening on `day` is earlier
        for _ in range(_SEARCH_DAYS):
            if earliest >= best:  # nor on any later day: UTC offsets are under 24 hours
                return best
            if day.weekday() in self.days:
                for opening in self._openings(day, zone):
                    if instant <= opening < best and self.is_open(opening, zone):
                        best = opening
            day, earliest = day + _DAY, earliest + _DAY_SECONDS
        if best == math.inf:
            raise ValueError(f"{self} does not open within two weeks in {zone}")
        return best

    def _open_at(self, local: dt.datetime) -> bool:
        weekday, time = local.weekday(), local.time()
        if self.start < self.end:
            return weekday in self.days and self.start <= time < self.end
        return (weekday in self.days and time >= self.start) or (
            (weekday - 1) % 7 in self.days and time < self.end
        )

    def _openings(self, day: dt.date, zone: ZoneInfo) -> Iterator[float]:
        """Instants at which the window opening on `day` may turn from closed to open."""
        first, second = _instants(day, self.start, zone)
        if first <= second:  # start occurs once, or twice (autumn)
            yield from (first, second)
        else:  # start is skipped by a spring gap: the clock jumps past it
            yield _transition(second, first, zone)
        first, second = _instants(day + _DAY if self.end < self.start else day, self.end, zone)
        if first < second:  # end occurs twice: the clock is set back, maybe into the window
            yield _transition(first, second, zone)


def _as_utc(day: dt.date, time: dt.time) -> float:
    """Epoch seconds of `time` on `day` read as UTC wall time."""
    seconds = time.hour * 3600 + time.minute * 60 + time.second + time.microsecond / 1e6
    return (day.toordinal() - _EPOCH_DAY) * _DAY_SECONDS + seconds


def _instants(day: dt.date, time: dt.time, zone: ZoneInfo) -> tuple[float, float]:
    """The instants of wall time `time` on `day`, read with fold=0 and fold=1 (equal unless DST)."""
    wall = _as_utc(day, time)
    early, late = _folds(time)
    return wall - _offset(day, early, zone), wall - _offset(day, late, zone)


def _offset(day: dt.date, time: dt.time, zone: ZoneInfo) -> float:
    offset = zone.utcoffset(dt.datetime.combine(day, time))
    return offset.total_seconds() if offset else 0.0


@functools.lru_cache(maxsize=256)
def _folds(time: dt.time) -> tuple[dt.time, dt.time]:
    return time.replace(fold=0), time.replace(fold=1)


def _transition(after: float, upto: float, zone: ZoneInfo) -> float:
    """The instant in (after, upto] at which `zone` changes offset; tzdata uses whole seconds."""
    low, high = math.floor(after), math.ceil(upto)
    before = dt.datetime.fromtimestamp(low, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return float(high)


@functools.lru_cache(maxsize=4096)
def zone_for(timezone: str | None, fallback: str | None) -> ZoneInfo:
    """The recipient's zone: `timezone` if valid, else `fallback` (the country's), else UTC."""
    for name in (timezone, fallback):
        if name:
            try:
                return ZoneInfo(name)
            except (KeyError, ValueError, OSError, TypeError):  # unknown or malformed key
                continue
    return ZoneInfo("UTC")


def local_date(at: float, timezone: str | None, country: str) -> dt.date:
    """The calendar date of `at` where the user lives (theirs, else their country's zone)."""
    zone = zone_for(timezone, region_data().country(country).timezone)
    return dt.datetime.fromtimestamp(at, zone).date()


class SendTimes:
    """A campaign's send window applied to deliveries: when each may reach a transport."""

    def __init__(self, spec: "SendWindow | None") -> None:
        self.window = Window.of(spec.days, spec.from_, spec.to) if spec else None
        self.channels = frozenset(spec.channels) if spec else frozenset()

    def next_allowed(
        self, instant: float, channel: Channel | str, timezone: str | None, country: str
    ) -> float:
        """`instant`, or the next opening of the window in the recipient's zone (theirs,
        else their country's main zone) when the window binds this channel."""
        if self.window is None or channel not in self.channels:
            return instant
        zone = zone_for(timezone, region_data().country(country).timezone)
        return self.window.next_open(instant, zone)
