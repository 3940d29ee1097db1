"""Closed cases and the reopen window, in each CRM, through the whole daemon.

An agent closes (or reopens) crmhub's case in the CRM through the vendor's
API, as their own client would. The hub runs on the sandbox clock, and each
message's time is set when it reaches Twilio, so hours and days pass
without sleeping. Assertions read what the emulated CRM holds.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.tickets import SimplePublicObjectInput
from ruamel.yaml import YAML
from simple_salesforce import Salesforce
from typer.testing import CliRunner
from zenpy import Zenpy
from zenpy.lib.api_objects import Ticket

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer, SandboxClock
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.ledger import load_cursor
from crmhub.sync.threads import STREAM, refresh_threads
from tests.crm_views import zendesk_bodies

OURS = "+14155550100"
JANE = "+14155550123"
WINDOW = timedelta(hours=2)
CONVERSATION = f"sms:{OURS}:{JANE}"


class Agent:
    """What an agent does in one CRM, through its vendor API, and what the test reads back."""

    crm = ""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.em: Any = server.emulator

    def seed(self) -> None:
        """The CRM's own setup before crmhub runs (queues, a known customer)."""

    def cases(self) -> dict[str, dict[str, Any]]:
        """crmhub's cases by their key: {"id", "open", "queue_ok"}."""
        raise NotImplementedError

    def set_state(self, case_id: str, state: str) -> None:
        """Close (`closed`), close for good (`final`) or reopen (`open`) a case as an agent."""
        raise NotImplementedError

    def texts(self, case_id: str) -> list[str]:
        """The message texts written onto a case, oldest first."""
        raise NotImplementedError


class SalesforceAgent(Agent):
    crm = "salesforce"

    def seed(self) -> None:
        self.queues = {name: self.em.add_queue(name, name) for name in ("Support_Queue", "Billing_Queue", "VIP_Queue")}
        self.em.insert("Contact", LastName="Doe", Phone="(415) 555-0123")

    def cases(self) -> dict[str, dict[str, Any]]:
        return {c["Crmhub_Conversation__c"]: {"id": c["Id"], "open": not c["IsClosed"],
                                              "queue_ok": c["OwnerId"] == self.queues["Support_Queue"]}
                for c in self.em.records("Case")}

    def set_state(self, case_id: str, state: str) -> None:
        url = self.server.url  # a fresh session: simulated hours pass between the agent's visits
        sf = Salesforce(instance_url=url, session_id=self.em.issue_token(), session=build_session(base_url=url))
        sf.Case.update(case_id, {"Status": "Working" if state == "open" else "Closed"})

    def texts(self, case_id: str) -> list[str]:
        return [t["Description"] for t in self.em.records("Task") if t["WhatId"] == case_id]


class ZendeskAgent(Agent):
    crm = "zendesk"

    def seed(self) -> None:
        self.em.add_user(name="Jane Doe", phone="+1 415 555 0123")
        self.support = next(g["id"] for g in self.em.groups() if g["name"] == "Support")
        self.zd = Zenpy(subdomain="sandbox", email="agent@sandbox.zendesk.test", token="sandbox-token",
                        session=build_session(base_url=self.server.url), disable_cache=True)

    def cases(self) -> dict[str, dict[str, Any]]:
        return {t["external_id"]: {"id": str(t["id"]), "open": t["status"] not in ("solved", "closed"),
                                   "queue_ok": t["group_id"] == self.support, "status": t["status"]}
                for t in self.em.tickets()}

    def set_state(self, case_id: str, state: str) -> None:
        status = {"open": "open", "closed": "solved", "final": "closed"}[state]
        self.zd.tickets.update(Ticket(id=int(case_id), status=status))

    def texts(self, case_id: str) -> list[str]:
        return zendesk_bodies(self.em, int(case_id))


class HubSpotAgent(Agent):
    crm = "hubspot"

    def seed(self) -> None:
        self.em.add("contacts", firstname="Jane", mobilephone="415.555.0123")
        url = self.server.url
        self.client = HubSpot(access_token="sandbox-token", host=url, base_url=url)

    def cases(self) -> dict[str, dict[str, Any]]:
        out = {}
        for ticket in self.em.objects("tickets"):
            props = ticket["properties"]
            out[props["crmhub_conversation"]] = {"id": ticket["id"], "open": props["hs_pipeline_stage"] != "4",
                                                 "queue_ok": (props["hs_pipeline"], props["hs_pipeline_stage"])
                                                 in (("0", "1"), ("0", "4"))}
        return out

    def set_state(self, case_id: str, state: str) -> None:
        stage = "2" if state == "open" else "4"  # 2 "Waiting on contact" (open), 4 "Closed"
        self.client.crm.tickets.basic_api.update(case_id, SimplePublicObjectInput(properties={"hs_pipeline_stage":
                                                                                               stage}))

    def texts(self, case_id: str) -> list[str]:
        return [m["properties"]["hs_communication_body"] for m in self.em.objects("communications")
                if case_id in self.em.associated("communications", m["id"], "tickets")]


