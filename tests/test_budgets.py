"""API budgets against the emulators, in sandbox time: pacing from settings and headers, and the daily reserve.

Every count of calls comes from the emulators (`Emulator.busiest`, `calls`),
never from crmhub. The hub waits with the sandbox clock (`sleep=advance`),
so minutes of pacing take milliseconds.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.model import WritePriority
from crmhub.sandbox import EmulatorServer, SandboxClock
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.schema import OutboxRow
from tests.crm_views import zendesk_bodies
from tests.daemons import tune_settings, wait_for

OURS = "+14155550100"
KNOWN = [f"+1415555{5000 + n}" for n in range(6)]


def settings_for(directory: Path, urls: dict[str, str], crm: str, **changes: Any) -> Path:
    """Sandbox settings for `crm` and Twilio, with `changes` as {"a.b.c": value} applied."""
    path = write_sandbox_settings(directory, urls, enabled=(crm, "twilio"))
    tune_settings(path, changes)
    return path


def simulated_hub(settings: Path, clock: SandboxClock) -> Hub:
    return build_hub(load_config(settings), clock=clock.now, sleep=clock.advance, monotonic=clock.time)


def send(tw: Any, clock: SandboxClock, senders: list[str], count: int, *, first: int = 0) -> list[str]:
    """`count` inbound SMS, round-robin over `senders`, in the last half hour of sandbox time."""
    start = clock.now() - timedelta(minutes=30)
    bodies = []
    for n in range(first, first + count):
        body = f"budget message {n:03d}"
        tw.receive_message(senders[n % len(senders)], OURS, body, at=start + timedelta(seconds=10 * n))
        bodies.append(body)
    return bodies


def delivered_bodies(crm: str, emulator: Any) -> Counter[str]:
    """Each message body as the CRM holds it (Salesforce Tasks, Zendesk comments, HubSpot communications)."""
    if crm == "salesforce":
        return Counter(t["Description"] for t in emulator.records("Task"))
    if crm == "zendesk":
        return Counter(text for ticket in emulator.tickets() for text in zendesk_bodies(emulator, ticket["id"])
                       if text.startswith("budget message"))
    return Counter(m["properties"]["hs_communication_body"] for m in emulator.objects("communications"))


PACES = [  # crm, its pace setting, calls allowed, window seconds
    ("salesforce", "crms.salesforce.budget.requests_per_minute", 6, 60.0),
    ("zendesk", "crms.zendesk.budget.requests_per_minute", 6, 60.0),
    ("hubspot", "crms.hubspot.budget.requests_per_10s", 3, 10.0),
]


@pytest.mark.parametrize(("crm", "key", "allowed", "window"), PACES, ids=[p[0] for p in PACES])
def test_a_delivery_of_many_items_never_exceeds_the_configured_pace(
        crm: str, key: str, allowed: int, window: float, request: pytest.FixtureRequest,
        twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock, tmp_path: Path) -> None:
    server: EmulatorServer = request.getfixturevalue(f"{crm}_sandbox")
    emulator: Any = server.emulator
    tw: Any = twilio_sandbox.emulator
    if crm == "salesforce":
        for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
            emulator.add_queue(name, name)
    tw.add_number(OURS)
    bodies = send(tw, sandbox_clock, KNOWN, 12)
    settings = settings_for(tmp_path, {crm: server.url, "twilio": twilio_sandbox.url}, crm,
                            **{key: allowed, "delivery.batch_size": 2})
    started = sandbox_clock.time()
    with simulated_hub(settings, sandbox_clock) as hub:
        cycle = hub.sync_once()
        assert not cycle.failures, cycle.failures
    assert delivered_bodies(crm, emulator) == Counter(bodies)  # each once
    busiest = emulator.busiest(window)
    print(f"\n{crm}: {emulator.total_calls} calls in {sandbox_clock.time() - started:.0f} s of sandbox time, "
          f"at most {busiest} in any {window:g} s (allowed {allowed})")
    assert emulator.total_calls > 2 * allowed  # enough calls for the pace to matter
    assert busiest <= allowed


def test_the_pace_follows_a_smaller_window_that_hubspot_reports(
        hubspot_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
        tmp_path: Path) -> None:
    hs: Any = hubspot_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    hs.state["limits"]["ten_second_max"] = 4  # the account's real window, smaller than configured
    tw.add_number(OURS)
    bodies = send(tw, sandbox_clock, KNOWN, 12)
    settings = settings_for(tmp_path, {"hubspot": hubspot_sandbox.url, "twilio": twilio_sandbox.url}, "hubspot",
                            **{"crms.hubspot.budget.requests_per_10s": 100, "delivery.batch_size": 2})
    with simulated_hub(settings, sandbox_clock) as hub:
        assert not hub.sync_once().failures
        refused = hub.metrics.sample("crmhub_api_calls_total", {"system": "hubspot", "status": "429"})
    assert delivered_bodies("hubspot", hs) == Counter(bodies)
    assert hs.busiest(10.0) <= 4
    assert not refused  # paced below HubSpot's window from its headers, never refused


def test_a_low_daily_allowance_holds_follow_ups_and_lets_new_cases_through(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
        tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    for n, phone in enumerate(KNOWN[:2]):
        sf.insert("Contact", LastName=f"Known{n}", Phone=phone)
    tw.add_number(OURS)
    alice, bob = KNOWN[:2]
    start = sandbox_clock.now() - timedelta(minutes=30)
    tw.receive_message(alice, OURS, "alice opens a case", at=start)
    settings = settings_for(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                            "salesforce")
    with simulated_hub(settings, sandbox_clock) as hub:
        assert not hub.sync_once().failures  # alice's case is open
        assert len(sf.records("Case")) == 1

        # The org's other integrations have used the allowance down to 15% (reserve 20%).
        sf.set_api_limit(1000)
        sf.spend_api_calls(850 - sf.backend.api_usage())
        limits_calls = sf.calls["GET /services/data/v59.0/limits"]
        tw.receive_message(alice, OURS, "alice follows up", at=start + timedelta(minutes=1))
        tw.receive_message(bob, OURS, "bob opens a case", at=start + timedelta(minutes=2))
        tw.receive_message(bob, OURS, "bob follows up", at=start + timedelta(minutes=3))
        sandbox_clock.advance(301)  # /limits is read again at most every few minutes
        cycle = hub.sync_once()
        assert not cycle.failures, cycle.failures
        assert sf.calls["GET /services/data/v59.0/limits"] == limits_calls + 1
        assert sorted(t["Description"] for t in sf.records("Task")) == ["alice opens a case", "bob opens a case"]
        assert [(d.delivered, d.retrying, d.dead, d.held) for d in cycle.deliveries] == [(1, 0, 0, 2)]
        with hub.store.transaction() as session:
            held = session.query(OutboxRow).filter(OutboxRow.status == "pending").all()
            assert sorted((r.priority, r.attempts) for r in held) == [(WritePriority.FOLLOW_UP, 0)] * 2  # untried
        assert hub.metrics.sample("crmhub_outbox_held", {"crm": "salesforce"}) == 2.0
        status = CliRunner().invoke(app, ["status", "--config", str(settings)])
        assert status.exit_code == 0, status.output
        assert "salesforce: 2 write(s) held by the API budget; follow-ups and backfill wait" in status.output
        assert "daily allowance:" in status.output and "of 1000 calls left, reserve 200" in status.output

        # The allowance recovers (a new day, a bigger licence): the next answer's header says so.
        sf.set_api_limit(100_000)
        cycle = hub.sync_once()
        assert [(d.delivered, d.held) for d in cycle.deliveries] == [(2, 0)]
        assert hub.metrics.sample("crmhub_outbox_held", {"crm": "salesforce"}) == 0.0
    assert Counter(t["Description"] for t in sf.records("Task")) == Counter(
        ["alice opens a case", "alice follows up", "bob opens a case", "bob follows up"])  # each once
    assert len(sf.records("Case")) == 2


def test_at_half_the_reserve_only_replies_go(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
        tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    tw.add_number(OURS)
    sf.set_api_limit(1000)
    sf.spend_api_calls(950)  # 5% left: below half the 20% reserve
    send(tw, sandbox_clock, KNOWN, 3)
    settings = settings_for(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                            "salesforce")
    with simulated_hub(settings, sandbox_clock) as hub:
        cycle = hub.sync_once()
        assert [(d.delivered, d.held) for d in cycle.deliveries] == [(0, 3)]  # new cases wait too
    assert sf.records("Task") == []


def test_stopping_cuts_a_pacing_wait_and_gives_the_claimed_batch_back(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
        tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.insert("Contact", LastName="Known", Phone=KNOWN[0])
    tw.add_number(OURS)
    bodies = send(tw, sandbox_clock, KNOWN[:1], 1)
    urls = {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url}
    with build_hub(load_config(settings_for(tmp_path / "a", urls, "salesforce"))) as hub:
        assert not hub.sync_once().failures  # the conversation's case is open
    bodies += send(tw, sandbox_clock, KNOWN[:1], 2, first=1)

    # A fresh daemon on the same store, in real time, allowed 7 calls a minute: its login, the mirror's
    # describes and queries, the case-state read and the /limits read take them all, so the follow-ups'
    # Task upsert waits.
    paced = settings_for(tmp_path / "b", urls, "salesforce", **{"crms.salesforce.budget.requests_per_minute": 7,
                                                                "state.url": f"sqlite:///{tmp_path / 'a' / 'crmhub.db'}"})
    with build_hub(load_config(paced)) as hub:
        cycles: list[Any] = []
        worker = threading.Thread(target=lambda: cycles.append(hub.sync_once()))
        worker.start()
        try:
            wait_for(lambda: _claimed(hub) >= 2, 30, "the follow-ups claimed")
            assert _claimed(hub) == 2 and worker.is_alive(), dict(sf.calls)  # claimed, waiting for the pace
        finally:
            hub.stopping.set()
            worker.join(timeout=10)
        assert not worker.is_alive()  # the wait was cut, not sat out
        [delivery] = cycles[0].deliveries
        assert delivery.cut_short and delivery.delivered == 0
        with hub.store.transaction() as session:
            rows = session.query(OutboxRow).filter(OutboxRow.status == "pending").all()
            assert len(rows) == 2 and all(r.next_attempt_at <= hub.clock() for r in rows)  # due again at once
    assert len(sf.records("Task")) == 1
    with build_hub(load_config(settings_for(tmp_path / "a", urls, "salesforce"))) as hub:
        assert not hub.sync_once().failures
    assert Counter(t["Description"] for t in sf.records("Task")) == Counter(bodies)  # the restart wrote each once


def _claimed(hub: Hub) -> int:
    """Pending outbox rows a delivery has claimed (lease running, no outcome yet: a claim, not an attempt)."""
    with hub.store.transaction() as session:
        return session.query(OutboxRow).filter(OutboxRow.status == "pending", OutboxRow.claims == 1,
                                               OutboxRow.attempts == 0).count()
