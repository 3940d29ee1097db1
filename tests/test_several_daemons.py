"""Several daemons on one PostgreSQL state store.

Three `crmhub run` processes, one of them SIGKILLed at random and restarted
again and again, deliver to all three CRMs: every message must be in every
CRM exactly once, on the one case of its conversation, the outbox must
drain, and no job may fail on another daemon's rows. They run one settings
file, but each logs in to Salesforce as its own integration user (its
connected app's credentials come from its environment), so the Tasks'
`CreatedById` shows that they shared the work.

In-process tests pin the races the daemons ran into, each with two hubs on
one store: a follow-up claimed by one daemon while another still created
the conversation's Zendesk ticket (whose external id Zendesk does not keep
unique), and two daemons polling, routing or mirroring the same new items
at once.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crmhub.app import Cycle, build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.ledger import ledger_counts
from crmhub.store.outbox import outbox_counts
from crmhub.store.schema import MirrorRow
from crmhub.sync.process import process_pending
from tests.crm_views import (
    OURS, SalesforceView, VIEWS, ZendeskView, assert_each_message_once, duplicate_contacts, sms_traffic, zendesk_bodies,
)
from tests.daemons import Daemon, drain_and_stop, kill_loop, tune_settings, wait_for

DAEMONS = 3
MESSAGES = 48
KILLS = 5
SEED = 11


@pytest.mark.slow
@pytest.mark.postgres
def test_three_daemons_on_one_postgresql_store_write_each_message_once(
        salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
        twilio_sandbox: EmulatorServer, fresh_postgres_url: str, tmp_path: Path) -> None:
    servers = {"salesforce": salesforce_sandbox, "zendesk": zendesk_sandbox, "hubspot": hubspot_sandbox}
    views = [VIEWS[name](server) for name, server in servers.items()]
    traffic = sms_traffic(twilio_sandbox, views, known=30, unknown=5, messages=MESSAGES, seed=SEED)
    for view in views:  # kills land mid-write (Salesforce's batch is one Composite, where it was three calls)
        delay = 0.3 if isinstance(view, SalesforceView) else 0.1
        view.em.faults.add(Fault(kind="slow", path=view.bulk_writes, times=None, delay=delay))
    zd: Any = zendesk_sandbox.emulator
    # As in test_crash_safety: jobs done well inside the lease; restarts read the exports often.
    zd.configure(job_reads_per_step=0, job_autocomplete_seconds=0.5, incremental_per_minute=100)
    urls = {name: server.url for name, server in servers.items()} | {"twilio": twilio_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls, state_url=fresh_postgres_url, enabled=[*servers, "twilio"],
                                      every="1s")  # webhooks stay off: no port to share
    # A live daemon renews the lease of a batch it still writes (a Zendesk batch of follow-ups on one ticket
    # takes a job, at least a second, per comment); a victim's rows wait for its last lease to end.
    tune_settings(settings, {"delivery.batch_size": 5, "delivery.lease": "10s", "run.shutdown_grace": "10s",
                             "crms.salesforce.auth.client_id": "env:CRMHUB_TEST_SF_CLIENT_ID",
                             "crms.salesforce.auth.client_secret": "env:CRMHUB_TEST_SF_CLIENT_SECRET"})
    sf: Any = salesforce_sandbox.emulator
    daemons, user_of = [], {}
    for n in range(DAEMONS):
        username = f"crmhub-daemon-{n}@sandbox.test"
        user_of[sf.add_user(username, f"password-{n}")] = n
        sf.add_oauth_client(f"daemon-{n}-client", f"daemon-{n}-secret", run_as=username)
        daemons.append(Daemon(settings, tmp_path / f"daemon-{n}.log",
                              env={"CRMHUB_TEST_SF_CLIENT_ID": f"daemon-{n}-client",
                                   "CRMHUB_TEST_SF_CLIENT_SECRET": f"daemon-{n}-secret"}))

    def delivered() -> int:
        """Messages written, summed over the CRMs."""
        return sum(len(view.written()) for view in views)

    rng = random.Random(SEED)
    try:
        loop = kill_loop(daemons, kills=KILLS, rng=rng, progress=delivered,
                         finished=lambda: delivered() >= MESSAGES * len(views), total=MESSAGES * len(views),
                         moment=(0.5, 2.0))
        drain_and_stop(daemons, fresh_postgres_url, lambda: delivered() >= MESSAGES * len(views), deadline=90)
    finally:
        for daemon in daemons:
            daemon.ensure_dead()

    for view in views:
        assert_each_message_once(view, traffic.senders)
    writers = Counter(user_of.get(task["CreatedById"]) for task in sf.records("Task"))
    failed_jobs = [line for d in daemons for line in d.text().splitlines() if "job failed" in line]
    print(f"\nseveral daemons: {loop.kills} SIGKILLs (messages in the CRMs at each kill: {loop.progress_at_kill}), "
          f"{loop.elapsed:.1f}s; Salesforce Tasks by daemon: {dict(writers)}; failed job runs: {len(failed_jobs)}; "
          f"duplicate contacts of unknown senders: {({v.name: duplicate_contacts(v, traffic.unknown) for v in views})}")
    assert None not in writers, writers  # every Task written by one of the daemons
    assert len(writers) > 1, f"one daemon did all the work: {writers}"
    # Daemons sharing the store must not trip over each other's rows (a unique key hit fails the whole job run).
    assert not [line for line in failed_jobs if "IntegrityError" in line], failed_jobs
    assert loop.kills >= 3, f"only {loop.kills} kills happened before everything was delivered"


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
    assert zendesk_bodies(zd, ticket["id"]) == ["My parcel is late", "Any news?"]


LEASE = timedelta(seconds=2)  # short, for this test only: the held batch outlives it several times


@pytest.mark.postgres
@pytest.mark.parametrize("crm", list(VIEWS))
def test_a_batch_outliving_its_lease_is_not_claimed_by_another_daemon_while_it_is_written(
        crm: str, request: pytest.FixtureRequest, twilio_sandbox: EmulatorServer, fresh_postgres_url: str,
        tmp_path: Path) -> None:
    """Daemon A's batch waits in the CRM three leases long (a slow bulk write); daemon B tries to deliver all
    along. A renews its lease, so B claims nothing, and each message is in the CRM once."""
    view = VIEWS[crm](request.getfixturevalue(f"{crm}_sandbox"))
    view.seed()
    senders = {f"+1415555{n:04d}": f"Message {n}" for n in range(3)}
    for n, phone in enumerate(senders):
        view.add_known(phone, f"Doe{n}")
    view.ready()
    if isinstance(view, ZendeskView):
        view.em.configure(job_reads_per_step=0)
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    settings = write_sandbox_settings(tmp_path, {crm: view.server.url, "twilio": twilio_sandbox.url},
                                      state_url=fresh_postgres_url, enabled=(crm, "twilio"))
    tune_settings(settings, {"delivery.lease": f"{LEASE.total_seconds():.0f}s"})
    config = load_config(settings)
    held = view.em.faults.add(Fault(kind="slow", path=view.bulk_writes, times=1, delay=3 * LEASE.total_seconds()))
    with build_hub(config) as a, build_hub(config) as b:
        a.sync_once()  # the contact mirror, loaded once for both
        sent = datetime.now(UTC) - timedelta(minutes=5)
        for phone, text in senders.items():
            tw.receive_message(phone, OURS, text, at=sent)
        cycles: dict[str, list[Cycle]] = {"a": [], "b": []}
        delivering = threading.Thread(target=lambda: cycles["a"].append(a.sync_once()))
        delivering.start()
        tried: list[datetime] = []
        try:
            wait_for(lambda: held.hits == 1, 30, "A's bulk write held in the CRM")
            lapsed = datetime.now(UTC) + LEASE  # A claimed before its write reached the CRM: its first lease ends
            while delivering.is_alive():  # B tries again and again while A's batch is written
                tried.append(datetime.now(UTC))
                cycles["b"].append(b.route_and_deliver())
                delivering.join(timeout=0.2)
        finally:
            delivering.join(timeout=60)
        assert any(at > lapsed for at in tried), "B never tried after A's first lease had run out"
        assert [f for c in cycles["a"] + cycles["b"] for f in c.failures] == []
        assert sum(r.delivered + r.retrying + r.dead for c in cycles["b"] for r in c.deliveries) == 0
        assert [r.leases_lost for r in cycles["a"][0].deliveries] == [0] and cycles["a"][0].deliveries[0].renewals
        with a.store.transaction() as session:
            assert outbox_counts(session) == {(crm, "done"): len(senders)}
    assert_each_message_once(view, {text: phone for phone, text in senders.items()})


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
