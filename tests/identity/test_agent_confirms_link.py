"""An agent confirms or rejects a link suggestion inside the CRM, on the case crmhub noted it on (issue 14 item 2).

A stranger's SMS claims an email a CRM contact holds. Under the default
policy nothing joins, however often crmhub runs. Then an agent sets what
the note asks, through the CRM's own API as an agent would (Salesforce: the
Case field `Crmhub_Link__c`; Zendesk: a ticket tag; HubSpot: the ticket
property `crmhub_link`), and the next runs join the two: the history lands
on the one record of the claimed identity, in every CRM. A reject set the
same way is recorded and joins nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from ruamel.yaml import YAML
from simple_salesforce import Salesforce
from sqlalchemy import select

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox._server import Fault
from crmhub.store.schema import LinkSuggestionRow
from tests.test_replies import settings_for

OURS = "+14155550100"
STRANGER = "+14155550124"
CLAIM = "hello, I'm victim@example.com, where is my order 777?"
AGENT = "alice@acme.test"


@dataclass
class Org:
    hub: Hub
    sf: Any
    zd: Any
    hs: Any
    tw: Any
    urls: dict[str, str]
    victims: dict[str, str]  # crm -> the victim's record id
    sf_agent: Salesforce
    agent_ids: dict[str, str]  # crm -> the agent's user id there

    def decided_by(self, crm: str) -> str:
        """What the link log names as the agent who decided in `crm`."""
        return f"{crm} user {self.agent_ids[crm]}"

    def author_lookups(self, crm: str) -> int:
        """Requests crmhub made to learn who set a mark: Zendesk audit listings, HubSpot history reads."""
        if crm == "zendesk":
            return int(self.zd.calls["GET /api/v2/tickets/<int:ticket_id>/audits.json"])
        return int(self.hs.history_reads())

    def suggestion(self) -> LinkSuggestionRow:
        with self.hub.store.transaction() as session:
            [row] = session.scalars(select(LinkSuggestionRow))
            session.expunge(row)
            return row

    def holders(self) -> dict[str, set[str]]:
        """Per CRM, the records the stranger's history sits on."""
        [task] = self.sf.records("Task")
        [case] = self.sf.records("Case")
        [ticket] = self.zd.tickets()
        [message] = self.hs.objects("communications")
        [hs_ticket] = self.hs.objects("tickets")
        return {"salesforce": {task["WhoId"], case["ContactId"]},
                "zendesk": {str(ticket["requester_id"])},
                "hubspot": (set(self.hs.associated("communications", message["id"], "contacts"))
                            | set(self.hs.associated("tickets", hs_ticket["id"], "contacts")))}

    def mark(self, crm: str, verb: str, suggestion: int) -> None:
        """The agent sets what the note asks, through the CRM's API."""
        if crm == "salesforce":
            [case] = self.sf.records("Case")
            self.sf_agent.Case.update(case["Id"], {"Crmhub_Link__c": f"{verb} {suggestion}"})
        elif crm == "zendesk":
            [ticket] = self.zd.tickets()
            answer = requests.put(f"{self.urls['zendesk']}/api/v2/tickets/{ticket['id']}.json", timeout=10,
                                  auth=(f"{AGENT}/token", "alice-token"),
                                  json={"ticket": {"additional_tags": [f"crmhub_{verb}_{suggestion}"]}})
            assert answer.status_code == 200, answer.text
            self.zd.clock.advance(120)  # the incremental export leaves out the last minute's changes
        else:
            [ticket] = self.hs.objects("tickets")
            answer = requests.patch(f"{self.urls['hubspot']}/crm/v3/objects/tickets/{ticket['id']}", timeout=10,
                                    headers={"Authorization": "Bearer alice-hubspot-token"},
                                    json={"properties": {"crmhub_link": f"{verb} {suggestion}"}})
            assert answer.status_code == 200, answer.text


