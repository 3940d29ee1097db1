"""A shared number (blocked in identities.yaml) never ties a message to a customer's record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings

OURS = "+14155550100"
SWITCHBOARD = "+15550001234"  # matches the example blocklist pattern ^\+1555000


def test_a_blocked_number_is_recorded_but_never_matched_or_made_a_contact(
        salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.insert("Contact", LastName="Reception", Phone="+1 (555) 000-1234")  # a switchboard on someone's record
    reception = zd.add_user(name="Reception", phone="+1 555 000 1234")
    zendesk_users = len(zd.users())
    zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute
    tw.add_number(OURS)
    tw.receive_message(SWITCHBOARD, OURS, "Hello, calling from the front desk", at=datetime.now(UTC) - timedelta(hours=1))
    urls = {"salesforce": salesforce_sandbox.url, "zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls, enabled=("salesforce", "zendesk", "twilio"))
    with build_hub(load_config(settings)) as hub:
        cycle = hub.sync_once()
    assert [d.delivered for d in cycle.deliveries] == [1, 1]
    [task] = sf.records("Task")
    assert task["WhoId"] is None and task["WhatId"]  # recorded and routed, on no one's history
    assert len(sf.records("Contact")) == 1  # and no contact made of the shared number
    [ticket] = zd.tickets()
    assert ticket["requester_id"] != reception  # not on the receptionist's history
    assert len(zd.users()) == zendesk_users  # and no user made of the shared number
