"""Several daemons on one PostgreSQL state store.

In-process tests pin the races the daemons ran into, each with two hubs on
one store: a follow-up claimed by one daemon while another still created
the conversation's Zendesk ticket (whose external id Zendesk does not keep
unique), and two daemons polling, routing or mirroring the same new items
at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.ledger import ledger_counts
from crmhub.store.outbox import outbox_counts
from crmhub.store.schema import MirrorRow
from crmhub.sync.process import process_pending
from tests.crm_views import OURS, SalesforceView, ZendeskView
from tests.daemons import tune_settings, wait_for


@pytest.mark.postgres
def test_a_follow_up_waits_while_another_daemon_opens_the_zendesk_ticket(
        zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, fresh_postgres_url: str,
        tmp_path: Path) -> None:
    """Daemon A creates the ticket of a conversation (slowly); meanwhile the customer writes again and
    daemon B delivers. B must not open a second ticket: Zendesk would keep both."""
    view = ZendeskView(zendesk_sandbox)
    jane = "+14155550123"
    view.add_known(jane, "Doe")
    view.ready()
    zd: Any = zendesk_sandbox.emulator
    zd.configure(job_reads_per_step=0)
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    settings = write_sandbox_settings(tmp_path, {"zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url},
                                      state_url=fresh_postgres_url, enabled=("zendesk", "twilio"))
    tune_settings(settings, {"delivery.batch_size": 1})  # A claims the first message alone
    config = load_config(settings)
    creating = zd.faults.add(Fault(kind="slow", path=r"/tickets/create_many\.json", times=1, delay=2.0))
    with build_hub(config) as a, build_hub(config) as b:
        a.sync_once()  # the user mirror, loaded once for both
        sent = datetime.now(UTC) - timedelta(minutes=5)
        tw.receive_message(jane, OURS, "My parcel is late", at=sent)
        tw.receive_message(jane, OURS, "Any news?", at=sent + timedelta(minutes=1))
        delivering = threading.Thread(target=a.sync_once)  # polls both, routes both, claims the first
        delivering.start()
        try:
            wait_for(lambda: creating.hits == 1, 30, "A's ticket creation in flight")
            b.route_and_deliver()  # while A's create_many waits in the emulator
        finally:
            delivering.join(timeout=30)
        b.route_and_deliver()
    [ticket] = zd.tickets()
    assert [c["body"] for c in zd.comments(ticket["id"])] == ["My parcel is late", "Any news?"]


@pytest.mark.postgres
def test_daemons_polling_and_routing_the_same_new_messages_at_once_all_succeed(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, fresh_postgres_url: str,
        tmp_path: Path) -> None:
    """Two daemons poll a new store's first page together, then route its 150 messages from new senders
    together; neither may fail."""
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    sent = datetime.now(UTC) - timedelta(minutes=30)
    for n in range(150):
        tw.receive_message(f"+1415555{4000 + n}", OURS, f"hello {n}", at=sent + timedelta(seconds=n))
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      state_url=fresh_postgres_url)
    config = load_config(settings)
    with build_hub(config) as a, build_hub(config) as b:
        errors = at_once([a.polls()["twilio"], b.polls()["twilio"]])  # each saves the stream's first cursor
        errors += at_once([lambda hub=hub: process_pending(hub.store, hub.router, list(hub.crms), now=hub.clock(),
                                                          identity=hub.identity) for hub in (a, b)])
        with a.store.transaction() as session:
            counts = outbox_counts(session), ledger_counts(session)
    assert errors == []
    assert counts == ({("salesforce", "pending"): 150}, {"sms": 150})


@pytest.mark.postgres
def test_daemons_mirroring_the_same_new_contacts_at_once_both_succeed(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, fresh_postgres_url: str,
        tmp_path: Path) -> None:
    """Daemons started together each load the contact mirror at once; neither may fail on the other's rows."""
    view = SalesforceView(salesforce_sandbox)
    for n in range(150):
        view.add_known(f"+1415555{4000 + n}", f"Person{n}")
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      state_url=fresh_postgres_url)
    config = load_config(settings)
    with build_hub(config) as a, build_hub(config) as b:
        errors = at_once([lambda hub=hub: hub.refresh_mirror("salesforce") for hub in (a, b)])
        with a.store.transaction() as session:
            mirrored = session.scalar(select(func.count()).select_from(MirrorRow))
    assert errors == []
    assert mirrored == 150


def at_once(calls: list[Callable[[], object]]) -> list[Exception]:
    """Run the calls on threads, released together; the exceptions they raised."""
    barrier = threading.Barrier(len(calls))
    errors: list[Exception] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait(timeout=10)
        try:
            call()
        except Exception as exc:  # noqa: BLE001  # collected for the test's assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a call hung"
    return errors
