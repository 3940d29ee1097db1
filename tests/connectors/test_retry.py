"""The single retry layer: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

import random

import pytest

from crmhub.connectors._base import retry_after_seconds
from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.errors import Rejected, RateLimited, Timeout


class Flaky:
    """Fails with the given errors in turn, then returns 'ok'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def retrier(waits: list[float], **policy: float) -> Retrier:
    return Retrier(RetryPolicy(**policy), sleep=waits.append, rng=random.Random(7))  # type: ignore[arg-type]


def test_transient_errors_are_retried_with_growing_capped_jittered_waits() -> None:
    waits: list[float] = []
    op = Flaky(*(Timeout("reset") for _ in range(5)))
    assert retrier(waits, max_attempts=6, initial_wait=1, max_wait=4).call("op", op) == "ok"
    assert op.calls == 6
    caps = [1, 2, 4, 4, 4]
    assert all(0 <= w <= cap for w, cap in zip(waits, caps, strict=True))


def test_rate_limit_hint_is_waited_out_in_full() -> None:
    waits: list[float] = []
    op = Flaky(RateLimited("slow down", retry_after=30))
    assert retrier(waits, initial_wait=1).call("op", op) == "ok"
    assert 30 <= waits[0] <= 30.1


def test_permanent_errors_are_not_retried() -> None:
    waits: list[float] = []
    op = Flaky(Rejected("bad field"))
    with pytest.raises(Rejected):
        retrier(waits).call("op", op)
    assert (op.calls, waits) == (1, [])


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    waits: list[float] = []
    op = Flaky(*(Timeout(f"try {i}") for i in range(10)))
    with pytest.raises(Timeout, match="try 2"):
        retrier(waits, max_attempts=3).call("op", op)
    assert op.calls == 3


@pytest.mark.parametrize(("header", "seconds"), [
    ("12", 12.0), ("0", None), ("-3", None), (None, None), ("soon", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # a date in the past is no hint
])
def test_retry_after_header_parsing(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds
