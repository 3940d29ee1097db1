"""The HTML report's charts draw what the figures say: a channel without a first response has no point at 0 h."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from crmhub.report.figures import Report
from crmhub.report.html import _series, to_html
from crmhub.report.render import TITLES

DAY = datetime(2026, 12, 6, tzinfo=UTC)


def _report(rows: dict[tuple[str, ...], dict[str, float | int | None]], by: tuple[str, ...]) -> Report:
    """A report with every figure, None unless given."""
    blank: dict[str, float | int | None] = dict.fromkeys(TITLES)
    return Report(since=DAY, until=DAY, by=by, business_hours=False,
                  rows={key: {**blank, **figures} for key, figures in rows.items()},
                  totals={**blank, "inbound": 2, "outbound": 1, "first_response_s": 3600})


def test_a_channel_without_a_first_response_has_no_point_on_the_response_chart_not_one_at_zero() -> None:
    by_day = _report({("sms", "2026-12-06"): {"inbound": 1, "outbound": 1, "first_response_s": 5400},
                      ("x_mention", "2026-12-06"): {"inbound": 1, "outbound": 0, "first_response_s": None}},
                     ("channel", "day"))
    days, hours = _series(by_day, "first_response_s", scale=3600, missing=math.nan)
    assert days == ["2026-12-06"] and hours["sms"] == [1.5]
    assert math.isnan(hours["x_mention"][0])  # matplotlib leaves NaN out; 0 would claim an instant reply
    _, outbound = _series(by_day, "outbound")
    assert outbound == {"sms": [1.0], "x_mention": [0.0]}  # a count is 0 where there is none
    overall = _report({("sms",): {"inbound": 2, "outbound": 1, "first_response_s": 5400}}, ("channel",))
    assert "First response per channel and day" in to_html(overall, by_day)
