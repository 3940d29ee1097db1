"""Email in HubSpot: a customer's mail and the agent's reply are Email engagements on the contact and ticket.

A real Dovecot and Postfix, Salesforce (where the agent answers) and
HubSpot. Jane's mail and the agent's reply (its sent copy, the echo) each
land in HubSpot once as an `emails` record, even when HubSpot's answer to
the batch create is lost, and a state store started afresh in front of the
same HubSpot and mailbox adopts them instead of writing them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.store.ledger import open_dead_letters
from tests.email.mailserver import MailServer
from tests.email.messages import JANE, SUPPORT, customer_mail
from tests.email.test_email_end_to_end import email_settings, salesforce_agent


@contextmanager
def hub_in(directory: Path, urls: dict[str, str], mail_server: MailServer) -> Iterator[Hub]:
    with build_hub(load_config(email_settings(directory, urls, mail_server, ("salesforce", "hubspot")))) as hub:
        yield hub


def settle(hub: Hub, cycles: int = 2) -> None:
    for _ in range(cycles):
        cycle = hub.sync_once()
        assert not cycle.failures, cycle.failures
    with hub.store.transaction() as session:
        dead = open_dead_letters(session)
    assert dead == [], [d.reason for d in dead]


def emails(hs: Any) -> dict[str, dict[str, Any]]:
    """HubSpot's email engagements by direction, each with its properties and associated contacts and tickets."""
    out: dict[str, dict[str, Any]] = {}
    for email in hs.objects("emails"):
        props = email["properties"]
        assert props["hs_email_direction"] not in out, "two emails of one direction: written twice"
        out[props["hs_email_direction"]] = {
            "key": props["crmhub_key"], "text": props["hs_email_text"], "from": props.get("hs_email_from_email"),
            "to": props.get("hs_email_to_email"), "contacts": set(hs.associated("emails", email["id"], "contacts")),
            "tickets": set(hs.associated("emails", email["id"], "tickets"))}
    return out


def test_the_mail_and_the_agents_reply_are_hubspot_emails_once_under_a_lost_answer_and_a_fresh_store(
        mail_server: MailServer, salesforce_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    sf, agent = salesforce_agent(salesforce_sandbox)
    hs: Any = hubspot_sandbox.emulator
    contact = hs.add("contacts", firstname="Jane", email=JANE)
    hs.faults.add(Fault("reset", path="emails/batch/create", after=True, times=1))  # lands, its answer lost
    urls = {"salesforce": salesforce_sandbox.url, "hubspot": hubspot_sandbox.url}

    with hub_in(tmp_path / "lost", urls, mail_server) as hub:
        mail_server.deliver(customer_mail(JANE, "m1@customers.test", "My parcel is late", subject="Parcel"),
                            SUPPORT, sender=JANE)
        settle(hub)
        assert [f["hits"] for f in hs.faults.list()] == [1]
        [ticket] = hs.objects("tickets")
        [case] = sf.records("Case")
        agent.CaseComment.create({"ParentId": case["Id"], "CommentBody": "It leaves today.", "IsPublished": True})
        settle(hub)
        mail_server.await_messages(JANE, 1)
        mail_server.await_messages(SUPPORT, 2)  # our own copy of the reply is back in the mailbox
        settle(hub)
    landed = emails(hs)
    assert landed == {
        "INCOMING_EMAIL": {"key": "email:m1@customers.test", "text": "Parcel\n\nMy parcel is late", "from": JANE,
                           "to": SUPPORT, "contacts": {contact}, "tickets": {ticket["id"]}},
        "EMAIL": {"key": landed["EMAIL"]["key"], "text": "It leaves today.", "from": SUPPORT, "to": JANE,
                  "contacts": {contact}, "tickets": {ticket["id"]}}}
    assert hs.objects("notes") == [] and hs.objects("communications") == []

    with hub_in(tmp_path / "fresh", urls, mail_server) as fresh:  # the store is lost: the mailbox is read again
        settle(fresh, cycles=3)
        assert emails(hs) == landed and len(hs.objects("tickets")) == 1
    shown = CliRunner().invoke(app, ["status", "--config", str(tmp_path / "fresh" / "settings.yaml")])
    assert shown.exit_code == 0, shown.output
    assert "adopted from hubspot: 1 cases, 2 emails" in shown.output, shown.output
