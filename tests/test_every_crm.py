"""One conversation, three CRMs: Salesforce, Zendesk and HubSpot each hold it once, on the matched customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from tests.crm_views import zendesk_bodies

OURS = "+14155550100"


def test_messages_reach_every_crm_once(salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer,
                                       hubspot_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
                                       tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    hs: Any = hubspot_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    contact = sf.insert("Contact", LastName="Doe", Phone="(415) 555-0123")
    user = zd.add_user(name="Jane Doe", phone="+1 415 555 0123", email="jane@example.com")
    hs_contact = hs.add("contacts", firstname="Jane", mobilephone="415.555.0123")
    zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute's changes
    tw.add_number(OURS)
    start = datetime.now(UTC) - timedelta(hours=1)
    tw.receive_message("+14155550123", OURS, "My parcel is late", at=start)
    tw.receive_message("+14155550123", OURS, "Any news?", at=start + timedelta(minutes=5))
    urls = {"salesforce": salesforce_sandbox.url, "zendesk": zendesk_sandbox.url, "hubspot": hubspot_sandbox.url,
            "twilio": twilio_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls, enabled=("salesforce", "zendesk", "hubspot", "twilio"))
    with build_hub(load_config(settings)) as hub:
        first = hub.sync_once()
        second = hub.sync_once()
    assert [d.delivered for d in first.deliveries] == [2, 2, 2]
    assert [d.delivered for d in second.deliveries] == [0, 0, 0]

    assert {t["WhoId"] for t in sf.records("Task")} == {contact} and len(sf.records("Task")) == 2
    [ticket] = zd.tickets()
    assert ticket["requester_id"] == user
    bodies = zendesk_bodies(zd, ticket["id"])
    assert bodies.count("My parcel is late") == 1 and bodies.count("Any news?") == 1
    assert all(c["author_id"] == user and c["public"] for c in zd.comments(ticket["id"]))

    [hs_ticket] = hs.objects("tickets")
    messages = hs.objects("communications")
    assert sorted(m["properties"]["hs_communication_body"] for m in messages) == ["Any news?", "My parcel is late"]
    assert all(m["properties"]["hs_communication_channel_type"] == "SMS" for m in messages)
    for message in messages:
        assert set(hs.associated("communications", message["id"], "contacts")) == {hs_contact}
        assert set(hs.associated("communications", message["id"], "tickets")) == {hs_ticket["id"]}
    assert len(hs.objects("contacts")) == 1  # matched, not created
