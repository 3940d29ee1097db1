"""API budgets: pace each system's calls ahead of time, and say which writes may still go.

One `Budget` per external system, built from settings by `crmhub.app` and
consulted by `Connector` (the one call path), so no call site paces itself:

* **Pacing.** One limiter per configured window (Salesforce and Zendesk:
  calls per minute; HubSpot: calls per 10 seconds). Each is a token bucket
  whose tokens come back one window after they were spent (a sliding log),
  so no stretch of that length ever holds more calls than configured: the
  way HubSpot counts its rolling 10 seconds, and stricter than a fixed
  minute. `Connector.call` takes a token before every attempt, retries
  included; a request an operation makes beyond its first (a login, a second
  page inside the SDK) takes its own at the transport (`before_request`).
  Waiting goes through the retrier's injectable clock and sleep, so tests
  run in sandbox time and a stopping daemon cuts the wait.
* **Headroom from the vendor.** Every response's rate-limit headers
  (`read_headroom`, fed by `Connector.observe_http`) lower the pace when the
  vendor reports a smaller window than configured, and cap what is left of
  the vendor's current window, which the customer's other integrations
  spend too. A cap that would mean waiting longer than `max_wait` (X's
  15-minute and 24-hour windows) is not waited out here: the call fails as
  `RateLimited` without being made, and the retry layer or the next run
  deals with it, as with a 429.
* **One pace for several daemons.** On a PostgreSQL store shared by several
  daemons, each call also takes a token from a pace they share
  (`SharedPace`, kept in the store by `crmhub.store.budgets`): a daemon
  reserves a chunk of calls at a time (one short transaction per chunk, not
  per call), spends it within its slot, and waits for the next slot when
  the daemons together used the window up. The chunk grows while a daemon
  uses it up and shrinks to what it used, so an idle daemon holds back
  little. On SQLite (one daemon) the pace stays in memory.
* **The daily allowance.** Salesforce's rolling 24 hours (`Sforce-Limit-Info`
  on every answer, plus `GET /limits` at start and every few minutes) and
  HubSpot's day (`X-HubSpot-RateLimit-Daily(-Remaining)`, else crmhub's own
  count against the configured `daily`). `allowed_priority` keeps the
  configured reserve for the other integrations: above it every write goes;
  at or below it only replies and new cases; at or below half of it only
  agent replies.

Header names, as documented by the vendors:
Salesforce `Sforce-Limit-Info: api-usage=n/m` (REST API developer guide,
"Limit Info Header"); HubSpot `X-HubSpot-RateLimit-Max`, `-Remaining`,
`-Interval-Milliseconds`, `-Daily`, `-Daily-Remaining` (developers.hubspot.com
/docs/api/usage-details); Zendesk `X-Rate-Limit`, `X-Rate-Limit-Remaining`,
and on list endpoints `ratelimit-limit`, `ratelimit-remaining`,
`ratelimit-reset` (developer.zendesk.com "Best practices for avoiding rate
limiting"); X `x-rate-limit-limit`, `x-rate-limit-remaining`,
`x-rate-limit-reset` in epoch seconds (docs.x.com rate limits); Meta
`X-Business-Use-Case-Usage` and `X-App-Usage`, percentages of the hour's
allowance (developers.facebook.com/docs/graph-api/overview/rate-limiting).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog

from crmhub.errors import RateLimited
from crmhub.model import WritePriority

log = structlog.get_logger("crmhub.budget")

DEFAULT_CAP_SECONDS = 60.0  # how long a "remaining" figure holds when the vendor gives no reset
PACING_MARGIN = 0.25  # seconds added to each window: a request reaches the vendor a little after its token
SALESFORCE_LIMITS_EVERY = 300.0  # seconds between reads of GET /limits
SHARED_MOST = 1 / 24  # the largest chunk reserved from a shared pace, as a share of it (half of one of its 12 slots)
SHARED_RETRY = 0.05  # seconds, at least, before asking the shared pace again


@dataclass(frozen=True)
class Window:
    """At most `calls` calls in any `seconds`."""

    calls: int
    seconds: float


@dataclass(frozen=True)
class Headroom:
    """What one response's rate-limit headers say (None: the header was absent)."""

    remaining: int | None = None  # calls left in the vendor's short window
    limit: int | None = None  # that window's size, in calls
    window: float | None = None  # its length in seconds, when the vendor says
    resets_in: float | None = None  # seconds until it starts afresh, when the vendor says
    scope: str = ""  # "": the whole account; X: the endpoint's path (each has its own windows)
    daily_remaining: int | None = None
    daily_limit: int | None = None


