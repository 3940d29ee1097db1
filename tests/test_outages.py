"""Outages, in process: a 429 storm (Salesforce) and a 10-minute 5xx outage in sandbox time (every CRM).

Both end with every message in the CRM exactly once; the storm also bounds
the calls the Hub spent, from the emulators' own counters, against a clean run
of the same traffic. Both run under a tight pace (`requests_per_minute`, or
HubSpot's `requests_per_10s`), with the hub waiting in sandbox time, and no
window of sandbox time ever holds more calls than that, retries included
(the emulator's own count).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault, SandboxClock
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.outbox import outbox_counts
from crmhub.store.schema import OutboxRow
from tests.crm_views import OURS, VIEWS, CrmView, SalesforceView, assert_each_message_once, duplicate_contacts
from tests.daemons import tune_settings

KNOWN = [f"+1415555{3000 + n}" for n in range(10)]  # customers each CRM already has
UNKNOWN = [f"+1415555{4000 + n}" for n in range(3)]
SF_REST = "^/services/data/"  # the REST API, not the OAuth login
SF_PACE = "crms.salesforce.budget.requests_per_minute"
RETRY_ATTEMPTS = 3


def _settings(directory: Path, view: CrmView, tw: EmulatorServer, pace: str, allowed: int) -> Path:
    """Sandbox settings for one CRM and Twilio: a short retry policy (3 attempts, 10-50 ms waits, 1 s in
    all) and the CRM's pace setting `pace` at `allowed` calls."""
    settings = write_sandbox_settings(directory, {view.name: view.server.url, "twilio": tw.url},
                                      enabled=(view.name, "twilio"))
    tune_settings(settings, {"retry": {"max_attempts": RETRY_ATTEMPTS, "initial_wait": "10ms", "max_wait": "50ms",
                                       "max_total": "1s"}, pace: allowed})
    return settings


def _seed(view: CrmView, tw: Any) -> None:
    """The CRM's setup and the customers it already has; our Twilio number."""
    view.seed()
    for n, phone in enumerate(KNOWN):
        view.add_known(phone, f"Person{n}")
    view.ready()
    tw.add_number(OURS)


def _send(tw: Any, count: int, *, first: int = 0, at: datetime | None = None) -> dict[str, str]:
    """`count` inbound SMS from known and unknown senders; returns each body (unique) -> its sender."""
    senders = KNOWN + UNKNOWN
    start = at or datetime.now(UTC) - timedelta(minutes=20)
    sent = {}
    for n in range(first, first + count):
        body = f"outage message {n:03d}"
        tw.receive_message(senders[n % len(senders)], OURS, body, at=start + timedelta(seconds=5 * (n - first)))
        sent[body] = senders[n % len(senders)]
    return sent


def _counts(hub: Hub) -> Counter[str]:
    with hub.store.transaction() as session:
        counts: Counter[str] = Counter()
        for (_, status), n in outbox_counts(session).items():
            counts[status] += n
        return counts


def _assert_exactly_once(view: CrmView, sent: dict[str, str]) -> None:
    """Each message once on its conversation's one case, and no sender with a second contact."""
    assert_each_message_once(view, sent)
    assert not duplicate_contacts(view, KNOWN + UNKNOWN)


def _cycle(hub: Hub) -> bool:
    """One sync_once; False when a step failed (the others still ran, as the daemon's jobs do)."""
    return not hub.sync_once().failures


