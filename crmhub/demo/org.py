"""The demo org, seeded into whichever emulators are running: one function for `crmhub demo` and `crmhub sandbox`.

It matches the embedded default settings (crmhub/defaults/settings.yaml and
mappings/): the Salesforce queues routing.yaml names, our Twilio number and
WhatsApp sender, and customers who already exist in each CRM. The X support
account (@crmhub_support) and Zendesk's "Support" group and HubSpot's
Support Pipeline exist in every fresh emulator already.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from crmhub.demo import cast
from crmhub.sandbox import Emulator
from crmhub.sandbox.replay import replay_events, seed_crms
from crmhub.sandbox.serve import Prepare
from crmhub.sandbox.traffic import Endpoints, generate
from crmhub.sandbox.x.models import DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_ID


def seed_org(emulators: Mapping[str, Emulator]) -> None:
    """Queues, contacts, an agent and our numbers, in each of `emulators` (API name -> emulator) present."""
    salesforce: Any = emulators.get("salesforce")
    if salesforce is not None:
        for developer_name in cast.QUEUES:
            salesforce.add_queue(developer_name.replace("_", " "), developer_name)
        for contact in cast.CONTACTS:
            fields = dict(contact)
            salesforce.insert(fields.pop("sobject"), **fields)
        salesforce.add_user(cast.AGENT[0], "agent-password", name=cast.AGENT[1])
    twilio: Any = emulators.get("twilio")
    if twilio is not None:
        twilio.add_number(cast.OUR_NUMBER)
        twilio.add_number(cast.OUR_WHATSAPP)  # WhatsApp senders are numbers too
    zendesk: Any = emulators.get("zendesk")
    if zendesk is not None:
        for first, last, phone in cast.CUSTOMERS:
            zendesk.add_user(f"{first} {last}", phone=phone)
    hubspot: Any = emulators.get("hubspot")
    if hubspot is not None:
        for first, last, phone in cast.CUSTOMERS:
            hubspot.add("contacts", firstname=first, lastname=last, phone=phone)


def sandbox_preparation(*, seed: bool = True, traffic: int | None = None) -> Prepare:
    """What `crmhub sandbox` does to fresh emulators: the demo org (unless `--empty`), then a replayed day."""

    def prepare(emulators: Mapping[str, Emulator]) -> list[str]:
        notes = []
        if seed:
            seed_org(emulators)
            notes.append("Seeded the demo org: Salesforce queues Support/Billing/VIP, Jane, Bob and Ana; "
                         f"Twilio {cast.OUR_NUMBER} and WhatsApp {cast.OUR_WHATSAPP}; X @{DEFAULT_ACCOUNT}.")
        if traffic is not None:
            notes.append(replay_day(emulators, traffic))
        return notes

    return prepare


def replay_day(emulators: Mapping[str, Emulator], seed: int) -> str:
    """A generated day of traffic (the last 24 hours) addressed to our numbers and X account; a summary line."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    plan = replace(generate(seed, days=1, start=start),
                   endpoints=Endpoints(sms_number=cast.OUR_NUMBER, whatsapp_number=cast.OUR_WHATSAPP,
                                       x_user_id=DEFAULT_ACCOUNT_ID, x_handle=DEFAULT_ACCOUNT))
    seeded = seed_crms(plan, emulators)
    report = replay_events(plan, emulators)
    records = sum(seeded.created.values())
    return (f"Replayed traffic seed {seed}: {records} CRM records and {report.replayed} of the plan's "
            f"{report.events} channel items of the last 24 hours (what the emulators cannot replay: "
            "docs/sandbox/traffic.md).")
