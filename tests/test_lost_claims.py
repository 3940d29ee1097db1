"""Claims a daemon died holding (issue 13): they count as no attempt, yet the next try checks the CRM first.

A daemon SIGKILLed while it holds outbox rows records no outcome: the lease
runs out and the rows come due again. Such a claim is not an attempt (no
answer came back), so a crash loop neither dead-letters the rows nor pushes
their retries out by backoff; only a row that stops the daemon every time
it is written (`delivery.max_claims` times in a row) is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.model import HistoryWrite, WriteOutcome
from crmhub.sandbox import EmulatorServer, Fault, SandboxClock
from crmhub.store import outbox
from crmhub.store.schema import DeadLetterRow, OutboxRow
from tests.crm_views import VIEWS, CrmView, assert_each_message_once
from tests.test_outages import OUTAGE_PATHS, _seed, _send, _settings

PACES = {"salesforce": ("crms.salesforce.budget.requests_per_minute", 600),
         "zendesk": ("crms.zendesk.budget.requests_per_minute", 600),
         "hubspot": ("crms.hubspot.budget.requests_per_10s", 100)}
MESSAGES = 3


def _hub(view: CrmView, twilio: EmulatorServer, clock: SandboxClock, directory: Path) -> Hub:
    key, allowed = PACES[view.name]
    return build_hub(load_config(_settings(directory, view, twilio, key, allowed)), clock=clock.now,
                     sleep=clock.advance, monotonic=clock.time)


def _route_only(hub: Hub) -> None:
    """Poll, mirror and route, delivering nothing: the outbox holds the messages' writes, pending."""
    for poll in hub.polls().values():
        poll()
    for name in hub.crms:
        hub.refresh_mirror(name)
    hub.stopping.set()  # route_and_deliver routes, then delivers to no CRM
    try:
        hub.route_and_deliver()
    finally:
        hub.stopping.clear()


def _die_holding_claims(hub: Hub, crm: str, clock: SandboxClock, times: int) -> None:
    """`times` daemons that claim every due row and die before recording anything; each lease runs out."""
    lease = hub.policies[crm].lease
    for _ in range(times):
        with hub.store.transaction() as session:
            assert outbox.claim_due(session, crm, 100, now=clock.now(), lease=lease)
        clock.advance(lease.total_seconds() + 1)


def _rows(hub: Hub) -> list[tuple[str, int, datetime]]:
    with hub.store.transaction() as session:
        return [(r.status, r.attempts, r.next_attempt_at) for r in session.scalars(select(OutboxRow))]


def _dead_letters(hub: Hub) -> list[str]:
    with hub.store.transaction() as session:
        return [r.reason for r in session.scalars(select(DeadLetterRow))]


def _spy_writes(hub: Hub, crm: str) -> list[HistoryWrite]:
    """The writes the CRM's connector is given from now on (it still writes them)."""
    seen: list[HistoryWrite] = []
    connector: Any = hub.crms[crm]
    real = connector.write_history

    def write_history(writes: Sequence[HistoryWrite], **options: Any) -> list[WriteOutcome]:
        seen.extend(writes)
        outcomes: list[WriteOutcome] = real(writes, **options)  # e.g. Zendesk's on_submitted
        return outcomes

    connector.write_history = write_history
    return seen


@pytest.mark.parametrize("crm", list(VIEWS))
def test_a_crash_loop_holding_rows_neither_dead_letters_them_nor_backs_them_off(
        crm: str, request: pytest.FixtureRequest, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
        tmp_path: Path) -> None:
    view = VIEWS[crm](request.getfixturevalue(f"{crm}_sandbox"))
    tw: Any = twilio_sandbox.emulator
    _seed(view, tw)
    sent = _send(tw, MESSAGES, at=sandbox_clock.now() - timedelta(minutes=30))
    with _hub(view, twilio_sandbox, sandbox_clock, tmp_path) as hub:
        _route_only(hub)
        policy = hub.policies[crm]
        _die_holding_claims(hub, crm, sandbox_clock, policy.max_attempts + 1)

        # The first real try gets an answer: the CRM is down (every retry of the connector refused).
        writes = _spy_writes(hub, crm)
        view.em.faults.add(Fault(kind="server_error", path=OUTAGE_PATHS[crm], status=503, times=None,
                                 until=sandbox_clock.time() + 5))
        tried_at = sandbox_clock.now()
        hub.route_and_deliver()
        assert writes and not any(w.first_attempt for w in writes)  # an expired claim may have written: check
        rows = _rows(hub)
        assert [(status, attempts) for status, attempts, _ in rows] == [("pending", 1)] * MESSAGES
        # Due again after the first backoff step (30 s), not the ninth's (over an hour).
        assert all(due <= tried_at + policy.retry_base + timedelta(seconds=10) for _, _, due in rows), rows

        sandbox_clock.advance(policy.retry_base.total_seconds() + 10)
        hub.route_and_deliver()
        assert [(status, attempts) for status, attempts, _ in _rows(hub)] == [("done", 2)] * MESSAGES
        assert _dead_letters(hub) == []
    assert_each_message_once(view, sent)


def test_a_row_that_stops_the_daemon_every_time_is_dead_lettered_after_max_claims(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
        tmp_path: Path) -> None:
    view = VIEWS["salesforce"](salesforce_sandbox)
    tw: Any = twilio_sandbox.emulator
    _seed(view, tw)
    _send(tw, 1, at=sandbox_clock.now() - timedelta(minutes=30))
    with _hub(view, twilio_sandbox, sandbox_clock, tmp_path) as hub:
        _route_only(hub)
        limit = hub.config.settings.delivery.max_claims
        _die_holding_claims(hub, "salesforce", sandbox_clock, limit)
        writes = _spy_writes(hub, "salesforce")
        hub.route_and_deliver()
        assert writes == []  # not tried an eleventh time
        assert [status for status, _, _ in _rows(hub)] == ["dead"]
        [reason] = _dead_letters(hub)
        assert f"the daemon stopped while writing it {limit} times" in reason
    assert view.written() == []
