"""The org changes under crmhub: an admin merges or deletes a contact in the CRM (issue 14 item 4).

Each test drives a whole hub against the emulators through the real SDKs:
a customer with two records of one CRM (a flagged conflict) writes, an agent
replies from the CRM, then the admin merges the two records (as `crmhub
conflicts list` advises) or deletes one, and the customer writes again. The
next message lands on the record that is left, no write dead-letters, the
conflict closes itself, and the agent's reply is never sent again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.contacts import PublicMergeInput
from urllib3.util.retry import Retry
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket

from crmhub.app import Cycle, Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer
from crmhub.store import conflicts
from crmhub.store.ledger import open_dead_letters
from tests.crm_views import zendesk_messages
from tests.test_replies import Clock, sent_messages, settings_for

OURS = "+14155550100"
CUSTOMER = "+14155550123"


def _say(kit: Any, text: str, minutes_ago: int = 0) -> None:
    """The customer texts us, at sandbox time: the session's one clock may be ahead of the wall clock."""
    kit.tw.receive_message(CUSTOMER, OURS, text, at=kit.tw.clock.now() - timedelta(minutes=minutes_ago))


def _settled(hub: Hub) -> tuple[list[Any], list[tuple[str, str | None]]]:
    """The open dead letters and every conflict as (crm, resolution)."""
    with hub.store.transaction() as session:
        return (open_dead_letters(session),
                [(c.crm, c.resolution) for c in conflicts.listing(session, include_resolved=True)])


def _deliver_without_mirror(hub: Hub) -> None:
    """Poll, route and deliver, without refreshing the mirror: the write itself meets the gone record.

    Zendesk's jobs are waited for, as `crmhub sync` does, so one call is one whole delivery.
    """
    for poll in hub.polls().values():
        poll()
    hub.route_job()
    for name in hub.crms:
        cycle = Cycle()
        hub.deliver_to(name, cycle)
        assert not cycle.failures, cycle.failures


# ---- Salesforce ----------------------------------------------------------------------------------
@dataclass
class SalesforceOrg:
    hub: Hub
    sf: Any
    tw: Any
    agent: Any
    older: str
    twin: str

    def reply(self, body: str) -> None:
        [case] = self.sf.records("Case")
        self.agent.CaseComment.create({"ParentId": case["Id"], "CommentBody": body, "IsPublished": True})


