"""What every connector shares: the SDK-error boundary, the retry layer and the budget.

A connector supplies `name`, builds its SDK client, and implements
`translate` (its SDK's exceptions -> crmhub's error tree). Every SDK call goes
through `self.call(operation, fn)`, which paces it by the connector's budget
(before every attempt), maps errors once and retries once. Every HTTP request
reports to `before_http` and every response to `observe_http`, so the budget
paces the requests an operation makes beyond its first and reads the
vendor's rate-limit headers. Nothing above `connectors/` ever sees an SDK
exception type.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, TypeVar

import regex
import requests
import structlog

from crmhub.connectors._budget import Budget
from crmhub.connectors._retry import Retrier
from crmhub.errors import (
    AuthError, ConnectorError, Interrupted, NotFound, PermanentError, RateLimited, Rejected, Timeout,
)
from crmhub.model import CLOCK_SKEW, WritePriority

T = TypeVar("T")
log = structlog.get_logger("crmhub.connectors")


class Connector:
    """Base of every connector: SDK error mapping, the single retry layer, and pacing by budget."""

    name: ClassVar[str] = "connector"
    batch_calls: ClassVar[float] = 1.0
    """API calls a delivery batch costs before any is measured: the seed of the worker's `BatchCost`."""
    reply_read_spacing: ClassVar[float] = 0.0
    """Seconds the daemon's replies job leaves at least between two reads of this CRM's replies
    (`crmhub.replying`; 0: every run)."""

    @property
    def settle_lookahead(self) -> float:
        """Seconds ahead a delivery batch takes along rows waiting on this CRM's asynchronous jobs, whose reads it
        shares (`crmhub.sync.deliver`; 0: none, no jobs)."""
        return 0.0

    def __init__(self, retrier: Retrier | None = None, budget: Budget | None = None) -> None:
        self.retrier = retrier or Retrier()
        self.budget = budget
        """Paces calls and reads the vendor's rate-limit headers (None: unpaced); set any time."""
        self.http_observer: Callable[[str, int, Mapping[str, str], float | None], None] | None = None
        """Told (path, status, headers, seconds) of every HTTP response, e.g. `Metrics.http_observer`; set any time."""
        self._requests = threading.local()

    def calls_here(self) -> int:
        """HTTP requests this thread has made through this connector so far (a delivery worker's calls per batch)."""
        return int(getattr(self._requests, "count", 0))

    def before_http(self, path: str) -> None:
        """The `build_session` pre-request hook of every connector: counted, and the budget paces each request."""
        self._requests.count = self.calls_here() + 1
        if self.budget is not None:
            self.budget.before_request(path)

    def after_http(self) -> None:
        """The `build_session` post-request hook: the budget counts the call from when it was over."""
        if self.budget is not None:
            self.budget.after_request()

    def observe_http(self, path: str, status: int, headers: Mapping[str, str], elapsed: float | None = None) -> None:
        """The `build_session` observer of every connector: feeds the budget, then `http_observer`."""
        if self.budget is not None:
            self.budget.observe(path, status, headers)
        if self.http_observer is not None:
            self.http_observer(path, status, headers, elapsed)

    # ---- the daily allowance -----------------------------------------------------
    def read_daily_allowance(self) -> tuple[int, int] | None:
        """(limit, remaining) of the vendor's daily allowance from its limits endpoint.

        Override where the API has one (Salesforce `GET /limits`); None: it has none.
        """
        return None

    def refresh_allowance(self) -> None:
        """Read the vendor's limits endpoint when the budget says it is time (at most every few minutes).

        A failed read is logged and leaves the budget on what the headers said.
        """
        budget = self.budget
        if budget is None or not budget.limits_due():
            return
        try:
            figures = self.read_daily_allowance()
        except ConnectorError as exc:
            budget.limits_read()
            log.warning("could not read the daily allowance", system=self.name, error=type(exc).__name__,
                        reason=str(exc)[:200])
            return
        budget.limits_read(*(figures or (None, None)))

    def allowed_priority(self) -> WritePriority:
        """The lowest-ranked write the budget lets through now (every write when unbudgeted)."""
        return self.budget.allowed_priority() if self.budget is not None else WritePriority.BACKFILL

    def translate(self, exc: Exception) -> ConnectorError | None:
        """Map an SDK exception to crmhub's tree; None for exceptions not the SDK's.

        Override in each connector; the most specific match wins.
        """
        return None

    def call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one SDK operation, paced by the budget before every attempt, with error mapping and retries."""

        def attempt() -> T:
            if self.budget is None:
                with self.map_errors(operation):
                    return fn()
            self.budget.acquire()
            try:
                with self.map_errors(operation):
                    return fn()
            finally:
                self.budget.end_attempt()

        return self.retrier.call(f"{self.name}.{operation}", attempt)

    def send_checked(self, operation: str, uncertain_since: datetime | None,
                     find_sent: Callable[[datetime], T | None], send: Callable[[], T]) -> T:
        """`call` for a send without an idempotency key: never send what may already have gone out.

        Before any attempt that follows an uncertain one (this call's earlier
        attempts, or `uncertain_since` from an earlier run), `find_sent` looks
        on the channel for the message sent since then (less `CLOCK_SKEW`);
        if found, that is the result and nothing is sent again.
        """
        first_try = datetime.now(UTC)
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            since = uncertain_since or (first_try if attempts > 1 else None)
            if since is not None:
                earlier = find_sent(since - CLOCK_SKEW)
                if earlier is not None:
                    return earlier
            return send()

        return self.call(operation, attempt)

    @contextmanager
    def map_errors(self, operation: str) -> Iterator[None]:
        """Turn SDK and transport exceptions into crmhub errors, chaining the original."""
        try:
            yield
        except (ConnectorError, Interrupted):
            raise
        except Exception as exc:
            mapped = self.translate(exc) or _transport_error(exc, self.name)
            if mapped is None:
                raise
            raise mapped from exc


def _transport_error(exc: Exception, system: str) -> ConnectorError | None:
    """Errors below every SDK: the connection itself."""
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return Timeout(f"no answer ({type(exc).__name__}); the call may or may not have taken effect", system=system)
    if isinstance(exc, requests.RequestException):
        return PermanentError(f"request failed: {type(exc).__name__}", system=system)
    return None


def classify_status(status: int, message: str, *, system: str, code: str = "",
                    retry_after: float | None = None) -> ConnectorError:
    """The shared status table: 429 wait, 5xx wait, 401/403 fix config, 404 our bug, other 4xx reject."""
    if status == 429:
        return RateLimited(message, retry_after=retry_after, system=system, status=status, code=code)
    if status >= 500:
        return Timeout(message, system=system, status=status, code=code)
    if status in (401, 403):
        return AuthError(message, system=system, status=status, code=code)
    if status == 404:
        return NotFound(message, system=system, status=status, code=code)
    return Rejected(message, system=system, status=status, code=code)


TRUNCATED = "… [truncated by crmhub]"


def fit(values: Mapping[str, Any], limits: Mapping[str, int], *, utf8: bool = False,
        utf16: bool = False) -> dict[str, Any]:
    """`values` with every text longer than its field's limit cut to fit, ending in `TRUNCATED`.

    The one place field lengths are applied, so a long message lands shortened
    and visibly marked instead of failing with the vendor's length error.
    Each connector passes its fields' published limits, in the unit the
    vendor counts: characters (code points), UTF-8 bytes (`utf8`, Zendesk
    comments) or UTF-16 code units (`utf16`, Salesforce, whose Java strings
    count an emoji or a rare CJK character outside the BMP as two).
    """
    fitted = dict(values)
    for name, limit in limits.items():
        value = fitted.get(name)
        if isinstance(value, str):
            fitted[name] = fit_text(value, limit, utf8=utf8, utf16=utf16)
    return fitted


_GRAPHEME = regex.compile(r"\X")  # an extended grapheme cluster (UAX #29): what a reader sees as one character


def text_size(text: str, *, utf8: bool = False, utf16: bool = False) -> int:
    """`text`'s length in code points, UTF-8 bytes or UTF-16 code units."""
    if utf8:
        return len(text.encode("utf-8", "surrogatepass"))
    if utf16:
        return len(text.encode("utf-16-le", "surrogatepass")) // 2
    return len(text)


def fit_text(text: str, limit: int, *, utf8: bool = False, utf16: bool = False) -> str:
    """`text` cut to `limit` (see `fit` for the units), ending in `TRUNCATED` when cut.

    The cut falls between grapheme clusters, so it never splits a character,
    a surrogate pair, an emoji sequence (👩‍👩‍👧, 🇹🇷) or a letter from its
    combining marks (Devanagari, Arabic vowel signs).
    """
    if text_size(text, utf8=utf8, utf16=utf16) <= limit:
        return text
    room = limit - text_size(TRUNCATED, utf8=utf8, utf16=utf16)
    end = used = 0
    for grapheme in _GRAPHEME.finditer(text):
        used += text_size(grapheme.group(), utf8=utf8, utf16=utf16)
        if used > room:
            break
        end = grapheme.end()
    return text[:end] + TRUNCATED


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds or HTTP date); 0/past/garbage -> None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return seconds if seconds > 0 else None