AGENTS = {"salesforce": SalesforceAgent, "zendesk": ZendeskAgent, "hubspot": HubSpotAgent}


class Story:
    """One CRM and Twilio on the sandbox clock, a hub over them, and the customer Jane texting."""

    def __init__(self, crm: EmulatorServer, twilio: EmulatorServer, clock: SandboxClock, tmp_path: Path,
                 agent: Agent) -> None:
        self.agent, self.clock = agent, clock
        self.twilio: Any = twilio.emulator
        self.twilio.add_number(OURS)
        agent.seed()
        settings = write_sandbox_settings(tmp_path, {agent.crm: crm.url, "twilio": twilio.url},
                                          enabled=(agent.crm, "twilio"))
        _set_reopen_window(settings, "2h")
        self.hub: Hub = build_hub(load_config(settings), clock=clock.now)

    def text(self, body: str) -> None:
        """Jane texts us now (sandbox time)."""
        self.twilio.receive_message(JANE, OURS, body, at=self.clock.now())

    def later(self, delta: timedelta) -> None:
        self.clock.advance(delta.total_seconds())

    def sync(self) -> None:
        """One cycle, a little later (Zendesk's exports leave out the last minute's changes)."""
        self.later(timedelta(minutes=2))
        cycle = self.hub.sync_once()
        assert cycle.failures == [], cycle.failures

    def case(self, seq: int) -> dict[str, Any]:
        return self.agent.cases()[f"{CONVERSATION}#{seq}"]


@pytest.fixture(params=list(AGENTS))
def story(request: pytest.FixtureRequest, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
          tmp_path: Path) -> Iterator[Story]:
    crm: str = request.param
    server: EmulatorServer = request.getfixturevalue(f"{crm}_sandbox")
    told = Story(server, twilio_sandbox, sandbox_clock, tmp_path, AGENTS[crm](server))
    yield told
    told.hub.close()


def test_closed_case_reopens_within_the_window_and_a_new_one_opens_after(story: Story) -> None:
    agent = story.agent
    story.text("My parcel is late")
    story.sync()
    first = story.case(1)
    assert first["open"] and first["queue_ok"]

    # The agent closes the case; Jane writes again 30 minutes later, but crmhub
    # only gets to it five hours on (a backlog): her message's own time counts.
    agent.set_state(first["id"], "closed")
    story.later(timedelta(minutes=30))
    story.text("It still has not arrived")
    story.later(timedelta(hours=5))
    story.sync()
    assert list(agent.cases()) == [f"{CONVERSATION}#1"]
    assert story.case(1)["open"] and story.case(1)["queue_ok"]
    assert agent.texts(first["id"]) == ["My parcel is late", "It still has not arrived"]

    # Closed again; three hours later (past the 2 h window) a message opens case #2 in the queue.
    agent.set_state(first["id"], "closed")
    story.sync()
    story.later(timedelta(hours=3))
    story.text("Another question")
    story.sync()
    assert sorted(agent.cases()) == [f"{CONVERSATION}#1", f"{CONVERSATION}#2"]
    second = story.case(2)
    assert second["open"] and second["queue_ok"] and second["id"] != first["id"]
    assert not story.case(1)["open"]
    assert agent.texts(second["id"]) == ["Another question"]
    assert agent.texts(first["id"]) == ["My parcel is late", "It still has not arrived"]

    # Nothing is written twice on the next cycle.
    story.sync()
    assert len(agent.cases()) == 2
    assert agent.texts(second["id"]) == ["Another question"]


def test_a_case_an_agent_reopened_counts_as_open(story: Story) -> None:
    agent = story.agent
    story.text("Hello")
    story.sync()
    case = story.case(1)
    agent.set_state(case["id"], "closed")
    story.sync()  # crmhub learns it is closed
    story.later(timedelta(hours=1))
    agent.set_state(case["id"], "open")  # ... and an agent opens it again
    story.later(timedelta(hours=4))  # far past the window of the close
    story.text("Still there?")
    story.sync()
    assert list(agent.cases()) == [f"{CONVERSATION}#1"]
    assert agent.texts(case["id"]) == ["Hello", "Still there?"]