@pytest.fixture
def sforg(salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[SalesforceOrg]:
    from simple_salesforce import Salesforce

    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    older = sf.insert("Contact", LastName="Doe", FirstName="Jane", Phone="(415) 555-0123",
                      CreatedDate="2024-01-01T00:00:00.000+0000")
    twin = sf.insert("Contact", LastName="Doe", FirstName="J.", Phone="+1 415 555 0123")
    sf.add_user("alice@acme.test", "alice-password", name="Alice Agent")
    agent = Salesforce(instance_url=salesforce_sandbox.url, session_id=sf.issue_token("alice@acme.test"),
                       session=build_session(base_url=salesforce_sandbox.url))
    tw.add_number(OURS)
    urls = {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url}
    with build_hub(load_config(settings_for(tmp_path, urls, ("salesforce", "twilio"))), clock=Clock()) as hub:
        org = SalesforceOrg(hub, sf, tw, agent, older, twin)
        _say(org, "My parcel is late", minutes_ago=2)
        hub.sync_once()
        org.reply("Sorry, it leaves the warehouse today.")
        hub.sync_once()
        assert {t["WhoId"] for t in sf.records("Task")} == {older}  # the conflict's primary: the older record
        assert len(sent_messages(tw)) == 1
        yield org


def _assert_salesforce_moved(org: SalesforceOrg, fate: str) -> None:
    tasks = org.sf.records("Task")
    assert sorted(t["Description"] for t in tasks) == ["Any news?", "My parcel is late"]  # each once, no echo
    assert {t["WhoId"] for t in tasks} == {org.twin}
    [case] = org.sf.records("Case")
    assert case["ContactId"] == org.twin and {t["WhatId"] for t in tasks} == {case["Id"]}
    dead, flagged = _settled(org.hub)
    assert dead == []
    assert flagged == [("salesforce", f"{org.older} {fate} in salesforce; crmhub writes to {org.twin}")]
    assert len(sent_messages(org.tw)) == 1  # the agent's reply went out once, and never again


def test_a_salesforce_merge_moves_the_person_onto_the_surviving_contact(sforg: SalesforceOrg) -> None:
    sforg.sf.merge("Contact", sforg.twin, sforg.older)  # the admin keeps the newer record
    _say(sforg, "Any news?")
    sforg.hub.sync_once()
    sforg.hub.sync_once()
    _assert_salesforce_moved(sforg, f"merged into {sforg.twin}")


def test_a_salesforce_deletion_moves_the_person_onto_the_record_left(sforg: SalesforceOrg) -> None:
    sforg.agent.Contact.delete(sforg.older)  # REST DELETE: to the recycle bin
    _say(sforg, "Any news?")
    sforg.hub.sync_once()
    sforg.hub.sync_once()
    _assert_salesforce_moved(sforg, "deleted")


def test_a_salesforce_write_that_meets_a_merged_contact_retargets_instead_of_dead_lettering(
        sforg: SalesforceOrg) -> None:
    sforg.sf.merge("Contact", sforg.twin, sforg.older)
    _say(sforg, "Any news?")
    _deliver_without_mirror(sforg.hub)  # the Task names the merged-away contact: refused, its fate read back
    assert not [t for t in sforg.sf.records("Task") if t["Description"] == "Any news?"]
    _deliver_without_mirror(sforg.hub)  # due again at once, for the survivor
    [task] = [t for t in sforg.sf.records("Task") if t["Description"] == "Any news?"]
    assert task["WhoId"] == sforg.twin
    sforg.hub.sync_once()
    _assert_salesforce_moved(sforg, f"merged into {sforg.twin}")


# ---- HubSpot -------------------------------------------------------------------------------------
@dataclass
class HubSpotPortal:
    hub: Hub
    hs: Any
    tw: Any
    admin: HubSpot  # the admin's own API client
    url: str
    older: str
    twin: str

    def reply(self, body: str) -> None:
        """An agent logs an outbound SMS on the ticket (Communications API), as in tests/test_replies.py."""
        [ticket] = self.hs.objects("tickets")
        answer = requests.post(f"{self.url}/crm/v3/objects/communications", timeout=10,
                               headers={"Authorization": "Bearer sandbox-token"},
                               json={"properties": {"hs_communication_channel_type": "SMS",
                                                    "hs_communication_logged_from": "CRM",
                                                    "hs_communication_body": body,
                                                    "hs_timestamp": self.hs.clock.now().isoformat()},
                                     "associations": [{"to": {"id": ticket["id"]}, "types": [
                                         {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 83}]}]})
        assert answer.status_code == 201, answer.text

    def ours(self) -> list[dict[str, Any]]:
        """crmhub's communications (they carry its key), oldest first."""
        return [c for c in self.hs.objects("communications") if c["properties"].get("crmhub_key")]


@pytest.fixture
def hsportal(hubspot_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[HubSpotPortal]:
    hs: Any = hubspot_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    older = hs.add("contacts", firstname="Jane", mobilephone="415.555.0123", createdate="2024-01-01T00:00:00.000Z")
    twin = hs.add("contacts", firstname="J.", phone="+1 415 555 0123")
    tw.add_number(OURS)
    urls = {"hubspot": hubspot_sandbox.url, "twilio": twilio_sandbox.url}
    admin = HubSpot(access_token="sandbox-token", host=hubspot_sandbox.url, base_url=hubspot_sandbox.url,
                    retry=Retry(total=0))
    with build_hub(load_config(settings_for(tmp_path, urls, ("hubspot", "twilio"))), clock=Clock()) as hub:
        portal = HubSpotPortal(hub, hs, tw, admin, hubspot_sandbox.url, older, twin)
        _say(portal, "My parcel is late", minutes_ago=2)
        hub.sync_once()
        portal.reply("Sorry, it leaves the warehouse today.")
        hub.sync_once()
        [first] = portal.ours()
        assert set(hs.associated("communications", first["id"], "contacts")) == {older}
        assert len(sent_messages(tw)) == 1
        yield portal


def _assert_hubspot_moved(portal: HubSpotPortal, survivor: str, fate: str) -> None:
    ours = portal.ours()
    assert sorted(c["properties"]["hs_communication_body"] for c in ours) == ["Any news?", "My parcel is late"]
    for communication in ours:
        assert set(portal.hs.associated("communications", communication["id"], "contacts")) == {survivor}
    [ticket] = portal.hs.objects("tickets")
    assert set(portal.hs.associated("tickets", ticket["id"], "contacts")) == {survivor}
    dead, flagged = _settled(portal.hub)
    assert dead == []
    [(crm, resolution)] = flagged
    assert crm == "hubspot" and resolution is not None
    assert resolution.endswith(f"{fate} in hubspot; crmhub writes to {survivor}"), resolution
    assert len(sent_messages(portal.tw)) == 1


def _merge(portal: HubSpotPortal) -> str:
    """The admin merges the older record into the twin: HubSpot makes a new record of both."""
    merged = portal.admin.crm.contacts.basic_api.merge(
        public_merge_input=PublicMergeInput(primary_object_id=portal.twin, object_id_to_merge=portal.older))
    assert merged.id not in (portal.twin, portal.older)
    return str(merged.id)


def test_a_hubspot_merge_moves_the_person_onto_the_merged_record(hsportal: HubSpotPortal) -> None:
    survivor = _merge(hsportal)
    _say(hsportal, "Any news?")
    hsportal.hub.sync_once()
    hsportal.hub.sync_once()
    _assert_hubspot_moved(hsportal, survivor, f"merged into {survivor}")


def test_a_hubspot_deletion_moves_the_person_onto_the_record_left(hsportal: HubSpotPortal) -> None:
    hsportal.admin.crm.contacts.basic_api.archive(contact_id=hsportal.older)
    _say(hsportal, "Any news?")
    hsportal.hub.sync_once()
    hsportal.hub.sync_once()
    _assert_hubspot_moved(hsportal, hsportal.twin, "deleted")


def test_a_hubspot_write_that_meets_a_merged_contact_retargets_instead_of_dead_lettering(
        hsportal: HubSpotPortal) -> None:
    survivor = _merge(hsportal)
    _say(hsportal, "Any news?")
    _deliver_without_mirror(hsportal.hub)  # its contact is gone: refused, its fate read back
    assert [c["properties"]["hs_communication_body"] for c in hsportal.ours()] == ["My parcel is late"]
    _deliver_without_mirror(hsportal.hub)
    [news] = [c for c in hsportal.ours() if c["properties"]["hs_communication_body"] == "Any news?"]
    assert set(hsportal.hs.associated("communications", news["id"], "contacts")) == {survivor}
    hsportal.hub.sync_once()
    _assert_hubspot_moved(hsportal, survivor, f"merged into {survivor}")


# ---- Zendesk -------------------------------------------------------------------------------------
@dataclass
class ZendeskAccount:
    hub: Hub
    zd: Any
    tw: Any
    agent: Zenpy  # a human agent's (here: an admin's) own API client
    older: int
    twin: int

    def ticket(self) -> int:
        [ticket] = self.zd.tickets()
        return int(ticket["id"])

    def reply(self, body: str) -> None:
        self.agent.tickets.update(Ticket(id=self.ticket(), comment=Comment(body=body, public=True)))
        self.zd.clock.advance(61)  # the incremental exports leave out the last minute

    def bodies(self) -> list[str]:
        return [text for c in self.zd.comments(self.ticket()) for text, _ in zendesk_messages(c)]


@pytest.fixture
def zdaccount(zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
              tmp_path: Path) -> Iterator[ZendeskAccount]:
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    # Two end users sharing the customer's number (a family phone, a duplicate): one person to crmhub.
    older = zd.add_user(name="Jane Doe", phone="+1 415 555 0123", shared_phone_number=True)
    zd.clock.advance(5)
    twin = zd.add_user(name="J. Doe", phone="(415) 555-0123", shared_phone_number=True)
    zd.add_agent("alice@acme.test", "Alice", role="admin", token="alice-token")
    zd.clock.advance(120)
    tw.add_number(OURS)
    urls = {"zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url}
    with build_hub(load_config(settings_for(tmp_path, urls, ("zendesk", "twilio"))), clock=Clock()) as hub:
        for connector in hub.crms.values():
            connector.job_poll_first = 0.05  # type: ignore[union-attr]  # Zendesk jobs finish on the first read
        agent = Zenpy(subdomain="sandbox", email="alice@acme.test", token="alice-token",
                      session=build_session(base_url=zendesk_sandbox.url))
        account = ZendeskAccount(hub, zd, tw, agent, older, twin)
        _say(account, "My parcel is late", minutes_ago=2)
        hub.sync_once()
        assert zd.tickets()[0]["requester_id"] == older
        account.reply("Sorry, it leaves the warehouse today.")
        hub.sync_once()
        assert len(sent_messages(tw)) == 1
        yield account


def _assert_zendesk_moved(account: ZendeskAccount, fate: str) -> None:
    [ticket] = account.zd.tickets()
    assert ticket["requester_id"] == account.twin
    bodies = account.bodies()
    assert sorted(b for b in bodies if "warehouse" not in b) == ["Any news?", "My parcel is late"]  # each once
    assert bodies.count("Sorry, it leaves the warehouse today.") == 1
    dead, flagged = _settled(account.hub)
    assert dead == []
    assert flagged == [("zendesk", f"{account.older} {fate} in zendesk; crmhub writes to {account.twin}")]
    assert len(sent_messages(account.tw)) == 1


def test_a_zendesk_user_merge_moves_the_person_onto_the_user_merged_into(zdaccount: ZendeskAccount) -> None:
    zdaccount.agent.users.merge(zdaccount.older, zdaccount.twin)  # PUT /users/{older}/merge {"user": {"id": twin}}
    zdaccount.zd.clock.advance(61)
    _say(zdaccount, "Any news?")
    zdaccount.hub.sync_once()
    zdaccount.hub.sync_once()
    # Zendesk does not say which user absorbed the merged one: to crmhub it is deleted, and the twin left holds the person.
    _assert_zendesk_moved(zdaccount, "deleted")


def test_a_zendesk_user_deletion_moves_the_person_onto_the_user_left(zdaccount: ZendeskAccount) -> None:
    zdaccount.agent.users.delete(zdaccount.agent.users(id=zdaccount.older))
    zdaccount.zd.clock.advance(61)
    _say(zdaccount, "Any news?")
    zdaccount.hub.sync_once()
    zdaccount.hub.sync_once()
    _assert_zendesk_moved(zdaccount, "deleted")


def test_a_zendesk_ticket_for_a_deleted_user_retargets_instead_of_dead_lettering(zdaccount: ZendeskAccount) -> None:
    first = zdaccount.ticket()
    zdaccount.agent.tickets.update(Ticket(id=first, status="closed"))
    zdaccount.zd.clock.advance(61)
    zdaccount.hub.sync_once()  # crmhub learns the ticket is closed: the next message opens a new one
    zdaccount.agent.users.delete(zdaccount.agent.users(id=zdaccount.older))
    _say(zdaccount, "Any news?")
    _deliver_without_mirror(zdaccount.hub)  # the new ticket names the deleted requester: refused, its fate read back
    _deliver_without_mirror(zdaccount.hub)
    [second] = [t for t in zdaccount.zd.tickets() if t["id"] != first]
    assert second["requester_id"] == zdaccount.twin
    zdaccount.hub.sync_once()
    dead, flagged = _settled(zdaccount.hub)
    assert dead == []
    assert flagged == [("zendesk", f"{zdaccount.older} deleted in zendesk; crmhub writes to {zdaccount.twin}")]
    assert len(sent_messages(zdaccount.tw)) == 1


def test_a_hubspot_write_that_meets_an_archived_contact_retargets_instead_of_dead_lettering(
        hsportal: HubSpotPortal) -> None:
    hsportal.admin.crm.contacts.basic_api.archive(contact_id=hsportal.older)
    _say(hsportal, "Any news?")
    _deliver_without_mirror(hsportal.hub)  # refused; the batch read with archived=true finds it in the bin
    assert [c["properties"]["hs_communication_body"] for c in hsportal.ours()] == ["My parcel is late"]
    _deliver_without_mirror(hsportal.hub)
    [news] = [c for c in hsportal.ours() if c["properties"]["hs_communication_body"] == "Any news?"]
    assert set(hsportal.hs.associated("communications", news["id"], "contacts")) == {hsportal.twin}
    hsportal.hub.sync_once()
    _assert_hubspot_moved(hsportal, hsportal.twin, "deleted")


# ---- A gone case ---------------------------------------------------------------------------------
# An admin deletes the case crmhub's conversation threads into (or merges it away: the CRM refuses the write the
# same way) before the customer writes again. The write is refused for its case, not its contact: the thread's
# case is forgotten and the write goes again at once, opening the conversation's next case on the same contact.
def test_a_salesforce_write_whose_case_was_deleted_opens_the_next_case_instead_of_dead_lettering(
        sforg: SalesforceOrg) -> None:
    [gone] = sforg.sf.records("Case")
    sforg.agent.Case.delete(gone["Id"])
    _say(sforg, "Any news?")
    _deliver_without_mirror(sforg.hub)  # the Task names the deleted Case: refused, the thread's case forgotten
    _deliver_without_mirror(sforg.hub)
    [case] = sforg.sf.records("Case")
    [task] = [t for t in sforg.sf.records("Task") if t["Description"] == "Any news?"]
    assert case["Id"] != gone["Id"] and task["WhatId"] == case["Id"] and case["ContactId"] == task["WhoId"]
    sforg.hub.sync_once()
    assert _settled(sforg.hub)[0] == []
    assert len(sent_messages(sforg.tw)) == 1


def test_a_salesforce_reopen_of_a_deleted_case_opens_the_next_case_instead_of_dead_lettering(
        sforg: SalesforceOrg) -> None:
    """The Case closed (crmhub reads that), then deleted: the next message, within the reopen window, would reopen it;
    the Case update is refused as deleted, and the message opens the next Case."""
    [gone] = sforg.sf.records("Case")
    sforg.agent.Case.update(gone["Id"], {"Status": "Closed"})
    sforg.hub.sync_once()  # crmhub learns the Case is closed: a message within the window reopens it
    sforg.agent.Case.delete(gone["Id"])
    _say(sforg, "Any news?")
    _deliver_without_mirror(sforg.hub)
    _deliver_without_mirror(sforg.hub)
    [case] = sforg.sf.records("Case")
    [task] = [t for t in sforg.sf.records("Task") if t["Description"] == "Any news?"]
    assert case["Id"] != gone["Id"] and task["WhatId"] == case["Id"] and case["Status"] != "Closed"
    assert _settled(sforg.hub)[0] == []


def test_a_hubspot_write_whose_ticket_was_deleted_opens_the_next_ticket_instead_of_dead_lettering(
        hsportal: HubSpotPortal) -> None:
    [gone] = hsportal.hs.objects("tickets")
    hsportal.admin.crm.tickets.basic_api.archive(ticket_id=gone["id"])
    _say(hsportal, "Any news?")
    _deliver_without_mirror(hsportal.hub)
    _deliver_without_mirror(hsportal.hub)
    [ticket] = hsportal.hs.objects("tickets")
    [news] = [c for c in hsportal.ours() if c["properties"]["hs_communication_body"] == "Any news?"]
    assert ticket["id"] != gone["id"]
    assert set(hsportal.hs.associated("communications", news["id"], "tickets")) == {ticket["id"]}
    hsportal.hub.sync_once()
    assert _settled(hsportal.hub)[0] == []
    assert len(sent_messages(hsportal.tw)) == 1


def test_a_hubspot_write_whose_ticket_was_merged_away_opens_the_next_ticket_instead_of_dead_lettering(
        hsportal: HubSpotPortal) -> None:
    """An agent merges crmhub's ticket into one of their own: HubSpot makes a new record of both, and the ticket
    crmhub knows no longer exists. crmhub does not follow the merge (the new record is the agent's case, not the
    conversation's): the next message opens the conversation's next ticket."""
    [gone] = hsportal.hs.objects("tickets")
    theirs = hsportal.hs.add("tickets", subject="an agent's own ticket", hs_pipeline="0", hs_pipeline_stage="1")
    hsportal.admin.crm.tickets.basic_api.merge(
        public_merge_input=PublicMergeInput(primary_object_id=theirs, object_id_to_merge=gone["id"]))
    _say(hsportal, "Any news?")
    _deliver_without_mirror(hsportal.hub)
    _deliver_without_mirror(hsportal.hub)
    [news] = [c for c in hsportal.ours() if c["properties"]["hs_communication_body"] == "Any news?"]
    [ticket] = hsportal.hs.associated("communications", news["id"], "tickets")
    assert str(ticket) not in (gone["id"], theirs)
    [ours] = [t for t in hsportal.hs.objects("tickets") if t["id"] == str(ticket)]
    assert ours["properties"]["crmhub_conversation"].endswith("#2")  # the conversation's next ticket
    hsportal.hub.sync_once()
    assert _settled(hsportal.hub)[0] == []


def test_a_zendesk_write_whose_ticket_was_closed_for_good_opens_the_next_ticket_instead_of_dead_lettering(
        zdaccount: ZendeskAccount) -> None:
    """Closed as a ticket merge leaves the tickets it merged away (ticket deletion is not emulated), before crmhub
    reads the ticket's state: the comment is refused for its ticket."""
    gone = zdaccount.ticket()
    zdaccount.agent.tickets.update(Ticket(id=gone, status="closed"))
    _say(zdaccount, "Any news?")
    _deliver_without_mirror(zdaccount.hub)
    _deliver_without_mirror(zdaccount.hub)
    [ticket] = [t for t in zdaccount.zd.tickets() if t["id"] != gone]
    assert [text for c in zdaccount.zd.comments(ticket["id"]) for text, _ in zendesk_messages(c)] == ["Any news?"]
    zdaccount.hub.sync_once()
    assert _settled(zdaccount.hub)[0] == []
    assert len(sent_messages(zdaccount.tw)) == 1
