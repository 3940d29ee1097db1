"""The API budget on its own, in simulated time: pacing, the vendors' headers, and what the reserve lets through."""

from __future__ import annotations

import bisect
import threading

import pytest

from crmhub.connectors._budget import Allowance, Budget, Headroom, Window, read_headroom
from crmhub.errors import RateLimited
from crmhub.model import WritePriority


class SimulatedTime:
    """A clock that moves only when someone sleeps (shared by threads)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.lock = threading.Lock()

    def time(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def budget(system: str, t: SimulatedTime, **kwargs: object) -> Budget:
    return Budget(system, clock=t.time, sleep=t.sleep, wall=t.time, **kwargs)  # type: ignore[arg-type]  # test kwargs


def busiest(times: list[float], seconds: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_right(times, t + seconds - 1e-9) - i for i, t in enumerate(times)), default=0)


def calls(b: Budget, t: SimulatedTime, n: int) -> list[float]:
    """Make `n` one-request calls as `Connector.call` does; returns when each was sent."""
    sent = []
    for _ in range(n):
        b.acquire()
        b.before_request("/x")
        sent.append(t.time())
        b.end_attempt()
    return sent


def test_no_window_ever_holds_more_calls_than_configured() -> None:
    t = SimulatedTime()
    sent = calls(budget("salesforce", t, windows=[Window(5, 60.0)]), t, 23)
    assert busiest(sent, 60.0) == 5
    assert sent[4] == sent[0]  # the first five go at once
    assert 4 * 60 <= sent[-1] - sent[0] < 4 * 61  # then five a minute


def test_a_second_request_inside_one_attempt_takes_its_own_token() -> None:
    t = SimulatedTime()
    b = budget("zendesk", t, windows=[Window(3, 60.0)])
    sent = []
    for _ in range(4):
        b.acquire()
        for _ in range(2):  # e.g. a login and the call, or two pages inside the SDK
            b.before_request("/api/v2/x")
            sent.append(t.time())
        b.end_attempt()
    assert busiest(sent, 60.0) == 3


def test_a_request_slow_to_get_out_counts_from_when_it_was_over() -> None:
    """A loaded machine may send a request long after its token was booked; the vendor counts its arrival.

    Each call here arrives somewhere in the 2 s between its booking and its
    end (the first one late, as on a busy machine): counting it from its booking let the next window open
    too early and the vendor see 3 calls in 10 s against a pace of 2.
    """
    t = SimulatedTime()
    b = budget("hubspot", t, windows=[Window(2, 10.0)])
    arrived = []
    for n in range(6):
        b.acquire()
        b.before_request("/crm/v3/objects/calls/batch/create")
        t.sleep(2.0)  # on its way (the vendor sees it at the end of this, at the latest)
        arrived.append(t.time())
        b.after_request()
        b.end_attempt()
    assert busiest(arrived, 10.0) == 2


def test_threads_share_the_windows() -> None:
    t = SimulatedTime()
    b = budget("zendesk", t, windows=[Window(4, 60.0)])
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for when in calls(b, t, 5):
            with lock:
                sent.append(when)

    start = t.time()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(sent) == 20
    assert t.time() - start >= 4 * 60  # 20 calls at 4 a minute, whichever thread made them


def test_a_smaller_window_reported_by_the_vendor_lowers_the_pace() -> None:
    t = SimulatedTime()
    b = budget("hubspot", t, windows=[Window(100, 10.0)])
    b.observe("batch.upsert", 200, {"X-HubSpot-RateLimit-Max": "4", "X-HubSpot-RateLimit-Remaining": "3",
                                    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"})
    assert b.windows == (Window(4, 10.0),)
    sent = calls(b, t, 12)
    assert busiest(sent, 10.0) <= 4


def test_what_the_vendor_says_is_left_is_not_overspent() -> None:
    t = SimulatedTime()
    b = budget("zendesk", t, windows=[Window(400, 60.0)])
    start = t.time()
    b.observe("/api/v2/users.json", 200, {"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "2",
                                          "ratelimit-remaining": "2", "ratelimit-reset": "30"})
    sent = calls(b, t, 3)
    assert sent[:2] == [start, start]  # two were left
    assert sent[2] - start >= 30  # the third waits for the vendor's window to reset


def test_a_429_says_when_the_window_reopens() -> None:
    t = SimulatedTime()
    b = budget("zendesk", t, windows=[Window(400, 60.0)])
    start = t.time()
    b.observe("/api/v2/tickets/update_many.json", 429, {"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "0",
                                                       "Retry-After": "7"})
    assert calls(b, t, 1) == [start + 7]


def test_a_long_used_up_vendor_window_fails_the_call_unmade_instead_of_waiting() -> None:
    t = SimulatedTime()
    b = budget("x", t, max_wait=300.0)
    path = "/2/dm_events"
    b.observe(path, 200, {"x-rate-limit-limit": "15", "x-rate-limit-remaining": "0",
                          "x-rate-limit-reset": str(int(t.time()) + 900)})
    b.acquire()  # X's windows are per endpoint: nothing account-wide holds the attempt
    with pytest.raises(RateLimited) as raised:
        b.before_request(path)
    assert raised.value.retry_after is not None and 890 <= raised.value.retry_after <= 900
    assert t.time() == 1_800_000_000.0  # nothing was waited
    b.before_request("/2/users/1/mentions")  # another endpoint is not held


@pytest.mark.parametrize(("used", "allowed"), [
    (700, WritePriority.BACKFILL),  # 300 left of 1000: above the 20% reserve
    (800, WritePriority.NEW_CASE),  # 200 left: at the reserve
    (850, WritePriority.NEW_CASE),
    (900, WritePriority.REPLY),  # 100 left: at half the reserve
    (1000, WritePriority.REPLY),
])
def test_the_daily_reserve_decides_which_writes_go(used: int, allowed: WritePriority) -> None:
    b = budget("salesforce", SimulatedTime(), daily_reserve=0.2)
    assert b.allowed_priority() is WritePriority.BACKFILL  # nothing known yet: nothing held
    b.observe("/services/data/v59.0/query", 200, {"Sforce-Limit-Info": f"api-usage={used}/1000"})
    assert b.allowed_priority() is allowed
    assert b.allowance().reserve == 200


def test_salesforce_limits_are_read_at_start_then_every_few_minutes() -> None:
    t = SimulatedTime()
    b = budget("salesforce", t, daily_reserve=0.2, limits_every=300.0)
    assert b.limits_due()
    b.limits_read(1000, 150)
    assert not b.limits_due() and b.allowed_priority() is WritePriority.NEW_CASE
    t.sleep(299)
    assert not b.limits_due()
    t.sleep(1)
    assert b.limits_due()


def test_hubspot_counts_its_own_calls_against_daily_when_no_daily_header_comes() -> None:
    t = SimulatedTime()
    b = budget("hubspot", t, windows=[Window(100, 10.0)], daily_reserve=0.2, daily_limit=100)
    for _ in range(81):
        b.observe("batch.upsert", 200, {})  # OAuth apps get no daily headers
    assert (b.daily_remaining, b.allowed_priority()) == (19, WritePriority.NEW_CASE)
    b.observe("batch.upsert", 200, {"X-HubSpot-RateLimit-Daily": "250000",
                                    "X-HubSpot-RateLimit-Daily-Remaining": "249000"})
    assert (b.daily_limit, b.daily_remaining, b.allowed_priority()) == (250000, 249000, WritePriority.BACKFILL)


def test_the_vendors_documented_headers_are_read() -> None:
    assert read_headroom("salesforce", {"Sforce-Limit-Info": "api-usage=25/5000; per-app-api-usage=17/250(appName=a)"}
                         ) == Headroom(daily_remaining=4975, daily_limit=5000)
    assert read_headroom("hubspot", {
        "X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "249990",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Max": "100",
        "X-HubSpot-RateLimit-Remaining": "97"}) == Headroom(remaining=97, limit=100, window=10.0,
                                                             daily_remaining=249990, daily_limit=250000)
    assert read_headroom("zendesk", {"x-rate-limit": "700", "ratelimit-limit": "700", "x-rate-limit-remaining": "699",
                                     "ratelimit-remaining": "699", "ratelimit-reset": "41"}
                         ) == Headroom(remaining=699, limit=700, window=60.0, resets_in=41.0)
    assert read_headroom("x", {"x-rate-limit-limit": "450", "x-rate-limit-remaining": "449",
                               "x-rate-limit-reset": "1000900"}, path="/2/users/1/mentions", now=1_000_000.0
                         ) == Headroom(remaining=449, limit=450, resets_in=900.0, scope="/2/users/1/mentions")
    assert read_headroom("twilio", {"x-rate-limit-remaining": "1"}) is None
    assert read_headroom("salesforce", {"Sforce-Limit-Info": "api-usage=garbage"}) is None


def test_an_allowance_is_low_at_twice_its_reserve_or_a_fifth_of_the_day_without_one() -> None:
    def low(remaining: int | None, limit: int | None, reserve: int | None) -> bool:
        return Allowance(WritePriority.BACKFILL, remaining, limit, reserve).low

    assert low(400, 1000, 200) and not low(401, 1000, 200)  # Salesforce's 20% reserve: low from 40% left
    assert low(200, 1000, None) and not low(201, 1000, None)
    assert not low(None, 1000, 200) and not low(10, None, None)  # no daily figure (Zendesk): never low