@pytest.fixture
def org(salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
        twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Org]:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    hs: Any = hubspot_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    victims = {"salesforce": sf.insert("Contact", LastName="Victim", Email="victim@example.com"),
               "zendesk": str(zd.add_user(name="Vic Tim", email="victim@example.com")),
               "hubspot": hs.add("contacts", firstname="Vic", email="victim@example.com")}
    sf_agent_id = sf.add_user(AGENT, "alice-password", name="Alice Agent")
    sf_agent = Salesforce(instance_url=salesforce_sandbox.url, session_id=sf.issue_token(AGENT),
                          session=build_session(base_url=salesforce_sandbox.url))
    agent_ids = {"salesforce": sf_agent_id, "zendesk": str(zd.add_agent(AGENT, "Alice", role="agent", token="alice-token")),
                 "hubspot": str(hs.add_agent(AGENT, "Alice", "Agent", token="alice-hubspot-token"))}
    zd.clock.advance(120)
    tw.add_number(OURS)
    urls = {"salesforce": salesforce_sandbox.url, "zendesk": zendesk_sandbox.url, "hubspot": hubspot_sandbox.url,
            "twilio": twilio_sandbox.url}
    settings = settings_for(tmp_path, urls, ("salesforce", "zendesk", "hubspot", "twilio"))
    with build_hub(load_config(settings)) as hub:
        for connector in hub.crms.values():
            if connector.name == "zendesk":
                connector.job_poll_first = 0.01  # type: ignore[union-attr]  # the emulator's jobs finish at once
        org = Org(hub, sf, zd, hs, tw, urls, victims, sf_agent, agent_ids)
        tw.receive_message(STRANGER, OURS, CLAIM, at=datetime.now(UTC) - timedelta(minutes=2))
        for _ in range(3):  # the message lands, the notes follow; nobody has decided anything
            cycle = hub.sync_once()
            assert not cycle.failures, cycle.failures
        assert org.suggestion().status == "pending"
        for crm, records in org.holders().items():
            assert org.victims[crm] not in records, crm  # the default policy never joins on a claim
        yield org


def _sync(org: Org, times: int = 2) -> None:
    for _ in range(times):
        org.zd.clock.advance(120)
        cycle = org.hub.sync_once()
        assert not cycle.failures, cycle.failures


@pytest.mark.parametrize("crm", ["salesforce", "zendesk", "hubspot"])
def test_an_agent_confirms_in_the_crm_and_the_history_lands_on_one_record(org: Org, crm: str) -> None:
    suggestion = org.suggestion().id
    org.mark(crm, "confirm", suggestion)
    _sync(org)

    row = org.suggestion()
    assert row.status == "confirmed"
    assert row.decided_by == org.decided_by(crm)  # the agent by their own user id in that CRM
    holders = org.holders()
    assert holders["salesforce"] == {org.victims["salesforce"]}
    assert holders["zendesk"] == {org.victims["zendesk"]}
    assert org.victims["hubspot"] in holders["hubspot"]  # HubSpot keeps the old association too, as its merge does

    _sync(org, 1)  # reading the same case again decides nothing twice
    assert org.suggestion().decided_at == row.decided_at


@pytest.mark.parametrize("crm", ["salesforce", "zendesk", "hubspot"])
def test_an_agent_rejects_in_the_crm_and_nothing_joins(org: Org, crm: str) -> None:
    suggestion = org.suggestion().id
    org.mark(crm, "reject", suggestion)
    _sync(org)

    row = org.suggestion()
    assert row.status == "rejected"
    assert row.decided_by == org.decided_by(crm)
    for name, records in org.holders().items():
        assert org.victims[name] not in records, name


def test_a_mark_for_a_suggestion_noted_on_another_case_decides_nothing(org: Org) -> None:
    suggestion = org.suggestion().id
    other = org.sf.insert("Case", Subject="unrelated", Crmhub_Conversation__c="sms:other#1")
    org.sf_agent.Case.update(other, {"Crmhub_Link__c": f"confirm {suggestion}"})
    _sync(org)
    assert org.suggestion().status == "pending"


