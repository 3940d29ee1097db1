"""Property values the way HubSpot stores and compares them.

HubSpot keeps every property value as a string. Datetimes come in as
ISO-8601 or epoch milliseconds and go out as ISO-8601 UTC with milliseconds
("2024-01-01T12:00:00.000Z"); numbers and booleans are sent back as strings.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def iso_millis(moment: datetime) -> str:
    """HubSpot's timestamp format: UTC, millisecond precision, `Z` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_datetime(value: str) -> datetime | None:
    """A datetime from epoch milliseconds or ISO-8601 (date only allowed); None if neither."""
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def epoch_ms(value: str) -> float | None:
    moment = parse_datetime(value)
    return None if moment is None else moment.timestamp() * 1000


def as_text(value: object) -> str | None:
    """A JSON property value as HubSpot stores it; None or "" clears the property."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def is_email(value: str) -> bool:
    return _EMAIL.match(value) is not None


def comparable(value: str, kind: str) -> float | str:
    """A value in the form search compares it: epoch ms, a float, or text.

    String comparisons are case-insensitive, except for enumerations, which
    HubSpot matches case-sensitively.
    """
    if kind in ("datetime", "date"):
        ms = epoch_ms(value)
        return ms if ms is not None else value
    if kind == "number" and is_number(value):
        return float(value)
    return value if kind == "enumeration" else value.lower()
