"""`crmhub run` SIGKILLed while it delivers (at observed progress), restarted, again and again, for each CRM.

Nothing may be doubled in the CRM: every message is there exactly once (by
its text and by crmhub's key), on the one case of its conversation, and no
conversation has two cases. Nothing is dead-lettered either: a claim the
kill cut short is no attempt (issue 13), so no write that landed ends dead. A second contact for an unknown sender is
asserted away where crmhub keys the contacts it creates (Salesforce
`Crmhub_Person__c`, Zendesk `external_id`) and reported for HubSpot, whose
search-then-create is not keyed (docs/roadmap.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from tests.crm_views import VIEWS, assert_each_message_once, duplicate_contacts, sms_traffic
from tests.daemons import Daemon, dead_outbox_rows, drain_and_stop, kill_loop, tune_settings

SEED = 7
KEYED_CONTACTS = ("salesforce", "zendesk")  # CRMs where crmhub upserts the contacts it creates by a key


@dataclass(frozen=True)
class Plan:
    """How much traffic and how many kills, sized so each CRM's test takes about 40 s on 2 cores."""

    messages: int
    kills: int
    batch_size: int  # rows a delivery run claims at once
    moment: tuple[float, float] = (0.2, 1.5)  # the first kill comes this many seconds after the run's first log
    delay: float = 0.1  # seconds each bulk write takes, so that kills land inside delivery runs


# Zendesk's bulk writes are jobs (users, tickets, comments), polled together from half a second on, and a
# batch's messages to one ticket fold into one comment, so its progress comes in steps: small batches and
# more messages, so that kills still land between them.
# Salesforce's first run routes all 120 messages (about 1.5 s) before it delivers: kills come later and
# writes are slower there, so that they land in delivery runs, not only in routing.
PLANS = {"salesforce": Plan(messages=120, kills=10, batch_size=5, moment=(1.0, 3.0), delay=0.25),
         "zendesk": Plan(messages=90, kills=6, batch_size=5, moment=(0.5, 3.5)),
         "hubspot": Plan(messages=80, kills=6, batch_size=5)}


@pytest.mark.slow
@pytest.mark.parametrize("crm", list(PLANS))
def test_sigkill_in_a_loop_doubles_nothing(crm: str, request: pytest.FixtureRequest,
                                          twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    server: EmulatorServer = request.getfixturevalue(f"{crm}_sandbox")
    view, plan = VIEWS[crm](server), PLANS[crm]
    traffic = sms_traffic(twilio_sandbox, [view], known=40, unknown=5, messages=plan.messages, seed=SEED)
    contacts_before = sum(view.phones().values())
    # Each bulk write is slowed (`plan.delay`), so a kill often lands mid-call, between the contact
    # create, the case create and the message write of one batch.
    view.em.faults.add(Fault(kind="slow", path=view.bulk_writes, times=None, delay=plan.delay))
    if crm == "zendesk":
        # Bulk jobs done within half a second, as Zendesk's workers usually are: well inside the
        # lease, so a job a killed daemon left queued is done before its rows come due again. Each
        # restart reads both incremental exports once, which Zendesk allows 10 times a minute.
        view.em.configure(job_reads_per_step=0, job_autocomplete_seconds=0.5, incremental_per_minute=100)
    settings = write_sandbox_settings(tmp_path, {crm: server.url, "twilio": twilio_sandbox.url},
                                      enabled=(crm, "twilio"), every="1s")
    tune_settings(settings, {"delivery.batch_size": plan.batch_size, "run.shutdown_grace": "10s",
                             "delivery.lease": "3s"})  # a killed daemon's rows come due again after 3 s
    db_url = f"sqlite:///{(tmp_path / 'crmhub.db').resolve()}"
    daemon = Daemon(settings, tmp_path / "daemon.log")
    rng = random.Random(SEED)
    try:
        loop = kill_loop([daemon], kills=plan.kills, rng=rng, progress=lambda: len(view.written()),
                         finished=lambda: len(view.written()) >= plan.messages, total=plan.messages,
                         moment=plan.moment)
        drain_and_stop([daemon], db_url, lambda: len(view.written()) >= plan.messages)
    finally:
        daemon.ensure_dead()

    assert_each_message_once(view, traffic.senders)
    assert dead_outbox_rows(db_url) == {}, "a write dead-lettered by the kills"
    print(f"\ncrash safety, {crm}: {loop.kills} SIGKILLs (messages in the CRM at each kill: "
          f"{loop.progress_at_kill}), {loop.elapsed:.1f}s; contacts created "
          f"{sum(view.phones().values()) - contacts_before} for {len(traffic.unknown)} unknown senders, "
          f"duplicates: {duplicate_contacts(view, traffic.unknown) or 'none'}, of known customers: "
          f"{duplicate_contacts(view, traffic.known) or 'none'}; {crm} calls {view.em.total_calls}")
    if crm in KEYED_CONTACTS:
        assert not duplicate_contacts(view, traffic.unknown), "a second contact for an unknown sender"
    assert loop.kills >= 3, f"only {loop.kills} kills happened before everything was delivered"
    mid_delivery = [n for n in loop.progress_at_kill if 0 < n < plan.messages]
    assert mid_delivery, f"no kill landed while messages were being written: {loop.progress_at_kill}"
