from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urgency.calendars import BusinessCalendar, parse_days, parse_interval, weekly_hours

BERLIN = BusinessCalendar(
    "berlin",
    "Europe/Berlin",
    weekly=weekly_hours({"mon-fri": "08:00-18:00"}),
    holidays=frozenset({date(2026, 4, 3), date(2026, 4, 6)}),
    yearly_holidays=frozenset({(12, 25), (12, 26), (1, 1)}),
)
NEW_YORK = BusinessCalendar(
    "new-york",
    "America/New_York",
    weekly=weekly_hours(
        {"mon-thu": ["09:00-12:00", "13:00-17:00"], "fri": "09:00-15:00", "sat": "10:00-12:00"}
    ),
    holidays=frozenset({date(2026, 11, 26)}),
    yearly_holidays=frozenset({(7, 4)}),
)
LATE_SHIFT = BusinessCalendar(
    "late", "Europe/Berlin", weekly=weekly_hours({"mon-sun": ["00:00-03:00", "20:00-24:00"]})
)
ALWAYS = BusinessCalendar("always", always_open=True)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


CASES = [
    # calendar, start (UTC), duration, due (UTC)
    (BERLIN, "2026-03-02 09:00", timedelta(hours=2), "2026-03-02 11:00"),  # Monday 10:00 CET
    (BERLIN, "2026-03-02 05:00", timedelta(hours=1), "2026-03-02 08:00"),  # before opening
    (BERLIN, "2026-03-06 16:30", timedelta(hours=1), "2026-03-09 07:30"),  # Friday 17:30 -> Monday
    (BERLIN, "2026-03-07 12:00", timedelta(minutes=1), "2026-03-09 07:01"),  # Saturday
    (BERLIN, "2026-04-02 15:00", timedelta(hours=2), "2026-04-07 07:00"),  # Good Friday + Easter Monday
    (BERLIN, "2026-12-24 16:00", timedelta(hours=2), "2026-12-28 08:00"),  # yearly 25th/26th, weekend
    (BERLIN, "2026-03-27 16:00", timedelta(hours=2), "2026-03-30 07:00"),  # clocks go forward on the 29th
    (BERLIN, "2026-10-23 15:00", timedelta(hours=2), "2026-10-26 08:00"),  # and back on the 25th
    (BERLIN, "2026-03-02 09:00", timedelta(0), "2026-03-02 09:00"),
    (NEW_YORK, "2026-03-02 16:30", timedelta(hours=1), "2026-03-02 18:30"),  # lunch break 12-13 EST
    (NEW_YORK, "2026-03-06 19:00", timedelta(hours=2), "2026-03-07 16:00"),  # Friday -> Saturday 11:00 EST
    (NEW_YORK, "2026-03-07 16:00", timedelta(hours=2), "2026-03-09 14:00"),  # -> Monday 10:00 EDT
    (
        NEW_YORK,
        "2026-11-25 22:00",
        timedelta(hours=1),
        "2026-11-27 15:00",
    ),  # Wednesday 17:00 EST, Thanksgiving
    (LATE_SHIFT, "2026-03-28 22:00", timedelta(hours=6), "2026-03-29 21:00"),  # 25h of shift spans DST
    (ALWAYS, "2026-03-28 22:00", timedelta(hours=6), "2026-03-29 04:00"),
]


@pytest.mark.parametrize(("calendar", "start", "duration", "due"), CASES)
def test_add_business_time(calendar: BusinessCalendar, start: str, duration: timedelta, due: str) -> None:
    assert calendar.add(utc(start), duration) == utc(due)
    assert calendar.between(utc(start), utc(due)) == duration


def test_between_and_is_open() -> None:
    monday = utc("2026-03-02 07:00")  # 08:00 CET
    assert BERLIN.between(monday, monday + timedelta(days=7)) == timedelta(hours=50)
    assert BERLIN.between(monday, monday - timedelta(hours=1)) == timedelta(0)
    assert BERLIN.is_open(monday) and not BERLIN.is_open(monday - timedelta(seconds=1))
    assert not BERLIN.is_open(utc("2026-12-25 10:00")) and ALWAYS.is_open(utc("2026-12-25 10:00"))
    with pytest.raises(ValueError, match="no time zone"):
        BERLIN.add(datetime(2026, 3, 2), timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "error"),
    [("8-18", "not a time range"), ("18:00-08:00", "after the start"), ("08:00-25:00", "not a time range")],
)
def test_bad_intervals(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_interval(text)


def test_day_keys_and_overlaps() -> None:
    assert parse_days("mon-fri") == [0, 1, 2, 3, 4] and parse_days("Sun") == [6]
    for key in ("weekdays", "fri-mon", "mon-wed-fri"):
        with pytest.raises(ValueError):
            parse_days(key)
    with pytest.raises(ValueError, match="overlap"):
        weekly_hours({"mon": ["08:00-12:00", "11:00-13:00"]})
    assert weekly_hours({"mon": "00:00-24:00"})[0] == ((0, 1440),)


def _open_minute(calendar: BusinessCalendar, minute: datetime) -> bool:
    """Brute force, independent of the interval arithmetic: the local wall clock of this minute."""
    local = minute.astimezone(ZoneInfo(calendar.timezone))
    if calendar.is_holiday(local.date()):
        return False
    of_day = local.hour * 60 + local.minute
    return any(start <= of_day < end for start, end in calendar.weekly[local.weekday()])


# Minute-aligned starts over three years: weekends, holidays and every DST change in both zones.
starts = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)).map(
    lambda moment: moment.replace(second=0, microsecond=0)
)


@settings(max_examples=80, deadline=None)
@given(calendar=st.sampled_from([BERLIN, NEW_YORK, LATE_SHIFT]), start=starts, minutes=st.integers(1, 2400))
def test_deadlines_count_exactly_the_open_minutes(
    calendar: BusinessCalendar, start: datetime, minutes: int
) -> None:
    due = calendar.add(start, timedelta(minutes=minutes))
    assert due > start
    # Every minute from start to due is counted when the calendar is open then: exactly `minutes`.
    opened, moment = 0, start
    while moment < due:
        opened += _open_minute(calendar, moment)
        moment += timedelta(minutes=1)
    assert opened == minutes
    # The clock stops inside open time, so the deadline is the earliest moment that satisfies it.
    assert _open_minute(calendar, due - timedelta(minutes=1))
