"""HubSpot's request allowances, counted in sandbox time.

A private app gets a rolling 10-second window (`X-HubSpot-RateLimit-Max`
requests per `-Interval-Milliseconds`), a daily allowance that resets at
midnight, and the search endpoints have their own per-second limit (five per
second). Every answer carries the seven `X-HubSpot-RateLimit-*` headers.
The counters live in the emulator state (`usage`), the limits in `limits`.
"""

from __future__ import annotations

from typing import Any

from crmhub.sandbox._server import SandboxClock
from crmhub.sandbox.hubspot import catalog


class RateLimiter:
    """Admits or refuses one request and reports what is left."""

    def __init__(self, state: dict[str, Any], clock: SandboxClock) -> None:
        self.usage: dict[str, Any] = state["usage"]
        self.limits: dict[str, int] = state["limits"]
        self.clock = clock

    def _roll(self, now: float) -> None:
        """Forget requests that left their windows; a new day restores the daily allowance."""
        self.usage["window"] = [t for t in self.usage["window"] if t > now - catalog.INTERVAL_MS / 1000]
        self.usage["search"] = [t for t in self.usage["search"] if t > now - 1]
        today = self.clock.now().date().isoformat()
        if self.usage["day"] != today:
            self.usage.update(day=today, daily=0)

    def admit(self, *, is_search: bool) -> str | None:
        """Count the request, or return the policy it breaks (DAILY, TEN_SECONDLY_ROLLING, SECONDLY)."""
        now = self.clock.time()
        self._roll(now)
        if self.usage["daily"] >= self.limits["daily_max"]:
            return "DAILY"
        if len(self.usage["window"]) >= self.limits["ten_second_max"]:
            return "TEN_SECONDLY_ROLLING"
        if is_search and len(self.usage["search"]) >= self.limits["search_per_second"]:
            return "SECONDLY"
        self.usage["window"].append(now)
        self.usage["daily"] += 1
        if is_search:
            self.usage["search"].append(now)
        return None

    def headers(self, **overrides: int) -> dict[str, str]:
        """The X-HubSpot-RateLimit-* headers; `overrides` force values (e.g. remaining=0)."""
        now = self.clock.time()
        self._roll(now)
        ten_second_max = self.limits["ten_second_max"]
        secondly = max(1, ten_second_max // 10)
        last_second = sum(1 for t in self.usage["window"] if t > now - 1)
        values = {
            "daily": self.limits["daily_max"],
            "daily_remaining": max(0, self.limits["daily_max"] - self.usage["daily"]),
            "interval_milliseconds": catalog.INTERVAL_MS,
            "max": ten_second_max,
            "remaining": max(0, ten_second_max - len(self.usage["window"])),
            "secondly": secondly,
            "secondly_remaining": max(0, secondly - last_second),
        }
        values.update(overrides)
        return {_header(key): str(value) for key, value in values.items()}


def _header(key: str) -> str:
    """daily_remaining -> X-HubSpot-RateLimit-Daily-Remaining."""
    return "X-HubSpot-RateLimit-" + "-".join(part.capitalize() for part in key.split("_"))