@dataclass(frozen=True)
class Allowance:
    """Where a system's daily allowance stands, and what it lets through."""

    max_priority: WritePriority
    daily_remaining: int | None = None
    daily_limit: int | None = None
    reserve: int | None = None  # calls kept for the customer's other integrations

    @property
    def low(self) -> bool:
        """At most twice the reserve left (a fifth of the day's allowance without one): delivery workers then
        halve their calls-per-interaction target, so batches fill up more and the shared allowance lasts."""
        if self.daily_remaining is None or not self.daily_limit:
            return False
        return self.daily_remaining <= (2 * self.reserve if self.reserve else self.daily_limit / 5)


def read_headroom(system: str, headers: Mapping[str, str], *, path: str = "",
                  now: float | None = None) -> Headroom | None:
    """The rate-limit figures of one response of `system`; None when it sent none.

    Args:
        path: the request's path (X counts each endpoint separately).
        now: epoch seconds, to turn X's absolute reset time into a delay.
    """
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    if system == "salesforce":
        return _salesforce(lower)
    if system == "hubspot":
        interval = _int(lower.get("x-hubspot-ratelimit-interval-milliseconds"))
        found = Headroom(remaining=_int(lower.get("x-hubspot-ratelimit-remaining")),
                         limit=_int(lower.get("x-hubspot-ratelimit-max")),
                         window=interval / 1000 if interval else None,
                         daily_remaining=_int(lower.get("x-hubspot-ratelimit-daily-remaining")),
                         daily_limit=_int(lower.get("x-hubspot-ratelimit-daily")))
    elif system == "zendesk":
        remaining = _int(lower.get("x-rate-limit-remaining"))
        found = Headroom(remaining=remaining if remaining is not None else _int(lower.get("ratelimit-remaining")),
                         limit=_int(lower.get("x-rate-limit")) or _int(lower.get("ratelimit-limit")),
                         window=60.0, resets_in=_float(lower.get("ratelimit-reset")))
    elif system == "meta":
        return _meta(lower)
    elif system == "x":
        reset = _float(lower.get("x-rate-limit-reset"))
        clock = time.time() if now is None else now
        found = Headroom(remaining=_int(lower.get("x-rate-limit-remaining")),
                         limit=_int(lower.get("x-rate-limit-limit")),
                         resets_in=max(0.0, reset - clock) if reset is not None else None, scope=path)
    else:
        return None
    return None if found.remaining is None and found.daily_remaining is None else found


def _salesforce(lower: Mapping[str, str]) -> Headroom | None:
    """`Sforce-Limit-Info: api-usage=18/5000; per-app-api-usage=17/250(appName=x)` -> 4982 of 5000."""
    info = lower.get("sforce-limit-info", "")
    for part in info.replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name == "api-usage" and "/" in value:
            used, _, limit = value.partition("/")
            used_calls, limit_calls = _int(used), _int(limit)
            if used_calls is None or limit_calls is None:
                return None
            return Headroom(daily_remaining=max(0, limit_calls - used_calls), daily_limit=limit_calls)
    return None