def test_a_429_storm_delivers_everything_once_within_a_bounded_number_of_calls(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
        tmp_path: Path) -> None:
    view = SalesforceView(salesforce_sandbox)
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator

    # The same traffic without faults first: what a clean run costs, per cycle.
    _seed(view, tw)
    sent = _send(tw, 30)
    with build_hub(load_config(_settings(tmp_path / "clean", view, twilio_sandbox, SF_PACE,
                                         600))) as hub:
        assert _cycle(hub)
        busy = (sf.total_calls, tw.total_calls)
        assert _cycle(hub)
        idle = (sf.total_calls - busy[0], tw.total_calls - busy[1])
        assert _counts(hub) == Counter(done=30)
    _assert_exactly_once(view, sent)

    # The storm: fresh emulators, same traffic, the next N calls of each API refused.
    sf.reset()
    tw.reset()
    _seed(view, tw)
    sent = _send(tw, 30)
    sf_storm, tw_storm = 7, 3
    sf_fault = sf.faults.add(Fault(kind="rate_limit", path=SF_REST, times=sf_storm))  # 403 REQUEST_LIMIT_EXCEEDED
    tw_fault = tw.faults.add(Fault(kind="rate_limit", times=tw_storm, retry_after=1))  # 429, Retry-After: 1
    offset = timedelta()

    def clock() -> datetime:  # only the hub's own retry schedule moves; the emulators' time does not
        return datetime.now(UTC) + offset

    cycles, failed = 0, 0
    per_minute = 4  # fewer than one clean busy cycle makes: the pace has to hold the storm's retries back
    storm_start = sandbox_clock.time()
    with build_hub(load_config(_settings(tmp_path / "storm", view, twilio_sandbox, SF_PACE,
                                         per_minute)),
                   clock=clock, sleep=sandbox_clock.advance, monotonic=sandbox_clock.time) as hub:
        for cycles in range(1, 16):
            failed += not _cycle(hub)
            if _counts(hub) == Counter(done=30):
                break
            offset += timedelta(minutes=10)  # past the outbox's retry wait (30 s, doubling per attempt)
        assert _counts(hub) == Counter(done=30), _counts(hub)
    _assert_exactly_once(view, sent)
    assert sf_fault.hits == sf_storm and tw_fault.hits == tw_storm  # the storm happened, all of it

    # Every request is one of: a refused one (counted by the fault), one the clean run also made
    # (its busy cycle), a repeat because an operation gave up after RETRY_ATTEMPTS refusals (at most
    # N // RETRY_ATTEMPTS times, each redoing at most one busy cycle's work), or an idle cycle's
    # poll and mirror reads (every other cycle).
    def bound(refused: int, clean: tuple[int, int], which: int) -> int:
        return refused + clean[which] + (refused // RETRY_ATTEMPTS) * clean[which] + (cycles - 1) * idle[which]

    print(f"\n429 storm: {cycles} cycles ({failed} ended by a transient failure); "
          f"Salesforce calls {sf.total_calls} (clean busy cycle {busy[0]}, idle cycle {idle[0]}, "
          f"refused {sf_storm}, bound {bound(sf_storm, busy, 0)}); Twilio calls {tw.total_calls} "
          f"(clean {busy[1]}, idle {idle[1]}, refused {tw_storm}, bound {bound(tw_storm, busy, 1)})")
    assert sf.total_calls <= bound(sf_storm, busy, 0)
    assert tw.total_calls <= bound(tw_storm, busy, 1)
    assert cycles <= 1 + (sf_storm + tw_storm) // RETRY_ATTEMPTS + 1  # never more cycles than give-ups allow
    # No budget exceeded: the emulator's own log of the storm's calls (refused ones included).
    print(f"storm paced: at most {sf.busiest(60)} Salesforce calls in any minute of sandbox time "
          f"(allowed {per_minute}); {sandbox_clock.time() - storm_start:.0f} s of sandbox time")
    assert sf.total_calls > per_minute and sf.busiest(60) <= per_minute


OUTAGE_PATHS = {"salesforce": SF_REST, "zendesk": "^/api/v2/", "hubspot": "^/crm/"}  # each CRM's REST API
OUTAGE_PACES = {  # the pace setting, the calls it allows, per this many seconds
    "salesforce": (SF_PACE, 8, 60.0),
    "zendesk": ("crms.zendesk.budget.requests_per_minute", 8, 60.0),
    "hubspot": ("crms.hubspot.budget.requests_per_10s", 2, 10.0),
}


@pytest.mark.parametrize("crm", list(VIEWS))
def test_a_ten_minute_outage_in_sandbox_time_delivers_nothing_then_everything_once(
        crm: str, request: pytest.FixtureRequest, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
        tmp_path: Path) -> None:
    server: EmulatorServer = request.getfixturevalue(f"{crm}_sandbox")
    view = VIEWS[crm](server)
    tw: Any = twilio_sandbox.emulator
    _seed(view, tw)
    before = _send(tw, 5, at=sandbox_clock.now() - timedelta(minutes=30))
    clock: Callable[[], datetime] = sandbox_clock.now  # the outbox's retry schedule follows sandbox time
    key, allowed, window = OUTAGE_PACES[crm]  # the outage's retries would come faster than that
    settings = _settings(tmp_path, view, twilio_sandbox, key, allowed)
    with build_hub(load_config(settings), clock=clock, sleep=sandbox_clock.advance,
                   monotonic=sandbox_clock.time) as hub:
        assert _cycle(hub)  # running normally: mirror read, first messages delivered
        assert _counts(hub) == Counter(done=5)

        outage_start = sandbox_clock.time()
        outage = view.em.faults.add(Fault(kind="server_error", path=OUTAGE_PATHS[crm], status=503, times=None,
                                          until=outage_start + 600))
        during = _send(tw, 25, first=5, at=sandbox_clock.now() - timedelta(minutes=5))
        for _ in range(3):  # the daemon's jobs during the outage: poll, mirror, deliver
            assert not _cycle(hub)  # the mirror refresh and the delivery fail; the poll still runs
            counts = _counts(hub)
            assert counts == Counter(done=5, pending=25), counts  # pending or retrying, none dead
            assert len(view.written()) == 5
        with hub.store.transaction() as session:
            waiting = session.query(OutboxRow).filter(OutboxRow.status == "pending").all()
            assert all(row.attempts >= 1 and "503" in (row.last_error or "") for row in waiting)
            started = datetime.fromtimestamp(outage_start, UTC)
            assert all(row.next_attempt_at > started for row in waiting)  # rescheduled after a failed try
        refused = outage.hits
        assert refused > 0
        assert sandbox_clock.time() < outage_start + 600  # the pacing's waits did not outlast the outage

        sandbox_clock.advance(outage_start + 601 - sandbox_clock.time())  # the outage is over, retries are due
        for _ in range(3):
            if _cycle(hub) and _counts(hub) == Counter(done=30):
                break
        assert _counts(hub) == Counter(done=30), _counts(hub)
    assert outage.hits == refused  # nothing was refused after the outage ended
    _assert_exactly_once(view, {**before, **during})
    busiest = view.em.busiest(window)
    print(f"\n10-minute outage, {crm}: {refused} calls refused with 503 during it; {view.em.total_calls} calls "
          f"in all, at most {busiest} in any {window:g} s (allowed {allowed})")
    assert view.em.total_calls > allowed and busiest <= allowed  # no budget exceeded, retries included
