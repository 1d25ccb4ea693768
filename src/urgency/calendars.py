"""Business-hours calendars: when the helpdesk works, in its own time zone.

SLA clocks run only while a calendar is open. Weekly hours are local wall-clock times, so a
deadline keeps to 08:00-18:00 in Berlin on both sides of a daylight-saving change; the clock
itself counts real elapsed time (UTC), so an hour of work is always sixty minutes. Pure code:
no I/O, no clock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A calendar whose weekly hours are all holidays for longer than this is a configuration error.
MAX_SEARCH_DAYS = 3 * 366

Interval = tuple[int, int]  # minutes after local midnight, [start, end), end may be 1440


@dataclass(frozen=True)
class BusinessCalendar:
    name: str
    timezone: str = "UTC"
    always_open: bool = False
    # Open intervals per weekday, Monday first.
    weekly: tuple[tuple[Interval, ...], ...] = ((), (), (), (), (), (), ())
    holidays: frozenset[date] = frozenset()
    # (month, day) pairs closed every year, e.g. (12, 25).
    yearly_holidays: frozenset[tuple[int, int]] = frozenset()

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_holiday(self, day: date) -> bool:
        return day in self.holidays or (day.month, day.day) in self.yearly_holidays

    def intervals(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The open intervals of local date `day`, as UTC datetimes."""
        return _day_intervals(self, day)

    def is_open(self, moment: datetime) -> bool:
        if self.always_open:
            return True
        moment = _utc(moment)
        day = moment.astimezone(self.zone).date()
        return any(start <= moment < end for start, end in self.intervals(day))

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment `duration` of open time after `start` (UTC). A clock started outside
        working hours begins at the next opening."""
        start = _utc(start)
        if duration <= timedelta(0):
            return start
        if self.always_open:
            return start + duration
        remaining = duration
        day = start.astimezone(self.zone).date()
        for _ in range(MAX_SEARCH_DAYS):
            for opens, closes in self.intervals(day):
                if closes <= start:
                    continue
                begin = max(opens, start)
                available = closes - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
            day += timedelta(days=1)
        raise ValueError(f"calendar {self.name!r}: no working time within {MAX_SEARCH_DAYS} days of {start}")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Open time from `start` to `end` (zero when end is not after start)."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            return timedelta(0)
        if self.always_open:
            return end - start
        total = timedelta(0)
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            for opens, closes in self.intervals(day):
                overlap = min(closes, end) - max(opens, start)
                if overlap > timedelta(0):
                    total += overlap
            day += timedelta(days=1)
        return total


@lru_cache(maxsize=16384)
def _day_intervals(calendar: BusinessCalendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    # Cached: a batch of tickets keeps asking about the same few days.
    if calendar.always_open:
        start = datetime.combine(day, time(0), tzinfo=calendar.zone)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=calendar.zone)
        return ((start.astimezone(UTC), end.astimezone(UTC)),)
    if calendar.is_holiday(day):
        return ()
    result = []
    for start_minute, end_minute in calendar.weekly[day.weekday()]:
        result.append((_local(day, start_minute, calendar.zone), _local(day, end_minute, calendar.zone)))
    return tuple(result)


def _local(day: date, minute: int, zone: ZoneInfo) -> datetime:
    days, minute = divmod(minute, 24 * 60)
    wall = datetime.combine(day + timedelta(days=days), time(minute // 60, minute % 60), tzinfo=zone)
    return wall.astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {moment} has no time zone")
    return moment.astimezone(UTC)


def parse_interval(text: str) -> Interval:
    """'08:00-18:00' -> (480, 1080); '24:00' is allowed as an end."""
    try:
        start_text, end_text = (part.strip() for part in text.split("-"))
        start, end = _minutes(start_text), _minutes(end_text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time range like '08:00-18:00'") from None
    if not start < end:
        raise ValueError(f"{text!r}: the end must be after the start (split ranges that cross midnight)")
    return start, end


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    value = int(hours) * 60 + int(minutes)
    if not (0 <= int(minutes) < 60 and 0 <= value <= 24 * 60):
        raise ValueError(text)
    return value


def parse_days(key: str) -> list[int]:
    """'mon-fri' -> [0, 1, 2, 3, 4]; 'sat' -> [5]."""
    parts = [part.strip().lower() for part in key.split("-")]
    if not all(part in DAYS for part in parts) or len(parts) > 2:
        raise ValueError(f"{key!r} is not a day or day range (mon, tue, ..., sun, e.g. 'mon-fri')")
    first, last = DAYS.index(parts[0]), DAYS.index(parts[-1])
    if last < first:
        raise ValueError(f"{key!r}: a day range must run forward within the week")
    return list(range(first, last + 1))


def weekly_hours(hours: dict[str, str | list[str]]) -> tuple[tuple[Interval, ...], ...]:
    """Day keys ('mon-fri', 'sat') -> time ranges, into sorted non-overlapping intervals per day."""
    week: list[list[Interval]] = [[] for _ in DAYS]
    for key, ranges in hours.items():
        for day in parse_days(key):
            for text in [ranges] if isinstance(ranges, str) else ranges:
                week[day].append(parse_interval(text))
    for day, intervals in enumerate(week):
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            if start < end:
                raise ValueError(f"{DAYS[day]}: time ranges overlap")
    return tuple(tuple(intervals) for intervals in week)
