"""Several daemons on one PostgreSQL state store.

In-process tests pin the races the daemons ran into, each with two hubs on
one store: a follow-up claimed by one daemon while another still created
the conversation's Zendesk ticket (whose external id Zendesk does not keep
unique).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from tests.crm_views import OURS, ZendeskView
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