def test_a_backlog_after_a_reopening_message_stays_on_the_reopened_case(story: Story) -> None:
    """Two messages delivered together: the first (within the window) reopens; the second, sent after the
    window but after that reopening too, follows it onto the same case."""
    agent = story.agent
    story.text("Hello")
    story.sync()
    case = story.case(1)
    agent.set_state(case["id"], "closed")
    story.sync()
    story.later(timedelta(minutes=30))
    story.text("One more thing")
    story.later(timedelta(hours=3))
    story.text("And another")
    story.sync()
    assert list(agent.cases()) == [f"{CONVERSATION}#1"] and story.case(1)["open"]
    assert agent.texts(case["id"]) == ["Hello", "One more thing", "And another"]


def test_the_case_cursor_is_kept(story: Story) -> None:
    story.text("Hello")
    story.sync()
    story.agent.set_state(story.case(1)["id"], "closed")
    story.sync()
    hub, crm = story.hub, story.agent.crm
    with hub.store.transaction() as session:
        cursor = load_cursor(session, crm, STREAM)
    assert cursor is not None
    before = story.agent.em.total_calls
    assert refresh_threads(hub.store, hub.crms[crm], now=story.clock.now()) == 0  # nothing changed since
    assert story.agent.em.total_calls - before == 1  # one page, from the saved cursor


@pytest.mark.parametrize("story", ["zendesk"], indirect=True)
def test_a_closed_zendesk_ticket_is_never_reopened(story: Story) -> None:
    """Zendesk refuses updates to a ticket in status `closed` (as opposed to `solved`): a new ticket opens."""
    story.text("Hello")
    story.sync()
    first = story.case(1)
    story.agent.set_state(first["id"], "final")
    story.sync()
    story.later(timedelta(minutes=10))  # well within the window
    story.text("One more thing")
    story.sync()
    assert story.case(1)["status"] == "closed"
    assert story.agent.texts(story.case(2)["id"]) == ["One more thing"]


def _set_reopen_window(settings: Path, window: str) -> None:
    yaml = YAML()
    data = yaml.load(settings.read_text())
    data["threads"]["reopen_window"] = window
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    settings.write_text(buffer.getvalue())


def test_routing_counts_a_case_the_message_reopens_as_open(story: Story, tmp_path: Path) -> None:
    """A `case_open: true` rule matches a message that reopens a recently closed case, not one that opens #2."""
    _add_follow_up_rule(tmp_path / "mappings" / "routing.yaml")
    story.hub.close()
    story.hub = build_hub(load_config(tmp_path / "settings.yaml"), clock=story.clock.now)
    agent = story.agent
    story.text("My parcel is late")
    story.sync()
    agent.set_state(story.case(1)["id"], "closed")
    story.sync()
    story.later(timedelta(minutes=30))
    story.text("It still has not arrived")  # within the window: reopens #1
    story.sync()
    agent.set_state(story.case(1)["id"], "closed")
    story.sync()
    story.later(timedelta(hours=3))
    story.text("A new question")  # past the window: opens #2
    story.sync()
    explained = {body: _explain(story, tmp_path / "settings.yaml", body) for body in ("My parcel is late", "It still has not arrived",
                                                             "A new question")}
    assert "rule 'follow-ups'" not in explained["My parcel is late"]
    assert "Routing: rule 'follow-ups'" in explained["It still has not arrived"]
    assert "tried follow-ups: no case is open" in explained["A new question"]
    assert sorted(agent.cases()) == [f"{CONVERSATION}#1", f"{CONVERSATION}#2"]


def _add_follow_up_rule(routing: Path) -> None:
    yaml = YAML()
    data = yaml.load(routing.read_text())
    data["rules"].insert(0, {"name": "follow-ups", "when": {"case_open": True},
                             "route": {"salesforce": {"queue": "support"}, "zendesk": {"queue": "support"},
                                       "hubspot": {"queue": "support"}}})
    with routing.open("w") as out:
        yaml.dump(data, out)


def _explain(story: Story, settings: Path, body: str) -> str:
    """What `crmhub explain sms:<sid>` prints for Jane's message with this text."""
    [sid] = [m["sid"] for m in story.twilio.snapshot()["messages"].values() if m["body"] == body]
    result = CliRunner().invoke(app, ["explain", f"sms:{sid}", "--config", str(settings)])
    assert result.exit_code == 0, result.output
    return result.output
