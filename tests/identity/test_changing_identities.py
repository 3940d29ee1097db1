"""Identities that change (issue 14 item 8): an X account renamed, a WhatsApp user known by username only.

An X account keeps its numeric id when renamed: crmhub keys the person by
the id, follows the new handle (its old one is no longer theirs, and anyone
may take it), and writes the new handle into the CRM's X handle field. A
WhatsApp user who hides their number behind a username writes from a
business-scoped user id (BSUID), an identity of its own, never read as a
phone number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce import Salesforce

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.store.ledger import open_dead_letters
from tests.crm_views import VIEWS, zendesk_messages
from tests.test_replies import Clock, sent_messages, settings_for


def _fast_jobs(hub: Any) -> None:
    for connector in hub.crms.values():
        if hasattr(connector, "job_poll_first"):
            connector.job_poll_first = 0.05  # Zendesk jobs finish on the first read


def _sync(hub: Any, em: Any) -> None:
    for _ in range(2):
        em.clock.advance(61)  # Zendesk's exports leave out the last minute and allow 10 reads a minute
        cycle = hub.sync_once()
        assert not cycle.failures, cycle.failures
    with hub.store.transaction() as session:
        assert open_dead_letters(session) == []


@dataclass(frozen=True)
class XHandleField:
    """Where a CRM keeps a contact's X handle, as the default identities.yaml maps it."""

    add: Callable[[Any], str]  # a contact holding @JaneDoe; returns its id
    handle: Callable[[Any, str], str]  # the handle the CRM holds now for that contact
    tasks: Callable[[Any], dict[str, str]]  # each message text -> the contact it is on
    lost: Fault  # the call setting the new handle, its answer lost


def _zendesk_tasks(zd: Any) -> dict[str, str]:
    return {text: str(t["requester_id"]) for t in zd.tickets() for c in zd.comments(t["id"])
            for text, _ in zendesk_messages(c)}


def _hubspot_tasks(hs: Any) -> dict[str, str]:
    """X items are notes ("X mention inbound from <handle>: <text>") on the contact."""
    return {n["properties"]["hs_note_body"].rpartition(": ")[2]: next(iter(hs.associated("notes", n["id"],
                                                                                         "contacts")), "")
            for n in hs.objects("notes")}


FIELDS = {
    "salesforce": XHandleField(
        add=lambda sf: sf.insert("Contact", LastName="Doe", FirstName="Jane", X_Handle__c="@JaneDoe"),
        handle=lambda sf, rid: next(c["X_Handle__c"] for c in sf.records("Contact") if c["Id"] == rid),
        tasks=lambda sf: {t["Description"]: t["WhoId"] for t in sf.records("Task")},
        lost=Fault("reset", method="POST", path="/composite$", after=True)),
    "zendesk": XHandleField(
        add=lambda zd: str(zd.add_user(name="Jane Doe", user_fields={"x_handle": "@JaneDoe"})),
        handle=lambda zd, rid: next(u["user_fields"]["x_handle"] for u in zd.users() if str(u["id"]) == rid),
        tasks=_zendesk_tasks, lost=Fault("reset", method="PUT", path="/users/update_many", after=True)),
    "hubspot": XHandleField(
        add=lambda hs: str(hs.add("contacts", firstname="Jane", twitterhandle="@JaneDoe")),
        handle=lambda hs, rid: next(c["properties"]["twitterhandle"] for c in hs.objects("contacts") if c["id"] == rid),
        tasks=_hubspot_tasks, lost=Fault("reset", method="POST", path="/objects/contacts/batch/update", after=True)),
}


@pytest.mark.parametrize("crm", sorted(FIELDS))
def test_a_renamed_x_account_stays_one_person_and_its_handle_follows_in_the_crm(
        crm: str, x_sandbox: EmulatorServer, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server: EmulatorServer = request.getfixturevalue(f"{crm}_sandbox")
    em: Any = server.emulator
    x: Any = x_sandbox.emulator
    view = VIEWS[crm](server)
    view.seed()
    field = FIELDS[crm]
    jane = field.add(em)
    view.ready()
    account = x.add_user("JaneDoe", "Jane Doe")
    x.post_mention(account, "where is my order?")
    urls = {crm: server.url, "x": x_sandbox.url}
    with build_hub(load_config(settings_for(tmp_path, urls, (crm, "x"))), clock=Clock()) as hub:
        _fast_jobs(hub)
        _sync(hub, em)
        x.rename_user(account, "JaneRenamed")
        x.post_mention(account, "any news on my order?")
        lost = em.faults.add(field.lost)  # the update lands, its answer does not: set again, harmlessly
        _sync(hub, em)
        assert lost.hits == 1
        # Mentions by the new handle reach the same person and contact; the CRM's field shows the new handle.
        on = field.tasks(em)
        assert {on[text] for text in on if "order" in text} == {jane}, on
        assert field.handle(em, jane) == "janerenamed"
        # The old handle is free on X: whoever takes it is somebody else, never Jane.
        stranger = x.add_user("JaneDoe", "Not Jane")
        x.post_mention(stranger, "hello, new here")
        _sync(hub, em)
    on = field.tasks(em)
    [hello] = [text for text in on if "new here" in text]
    assert on[hello] != jane
    assert len([text for text, contact in on.items() if contact == jane]) == 2


WHATSAPP = "+14155550199"  # the sandbox's WhatsApp sender (settings.yaml: channels.twilio.numbers)
BSUID = "US.13491208655302741918"  # a WhatsApp user who hides their number behind a username


def test_a_whatsapp_user_known_by_username_only_is_an_identity_of_its_own(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    tw.add_number(WHATSAPP)
    start = datetime.now(UTC) - timedelta(minutes=10)
    tw.receive_message(f"whatsapp:{BSUID}", f"whatsapp:{WHATSAPP}", "Hola, ¿tienen tienda?", at=start)
    tw.receive_message(f"whatsapp:{BSUID}", f"whatsapp:{WHATSAPP}", "¿Y en Madrid?", at=start + timedelta(minutes=1))
    urls = {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url}
    with build_hub(load_config(settings_for(tmp_path, urls, ("salesforce", "twilio"))), clock=Clock()) as hub:
        _sync(hub, sf)
        # One person, one contact made for them: no phone read out of the id, both messages on one case.
        [contact] = sf.records("Contact")
        assert contact["LastName"] == BSUID and not contact.get("Phone") and not contact.get("MobilePhone")
        tasks = sf.records("Task")
        assert sorted(t["Description"] for t in tasks) == ["Hola, ¿tienen tienda?", "¿Y en Madrid?"]
        assert {t["WhoId"] for t in tasks} == {contact["Id"]} and len({t["WhatId"] for t in tasks}) == 1
        [case] = sf.records("Case")
        assert case["Crmhub_Conversation__c"] == f"whatsapp:{WHATSAPP}:{BSUID}#1"
        # An agent's answer goes back to the same WhatsApp user, by that id.
        sf.add_user("alice@acme.test", "alice-password", name="Alice Agent")
        agent = Salesforce(instance_url=salesforce_sandbox.url, session_id=sf.issue_token("alice@acme.test"),
                           session=build_session(base_url=salesforce_sandbox.url))
        agent.CaseComment.create({"ParentId": case["Id"], "CommentBody": "Sí, en la Gran Vía.", "IsPublished": True})
        _sync(hub, sf)
    [sent] = sent_messages(tw)
    assert (sent["to"], sent["from"], sent["body"]) == (f"whatsapp:{BSUID}", f"whatsapp:{WHATSAPP}",
                                                        "Sí, en la Gran Vía.")
