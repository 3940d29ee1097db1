"""Business time between two moments, by hand and against a minute-by-minute count."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from crmhub.report.hours import BusinessHours

WEEKDAYS = frozenset({"mon", "tue", "wed", "thu", "fri"})
LONDON = BusinessHours(WEEKDAYS, time(8), time(18), ZoneInfo("Europe/London"))


def test_a_weekend_in_between_counts_nothing() -> None:
    friday_5pm = datetime(2026, 12, 4, 17, tzinfo=UTC)  # London is on UTC in winter
    monday_9am = datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert LONDON.seconds_between(friday_5pm, monday_9am) == 2 * 3600


def test_a_night_counts_nothing_and_order_matters() -> None:
    evening, morning = datetime(2026, 12, 1, 19, tzinfo=UTC), datetime(2026, 12, 2, 7, tzinfo=UTC)
    assert LONDON.seconds_between(evening, morning) == 0
    assert LONDON.seconds_between(morning, evening) == 0


def test_hours_are_local_across_a_clock_change() -> None:
    """On 30 March 2026 London is on BST: 08:00 local is 07:00 UTC."""
    assert LONDON.seconds_between(datetime(2026, 3, 30, 6, tzinfo=UTC), datetime(2026, 3, 30, 8, tzinfo=UTC)) == 3600


def _minutes(hours: BusinessHours, begin: datetime, end: datetime) -> float:
    """The slow, obvious count: each whole minute from begin, inside hours or not."""
    count, moment = 0, begin
    while moment < end:
        local = moment.astimezone(hours.tz)
        if ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()] in hours.days and \
                hours.start <= local.time() < hours.end:
            count += 1
        moment += timedelta(minutes=1)
    return count * 60.0


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 60 * 24 * 60), length=st.integers(0, 60 * 24 * 40))
def test_it_equals_a_minute_by_minute_count(start: int, length: int) -> None:
    begin = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(minutes=start)
    end = begin + timedelta(minutes=length)
    assert LONDON.seconds_between(begin, end) == _minutes(LONDON, begin, end)
