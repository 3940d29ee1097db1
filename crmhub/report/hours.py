"""Time inside business hours between two moments (routing.yaml's `business_hours` and `timezone`).

A response at Monday 09:00 to a message of Friday 17:00 took one business
hour with 08:00-18:00 on weekdays, not 64 wall-clock hours. Each working day
is cut in its own local time, so a daylight-saving change costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from crmhub.config.mappings import RoutingRules

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class BusinessHours:
    """Working days (mon..sun), opening and closing times, in a time zone."""

    days: frozenset[str]
    start: time
    end: time
    tz: ZoneInfo

    def seconds_between(self, begin: datetime, end: datetime) -> float:
        """Seconds of working time in [begin, end) (0 when end is not after begin)."""
        if end <= begin:
            return 0.0
        first, last = begin.astimezone(self.tz).date(), end.astimezone(self.tz).date()
        total = 0.0
        weeks = max(0, (last - first).days // 7 - 1)  # whole weeks in between count the same each
        if weeks:
            total += weeks * sum(self._day_seconds(first + timedelta(days=n), begin, end, whole=True)
                                 for n in range(1, 8))
        day = first
        while day <= last:
            if first < day < first + timedelta(days=1 + 7 * weeks) and weeks:
                day = first + timedelta(days=1 + 7 * weeks)
                continue
            total += self._day_seconds(day, begin, end)
            day += timedelta(days=1)
        return total

    def _day_seconds(self, day: date, begin: datetime, end: datetime, *, whole: bool = False) -> float:
        if DAYS[day.weekday()] not in self.days:
            return 0.0
        opens = datetime.combine(day, self.start, self.tz)
        closes = datetime.combine(day, self.end, self.tz)
        if whole:
            return (closes - opens).total_seconds()
        return max(0.0, (min(closes, end) - max(opens, begin)).total_seconds())


def business_hours_of(routing: RoutingRules) -> BusinessHours | None:
    """routing.yaml's business hours, or None when it sets none (then only wall-clock figures are given)."""
    if "business_hours" not in routing.model_fields_set:
        return None
    hours = routing.business_hours
    return BusinessHours(frozenset(hours.days), hours.start, hours.end, routing.tzinfo)
