"""The one retry layer: every connector operation runs through `Retrier.call`.

Retries happen here and nowhere else (no SDK retries, no loops at call
sites): exponential backoff with full jitter, capped per wait, in attempts
and in total time; a `RateLimited` error's own hint (`Retry-After`,
`x-rate-limit-reset`) is waited out in full, since retrying earlier only
spends budget on another 429. A hint of 0 or in the past counts as no hint.

The retrier also owns the daemon's notion of waiting: `sleep` and `clock`
are injectable (tests run in sandbox time), and the pacing of
`crmhub.connectors._budget` waits through the same two, so a stopping daemon
(whose `sleep` raises `Interrupted`) cuts retry and pacing waits alike.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay

from crmhub.errors import Interrupted, RateLimited, TransientError

T = TypeVar("T")
log = structlog.get_logger("crmhub.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a transient failure (from settings `retry:`)."""

    max_attempts: int = 6
    initial_wait: float = 1.0
    max_wait: float = 300.0
    max_total: float = 900.0


class Retrier:
    """Runs an operation, retrying `TransientError`s by `policy`.

    Args:
        policy: the limits.
        sleep: how to wait (the daemon's clock; tests pass a simulated one).
        clock: seconds that only move forward, read by the budgets' pacing
            (`time.monotonic`; tests pass the sandbox clock's `time`).
        rng: jitter source, seedable for reproducible tests.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self._rng = rng or random.Random()

    def call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying transient failures; the last error is re-raised."""
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_attempts) | stop_after_delay(self.policy.max_total),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda state: self._log_retry(operation, state),
        )
        return retrying(fn)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        backoff = min(self.policy.max_wait, self.policy.initial_wait * 2 ** (state.attempt_number - 1))
        jittered = self._rng.uniform(0, backoff)
        if isinstance(error, RateLimited) and error.retry_after and error.retry_after > 0:
            return min(self.policy.max_total, error.retry_after + jittered * 0.1)
        return jittered

    @staticmethod
    def _log_retry(operation: str, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying",
            operation=operation,
            attempt=state.attempt_number,
            wait_seconds=round(state.upcoming_sleep, 2),
            error=type(error).__name__,
            reason=str(error)[:200],
        )


def interruptible_sleep(stopping: threading.Event) -> Callable[[float], None]:
    """A `sleep` that returns at once and raises `Interrupted` when `stopping` is set.

    The daemon's retry and pacing waits use it, so SIGTERM never waits out a
    backoff or a rate-limit window: the call is not made and its caller
    stops (what it had claimed comes due again after the restart).
    """

    def sleep(seconds: float) -> None:
        if stopping.wait(max(0.0, seconds)):
            raise Interrupted("the daemon is stopping; the call was not made")

    return sleep