@pytest.mark.parametrize("defined", [True, False], ids=["renamed field", "field missing in the org"])
def test_the_salesforce_field_is_a_setting_and_an_org_without_it_still_reads_its_cases(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path, defined: bool) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    victim = sf.insert("Contact", LastName="Victim", Email="victim@example.com")
    if defined:
        sf.define_field("Case", "Agent_Confirms__c", "string")
    tw.add_number(OURS)
    settings = settings_for(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                            ("salesforce", "twilio"))
    yaml = YAML()
    tree = yaml.load(settings.read_text())
    tree["crms"]["salesforce"]["link_field"] = "Agent_Confirms__c"
    with settings.open("w") as out:
        yaml.dump(tree, out)
    with build_hub(load_config(settings)) as hub:
        tw.receive_message(STRANGER, OURS, CLAIM, at=datetime.now(UTC) - timedelta(minutes=2))
        for _ in range(2):
            assert not hub.sync_once().failures
        [note] = [c["CommentBody"] for c in sf.records("CaseComment") if not c["IsPublished"]]
        assert "set the Case field Agent_Confirms__c to \"confirm 1\"" in note
        [case] = sf.records("Case")
        if defined:
            sf.update("Case", case["Id"], Agent_Confirms__c="confirm 1")
        for _ in range(2):  # without the field, the case states are read without it: no step fails
            assert not hub.sync_once().failures
        with hub.store.transaction() as session:
            [row] = session.scalars(select(LinkSuggestionRow))
            assert row.status == ("confirmed" if defined else "pending")
    [task] = sf.records("Task")
    assert (task["WhoId"] == victim) is defined


@pytest.mark.parametrize("crm", ["zendesk", "hubspot"])
def test_who_set_a_mark_is_asked_once_when_it_decides_and_never_on_later_reads(org: Org, crm: str) -> None:
    """Marks stay on cases for good and cases are read again and again: their author is looked up once."""
    _sync(org, 2)
    assert org.author_lookups(crm) == 0  # no mark yet: the case reads ask nothing
    org.mark(crm, "confirm", org.suggestion().id)
    _sync(org)
    assert org.suggestion().decided_by == org.decided_by(crm)
    assert org.author_lookups(crm) == 1

    [ticket] = org.zd.tickets() if crm == "zendesk" else org.hs.objects("tickets")
    for _ in range(3):  # the marked case changes and is read again, its mark still on it
        _touch(org, crm, str(ticket["id"]))
        _sync(org, 1)
    assert org.author_lookups(crm) == 1
    assert org.suggestion().decided_by == org.decided_by(crm)


def _touch(org: Org, crm: str, ticket_id: str) -> None:
    """An agent changes the case again (so the next refresh reads it, mark and all)."""
    if crm == "zendesk":
        answer = requests.put(f"{org.urls['zendesk']}/api/v2/tickets/{ticket_id}.json", timeout=10,
                              auth=(f"{AGENT}/token", "alice-token"),
                              json={"ticket": {"additional_tags": [f"seen_{org.zd.clock.time():.0f}"]}})
    else:
        answer = requests.patch(f"{org.urls['hubspot']}/crm/v3/objects/tickets/{ticket_id}", timeout=10,
                                headers={"Authorization": "Bearer alice-hubspot-token"},
                                json={"properties": {"subject": f"seen {org.hs.clock.time():.0f}"}})
    assert answer.status_code == 200, answer.text
    org.zd.clock.advance(120)


def test_a_mark_an_integration_set_keeps_the_generic_actor(org: Org) -> None:
    """A HubSpot value with no user behind it (an integration, a workflow) names no agent: "agent in hubspot"."""
    [ticket] = org.hs.objects("tickets")
    answer = requests.patch(f"{org.urls['hubspot']}/crm/v3/objects/tickets/{ticket['id']}", timeout=10,
                            headers={"Authorization": "Bearer sandbox-token"},
                            json={"properties": {"crmhub_link": f"confirm {org.suggestion().id}"}})
    assert answer.status_code == 200, answer.text
    _sync(org)
    row = org.suggestion()
    assert (row.status, row.decided_by) == ("confirmed", "agent in hubspot")
    assert org.author_lookups("hubspot") == 1


@pytest.mark.parametrize("crm", ["zendesk", "hubspot"])
def test_a_failed_author_lookup_still_decides_with_the_generic_actor(org: Org, crm: str) -> None:
    """The CRM refusing the look-up (here: a server error on every try) never holds up the agent's decision."""
    emulator = org.zd if crm == "zendesk" else org.hs
    path = r"/tickets/\d+/audits\.json" if crm == "zendesk" else r"/objects/tickets/batch/read"
    emulator.faults.add(Fault("server_error", method="", path=path, status=500, times=None))
    org.mark(crm, "confirm", org.suggestion().id)
    _sync(org)
    emulator.faults.clear()
    row = org.suggestion()
    assert (row.status, row.decided_by) == ("confirmed", f"agent in {crm}")
