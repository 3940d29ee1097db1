"""Durations and percentages: what admins may write and what it means."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crmhub.config import format_duration, parse_duration, parse_percent

DURATIONS = [
    ("500ms", timedelta(milliseconds=500)),
    ("30s", timedelta(seconds=30)),
    ("10m", timedelta(minutes=10)),
    ("1h", timedelta(hours=1)),
    ("1d", timedelta(days=1)),
    ("1h30m", timedelta(minutes=90)),
    ("1.5h", timedelta(minutes=90)),
    (" 45s ", timedelta(seconds=45)),
    ("90", timedelta(seconds=90)),
    (90, timedelta(seconds=90)),
    (2.5, timedelta(seconds=2.5)),
    (0, timedelta(0)),
]

BAD_DURATIONS = [
    ("10 minutes", "bad duration '10 minutes'; write e.g. 30s, 10m, 1h"),
    ("10M", "bad duration '10M'; write e.g. 30s, 10m, 1h"),
    ("1w", "bad duration '1w'; write e.g. 30s, 10m, 1h"),
    ("", "bad duration ''; write e.g. 30s, 10m, 1h"),
    (-5, "bad duration -5; write e.g. 30s, 10m, 1h"),
    (True, "bad duration true; write e.g. 30s, 10m, 1h"),
    (None, "bad duration null; write e.g. 30s, 10m, 1h"),
]

PERCENTS = [("20%", 0.2), ("0%", 0.0), ("100%", 1.0), ("12.5 %", 0.125), (0.2, 0.2), (1, 1.0), (0, 0.0), ("0.3", 0.3)]

BAD_PERCENTS = [
    ("120%", "bad percentage '120%'; write e.g. 20% or 0.2 (from 0% to 100%)"),
    (20, "bad percentage 20; write e.g. 20% or 0.2 (from 0% to 100%)"),
    ("twenty", "bad percentage 'twenty'; write e.g. 20% or 0.2 (from 0% to 100%)"),
    (-0.1, "bad percentage -0.1; write e.g. 20% or 0.2 (from 0% to 100%)"),
]


@pytest.mark.parametrize(("written", "meaning"), DURATIONS)
def test_duration(written: object, meaning: timedelta) -> None:
    assert parse_duration(written) == meaning


@pytest.mark.parametrize(("written", "message"), BAD_DURATIONS)
def test_bad_duration(written: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(written)
    assert str(caught.value) == message


@pytest.mark.parametrize(("written", "meaning"), DURATIONS)
def test_duration_round_trips_through_its_text(written: object, meaning: timedelta) -> None:
    assert parse_duration(format_duration(meaning)) == meaning


def test_duration_text_is_short() -> None:
    assert [format_duration(d) for _, d in DURATIONS[:6]] == ["500ms", "30s", "10m", "1h", "1d", "1h30m"]


@pytest.mark.parametrize(("written", "meaning"), PERCENTS)
def test_percent(written: object, meaning: float) -> None:
    assert parse_percent(written) == pytest.approx(meaning)


@pytest.mark.parametrize(("written", "message"), BAD_PERCENTS)
def test_bad_percent(written: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_percent(written)
    assert str(caught.value) == message
