"""Per-endpoint rate limits in sandbox time, as X counts them.

X limits each endpoint separately, per app for app-only Bearer requests and
per user (per access token) for user-context requests; a few write endpoints
also cap all user-context requests of an app over 24 hours. Windows start at
the first request and last 15 minutes (or 24 hours). Every answer carries
`x-rate-limit-limit`, `x-rate-limit-remaining` and `x-rate-limit-reset`
(epoch seconds) for the tightest window that applies.
Reference: docs.x.com/x-api/fundamentals/rate-limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crmhub.sandbox._hosted import Host
from crmhub.sandbox.x.errors import TooManyRequests

FIFTEEN_MINUTES = 15 * 60
DAY = 24 * 60 * 60

Window = tuple[int, int]
"""(requests allowed, window length in seconds)."""


@dataclass(frozen=True)
class Limits:
    """The published limits of one endpoint."""

    app: tuple[Window, ...] = ()  # app-only Bearer requests, per app
    user: tuple[Window, ...] = ()  # user-context requests, per user
    app_total: tuple[Window, ...] = ()  # all user-context requests of one app


@dataclass(frozen=True)
class Principal:
    """Who is calling: an app (Bearer) or a user through an app (OAuth 1.0a)."""

    kind: str  # "app" or "user"
    consumer_key: str
    user_id: str = ""


@dataclass(frozen=True)
class RateStatus:
    """What the x-rate-limit-* headers say."""

    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {"x-rate-limit-limit": str(self.limit), "x-rate-limit-remaining": str(self.remaining),
                "x-rate-limit-reset": str(self.reset)}


@dataclass(frozen=True)
class _Bucket:
    """One window of one scope: its limit and the stored {"start", "count"}."""

    limit: int
    length: int
    window: dict[str, Any]  # lives in state["rate_windows"]; counted in place

    @property
    def remaining(self) -> int:
        return max(0, self.limit - int(self.window["count"]))

    def status(self) -> RateStatus:
        return RateStatus(self.limit, self.remaining, int(self.window["start"] + self.length))


class RateLimiter:
    """Counts requests into windows kept in `state["rate_windows"]`."""

    def __init__(self, host: Host) -> None:
        self._host = host

    def admit(self, principal: Principal, endpoint: str, limits: Limits) -> RateStatus | None:
        """Count one request; raise RateLimitHit when one of its windows is used up."""
        buckets = self._buckets(principal, endpoint, limits, store=True)
        full = [b for b in buckets if b.remaining == 0]
        if full:
            raise RateLimitHit(max(full, key=lambda b: b.status().reset).status())
        for bucket in buckets:
            bucket.window["count"] += 1
        return _tightest(buckets)

    def peek(self, principal: Principal, endpoint: str, limits: Limits) -> RateStatus | None:
        """The current status without counting (for answers that never reached the handler)."""
        return _tightest(self._buckets(principal, endpoint, limits, store=False))

    def set_override(self, endpoint: str, app: int | None, user: int | None) -> None:
        self._host.state["rate_limit_overrides"][endpoint] = {"app": app, "user": user}

    def _limits(self, endpoint: str, limits: Limits) -> Limits:
        override = self._host.state["rate_limit_overrides"].get(endpoint)
        if not override:
            return limits
        return Limits(app=_replace_15min(limits.app, override["app"]),
                      user=_replace_15min(limits.user, override["user"]), app_total=limits.app_total)

    def _buckets(self, principal: Principal, endpoint: str, limits: Limits, *, store: bool) -> list[_Bucket]:
        limits = self._limits(endpoint, limits)
        if principal.kind == "app":
            scoped = [(f"app:{principal.consumer_key}", w) for w in limits.app]
        else:
            scoped = [(f"user:{principal.consumer_key}:{principal.user_id}", w) for w in limits.user]
            scoped += [(f"app-total:{principal.consumer_key}", w) for w in limits.app_total]
        return [_Bucket(allowed, length, self._window(f"{scope}|{endpoint}|{length}", length, store))
                for scope, (allowed, length) in scoped]

    def _window(self, key: str, length: int, store: bool) -> dict[str, Any]:
        """The live window under `key`; a new one starts when the last has passed."""
        now = self._host.clock.time()
        windows = self._host.state["rate_windows"]
        window: dict[str, Any] | None = windows.get(key)
        if window is None or now >= window["start"] + length:
            window = {"start": now, "count": 0}
            if store:
                windows[key] = window
        return window


class RateLimitHit(TooManyRequests):
    """A 429 that carries the headers of the window that is used up."""

    def __init__(self, status: RateStatus) -> None:
        super().__init__("rate limit exceeded")
        self.rate = status


def _replace_15min(windows: tuple[Window, ...], allowed: int | None) -> tuple[Window, ...]:
    if allowed is None:
        return windows
    return ((allowed, FIFTEEN_MINUTES), *(w for w in windows if w[1] != FIFTEEN_MINUTES))


def _tightest(buckets: list[_Bucket]) -> RateStatus | None:
    """The window closest to running out (the later reset on a tie)."""
    if not buckets:
        return None
    return min(buckets, key=lambda b: (b.remaining, -b.status().reset)).status()