def _meta(lower: Mapping[str, str]) -> Headroom | None:
    """Meta's usage headers, in percent of the hour's allowance: the busiest figure, as 'calls' of 100.

    `X-Business-Use-Case-Usage: {"<page id>": [{"call_count": 28, "total_time": 9, "total_cputime": 4,
    "estimated_time_to_regain_access": 0}]}` and `X-App-Usage: {"call_count": 3, ...}`; at 100 Meta
    throttles until `estimated_time_to_regain_access` (minutes) has passed.
    """
    figures: list[Mapping[str, object]] = []
    try:
        business = json.loads(lower.get("x-business-use-case-usage") or "{}")
        figures += [item for items in business.values() for item in items if isinstance(item, dict)]
        app = json.loads(lower.get("x-app-usage") or "{}")
        if isinstance(app, dict):
            figures.append(app)
    except (ValueError, AttributeError, TypeError):
        return None
    used = [_int(str(f.get(k))) for f in figures for k in ("call_count", "total_time", "total_cputime") if k in f]
    busiest = max((u for u in used if u is not None), default=None)
    if busiest is None:
        return None
    regain = max((_int(str(f.get("estimated_time_to_regain_access"))) or 0 for f in figures), default=0)
    return Headroom(remaining=max(0, 100 - busiest), limit=100, window=3600.0,
                    resets_in=regain * 60.0 if regain else None)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds of a `Retry-After` header (a 429's own word on when the window reopens)."""
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            seconds = _float(str(value))
            return seconds if seconds is not None and seconds > 0 else None
    return None


def _int(value: str | None) -> int | None:
    try:
        return int(value.strip()) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        result = float(value) if value is not None else None
    except ValueError:
        return None
    return result if result is not None and math.isfinite(result) else None


class _Pacer:
    """One window: the times of the last `calls` calls (reserved ones may lie in the future)."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.vendor_calls: int | None = None  # a smaller window size the vendor reported
        self.sent: deque[float] = deque(maxlen=window.calls)

    @property
    def calls(self) -> int:
        return min(self.window.calls, self.vendor_calls or self.window.calls)

    def earliest(self) -> float:
        """The first moment one more call fits (the log is sorted: reservations are FIFO)."""
        if len(self.sent) < self.calls:
            return -math.inf
        return self.sent[-self.calls] + self.window.seconds + PACING_MARGIN


@dataclass
class _Cap:
    """What the vendor said is left of its current window, counted down as crmhub reserves calls."""

    remaining: int
    until: float


class SharedPace(Protocol):
    """A pace several daemons share (`crmhub.store.budgets.SharedPace`)."""

    def reserve(self, system: str, seconds: float, limit: int, want: int, now: float) -> tuple[int, float, float]:
        """Up to `want` calls of `limit` per `seconds` at epoch `now`: (calls granted, epoch start and end of
        the grant's slot)."""
        ...

    def charge(self, system: str, seconds: float, now: float) -> None:
        """Count one more call at epoch `now`, whatever the pace (a call made later than granted)."""
        ...


@dataclass
class _Grant:
    """Calls reserved from the shared pace, to be made before `until` (epoch seconds)."""

    size: int
    left: int
    start: float
    until: float

    def next_chunk(self, most: int) -> int:
        """The next reservation's size: twice this one when it was used up, else what was used of it."""
        return max(1, min(most, 2 * self.size if self.left <= 0 else self.size - self.left))


class Budget:
    """The pacing and daily allowance of one external system (thread-safe).

    Args:
        system: the connector's name (salesforce, zendesk, hubspot, x, twilio).
        windows: the configured paces.
        daily_reserve: share of the daily allowance kept for other integrations (0: none).
        daily_limit: the configured daily allowance (HubSpot's `daily`), until a header says.
        clock: monotonic seconds (the retrier's).
        sleep: how to wait (the retrier's; the daemon's raises `Interrupted` when stopping).
        wall: epoch seconds, for the vendors' absolute reset times and the day's count.
        max_wait: the longest a vendor's used-up window is waited out before a call.
        limits_every: seconds between reads of the vendor's limits endpoint (None: it has none).
        shared: the pace several daemons share (None: this process alone calls the system).
    """

    def __init__(self, system: str, *, windows: Sequence[Window] = (), daily_reserve: float = 0.0,
                 daily_limit: int | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, wall: Callable[[], float] = time.time,
                 max_wait: float = 300.0, limits_every: float | None = None,
                 shared: SharedPace | None = None) -> None:
        self.system = system
        self.daily_reserve = daily_reserve
        self.clock = clock
        self.sleep = sleep
        self.wall = wall
        self.max_wait = max_wait
        self.limits_every = limits_every
        self._pacers = [_Pacer(w) for w in windows]
        self._caps: dict[str, _Cap] = {}
        self._last = -math.inf
        self._lock = threading.Lock()
        self._local = threading.local()
        self._configured_daily = daily_limit
        self._daily_limit: int | None = None  # from the vendor
        self._daily_remaining: int | None = None  # from the vendor
        self._own: tuple[str, int] = ("", 0)  # (UTC day, responses seen that day)
        self._limits_read_at: float | None = None
        self.shared = shared
        self._grants: dict[float, _Grant] = {}  # window seconds -> calls reserved from the shared pace
        self._shared_lock = threading.Lock()

    @property
    def windows(self) -> tuple[Window, ...]:
        """The paces in force: the configured ones, lowered where the vendor reported less."""
        with self._lock:
            return tuple(Window(p.calls, p.window.seconds) for p in self._pacers)

    # ---- pacing ----------------------------------------------------------------
    def acquire(self) -> None:
        """Take one call's token before an attempt, waiting for it if needed (`Connector.call`)."""
        self._wait(self._reserve(scope=""))
        self._take_shared()
        self._local.prepaid = True

    def before_request(self, path: str) -> None:
        """Called for every HTTP request: the attempt's first uses the token `acquire` took."""
        if getattr(self._local, "prepaid", False):
            self._local.prepaid = False
            self._wait(self._reserve(scope=path, windows=False))
        else:
            self._wait(self._reserve(scope=path))
            self._take_shared()

    def end_attempt(self) -> None:
        """An attempt is over: a token it did not use is not carried into the next one."""
        self._local.prepaid = False
        self._local.slot = None
        self._local.late_after = None

    def after_request(self) -> None:
        """A request of this thread is over (answered or not): its call counts from now, not from its booking.

        The vendor counts a call when it arrives, somewhere between the two;
        counting the later moment keeps every window within the pace however
        late a busy machine gets the request out.
        """
        self._charge_if_late()
        slot = getattr(self._local, "slot", None)
        self._local.slot = None
        if slot is None:
            return
        with self._lock:
            now = self.clock()
            for pacer in self._pacers:
                if now <= slot or slot not in pacer.sent:
                    continue
                stamps = list(pacer.sent)
                stamps[stamps.index(slot)] = now
                pacer.sent = deque(sorted(stamps), maxlen=pacer.sent.maxlen)

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            if seconds >= 1:
                log.debug("pacing", system=self.system, wait_seconds=round(seconds, 2))
            self.sleep(seconds)

    def _take_shared(self) -> None:
        """One call from each window's shared pace (several daemons), waiting until one fits.

        The call is to reach the vendor within the slot after its grant's (the shared pace's
        margin); `after_request` charges it again where it ended when it ended later.
        """
        if self.shared is None:
            return
        with self._lock:
            windows = [(p.window.seconds, p.calls) for p in self._pacers]
        late_after: list[tuple[float, float]] = []
        for seconds, calls in windows:
            while True:
                taken = self._take_from(seconds, calls)
                if isinstance(taken, _Grant):
                    late_after.append((seconds, 2 * taken.until - taken.start))  # the end of the next slot
                    break
                self._wait(max(taken, SHARED_RETRY))
        self._local.late_after = late_after

    def _charge_if_late(self) -> None:
        """A call that ended past its grant's margin counts again in the slot it ended in, so the
        reservations after it see it (a busy host can hold a request back for seconds)."""
        late_after = getattr(self._local, "late_after", None)
        self._local.late_after = None
        if not late_after or self.shared is None:
            return
        now = self.wall()
        for seconds, deadline in late_after:
            if now >= deadline:
                log.debug("a call ended past its shared slot; counted again", system=self.system)
                self.shared.charge(self.system, seconds, now)

    def _take_from(self, seconds: float, calls: int) -> _Grant | float:
        """Spend one call of the grant for window `seconds`, reserving a new chunk when it is spent or
        lapsed: the grant, or seconds to wait before asking again (the window is used up)."""
        assert self.shared is not None
        with self._shared_lock:
            now = self.wall()
            grant = self._grants.get(seconds)
            if grant is not None and grant.left > 0 and now < grant.until:
                grant.left -= 1
                return grant
            most = max(1, int(calls * SHARED_MOST))
            want = grant.next_chunk(most) if grant is not None else 1
            granted, start, until = self.shared.reserve(self.system, seconds, calls, want, now)
            if not granted:
                if grant is not None:
                    grant.left = 0
                log.debug("shared pace used up", system=self.system, wait_seconds=round(until - now, 2))
                return until - now
            self._grants[seconds] = fresh = _Grant(size=granted, left=granted - 1, start=start, until=until)
            return fresh

    def _reserve(self, *, scope: str, windows: bool = True) -> float:
        """Book the next free moment for one call; returns how long to wait for it."""
        with self._lock:
            now = self.clock()
            at = max(now, self._last) if windows and self._pacers else now
            if windows:
                for pacer in self._pacers:
                    at = max(at, pacer.earliest())
            # The account-wide cap is counted once per call: by `acquire`, or here for a call it did not cover.
            keys = dict.fromkeys(("", scope)) if windows else ((scope,) if scope else ())
            for key in keys:
                cap = self._caps.get(key)
                if cap is None:
                    continue
                if at >= cap.until:
                    del self._caps[key]
                elif cap.remaining <= 0:
                    if cap.until - now > self.max_wait:
                        where = f"endpoint {key}" if key else "the account"
                        raise RateLimited(
                            f"{self.system}: the vendor's rate-limit window for {where} is used up and resets in "
                            f"{cap.until - now:.0f} s; not calling before then", retry_after=cap.until - now,
                            system=self.system, status=429)
                    at = cap.until
                    del self._caps[key]
                else:
                    cap.remaining -= 1
            if windows:
                for pacer in self._pacers:
                    pacer.sent.append(at)
                self._last = at
                self._local.slot = at  # stamped again when the request is over (`after_request`)
            return at - now

    # ---- what the vendor says ----------------------------------------------------
    def observe(self, path: str, status: int, headers: Mapping[str, str]) -> None:
        """Read one response's rate-limit headers (every response goes through here)."""
        headroom = read_headroom(self.system, headers, path=path, now=self.wall())
        with self._lock:
            day = datetime.fromtimestamp(self.wall(), UTC).date().isoformat()
            self._own = (day, self._own[1] + 1 if self._own[0] == day else 1)
            if headroom is None:
                return
            now = self.clock()
            if headroom.daily_limit is not None:
                self._daily_limit = headroom.daily_limit
            if headroom.daily_remaining is not None:
                self._daily_remaining = headroom.daily_remaining
            if headroom.remaining is not None:
                lasts = headroom.resets_in if headroom.resets_in is not None else _retry_after(headers)
                lasts = lasts if lasts is not None else headroom.window
                self._caps[headroom.scope] = _Cap(headroom.remaining, now + (lasts or DEFAULT_CAP_SECONDS))
            if headroom.limit is not None and headroom.window is not None:
                for pacer in self._pacers:
                    if abs(pacer.window.seconds - headroom.window) < 0.5:
                        pacer.vendor_calls = headroom.limit if headroom.limit < pacer.window.calls else None

    def limits_due(self) -> bool:
        """Whether the vendor's limits endpoint should be read now (never read, or not for a while)."""
        if self.limits_every is None:
            return False
        with self._lock:
            return self._limits_read_at is None or self.clock() - self._limits_read_at >= self.limits_every

    def limits_read(self, limit: int | None = None, remaining: int | None = None) -> None:
        """The limits endpoint was asked (figures None: the read failed; it is not retried at once)."""
        with self._lock:
            self._limits_read_at = self.clock()
            if limit is not None and remaining is not None:
                self._daily_limit, self._daily_remaining = limit, remaining

    # ---- the daily allowance -----------------------------------------------------
    @property
    def daily_limit(self) -> int | None:
        with self._lock:
            return self._daily_limit if self._daily_limit is not None else self._configured_daily

    @property
    def daily_remaining(self) -> int | None:
        """Calls left today: the vendor's figure, else the configured allowance minus crmhub's own calls."""
        with self._lock:
            if self._daily_remaining is not None:
                return self._daily_remaining
            if self._configured_daily is None:
                return None
            today = datetime.fromtimestamp(self.wall(), UTC).date().isoformat()
            return max(0, self._configured_daily - (self._own[1] if self._own[0] == today else 0))

    def allowed_priority(self) -> WritePriority:
        """The lowest-ranked write that may go now (no call is made; `Connector.refresh_allowance` reads)."""
        return self.allowance().max_priority

    def allowance(self) -> Allowance:
        """Where the daily allowance stands and what it lets through."""
        remaining, limit = self.daily_remaining, self.daily_limit
        if remaining is None or limit is None or self.daily_reserve <= 0:
            return Allowance(WritePriority.BACKFILL, remaining, limit)
        reserve = self.daily_reserve * limit
        if remaining <= reserve / 2:
            allowed = WritePriority.REPLY
        elif remaining <= reserve:
            allowed = WritePriority.NEW_CASE
        else:
            allowed = WritePriority.BACKFILL
        return Allowance(allowed, remaining, limit, math.ceil(reserve))
