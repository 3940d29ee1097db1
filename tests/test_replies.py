"""Agents' replies made in a CRM reach the customer over the channel the conversation came from, exactly once.

Each test drives a whole hub against the emulators: a customer writes, crmhub
opens the case, an agent replies through the CRM's own API, and the test
asserts on what the channel emulator holds (the messages sent, from which
number, to whom) and on what the CRM holds afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from ruamel.yaml import YAML
from sqlalchemy import select
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.ops.deadletters import replay
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.x.models import DEFAULT_ACCOUNT_ID
from crmhub.store.ledger import open_dead_letters
from crmhub.store.schema import LedgerRow, OutboxRow, ReplyRow
from crmhub.webhooks import WebhookServer
from tests.crm_views import zendesk_messages

OURS = "+14155550100"
WHATSAPP = "+14155550199"
CUSTOMER = "+14155550123"


class Clock:
    """The hub's clock: real time plus what a test adds (so retry backoffs pass without waiting)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


def settings_for(tmp_path: Path, urls: dict[str, str], enabled: tuple[str, ...], **changes: Any) -> Path:
    """Sandbox settings for `enabled`, with fast retries (tests must not wait out a real backoff)."""
    path = write_sandbox_settings(tmp_path, urls, enabled=enabled)
    yaml = YAML()
    settings = yaml.load(path.read_text())
    settings["retry"].update({"initial_wait": "10ms", "max_wait": "50ms", "max_total": "10s"})
    for key, value in changes.items():
        settings[key].update(value)
    with path.open("w") as out:
        yaml.dump(settings, out)
    return path


def sent_messages(twilio: Any, to: str | None = None) -> list[dict[str, Any]]:
    """What the Twilio emulator sent (outbound messages), oldest first."""
    messages = [m for m in twilio.snapshot()["messages"].values() if m["direction"] == "outbound-api"]
    return sorted((m for m in messages if to is None or m["to"] == to), key=lambda m: m["_seq"])


def replies_of(hub: Hub) -> list[ReplyRow]:
    with hub.store.transaction() as session:
        return list(session.scalars(select(ReplyRow).order_by(ReplyRow.id)))


# ---- Zendesk -------------------------------------------------------------------------------------
@dataclass
class ZendeskKit:
    hub: Hub
    clock: Clock
    zd: Any
    tw: Any
    agent: Zenpy  # a human agent's own API client
    server: EmulatorServer

    def ticket(self) -> int:
        [ticket] = self.zd.tickets()
        return int(ticket["id"])

    def reply(self, body: str, *, public: bool = True) -> None:
        """The agent answers on the ticket through Zendesk's API, then a minute passes (the export's delay)."""
        self.agent.tickets.update(Ticket(id=self.ticket(), comment=Comment(body=body, public=public)))
        self.zd.clock.advance(61)

    def comments(self) -> list[dict[str, Any]]:
        return list(self.zd.comments(self.ticket()))


@pytest.fixture
def zendesk(zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[ZendeskKit]:
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    zd.add_user(name="Jane Doe", phone="+1 415 555 0123")
    zd.add_agent("alice@acme.test", "Alice", token="alice-token")
    zd.clock.advance(120)  # the incremental user export leaves out the last minute
    tw.add_number(OURS)
    tw.add_number(WHATSAPP)
    urls = {"zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url}
    clock = Clock()
    with build_hub(load_config(settings_for(tmp_path, urls, ("zendesk", "twilio"))), clock=clock) as hub:
        for connector in hub.crms.values():
            connector.job_poll_first = 0.05  # type: ignore[union-attr]  # Zendesk jobs finish on the first read
        agent = Zenpy(subdomain="sandbox", email="alice@acme.test", token="alice-token",
                      session=build_session(base_url=zendesk_sandbox.url))
        yield ZendeskKit(hub, clock, zd, tw, agent, zendesk_sandbox)


def test_the_daemons_job_reads_zendesk_replies_every_second_run_and_a_sync_every_time(zendesk: ZendeskKit) -> None:
    """Issue 13: Zendesk's export holds back the last minute anyway, so the 15 s job reads it every 30 s."""
    events = "GET /api/v2/incremental/ticket_events.json"
    zendesk.tw.receive_message(CUSTOMER, OURS, "My parcel is late")
    zendesk.hub.sync_once()
    zendesk.reply("Sorry Jane, it leaves the warehouse today.")
    zendesk.zd.calls.clear()

    zendesk.hub.replies_job()
    assert zendesk.zd.calls[events] == 1 and len(sent_messages(zendesk.tw, CUSTOMER)) == 1
    zendesk.clock.advance(seconds=15)
    zendesk.hub.replies_job()  # the next run of the job: no read
    assert zendesk.zd.calls[events] == 1
    zendesk.clock.advance(seconds=15)
    zendesk.hub.replies_job()  # the one after: a read
    zendesk.hub.sync_once()  # a cycle reads whatever the job did
    assert zendesk.zd.calls[events] == 3
    assert len(sent_messages(zendesk.tw, CUSTOMER)) == 1  # the reply went once


def test_a_zendesk_public_reply_is_texted_to_the_customer_once_from_the_number_they_wrote_to(
        zendesk: ZendeskKit) -> None:
    zendesk.tw.receive_message(CUSTOMER, OURS, "My parcel is late")
    zendesk.hub.sync_once()
    zendesk.reply("Sorry Jane, it leaves the warehouse today.")
    zendesk.reply("Internal: ask the warehouse", public=False)

    first = zendesk.hub.sync_once()
    second = zendesk.hub.sync_once()
    zendesk.clock.advance(minutes=5)
    third = zendesk.hub.sync_once()

    [sent] = sent_messages(zendesk.tw)
    assert (sent["from"], sent["to"], sent["body"]) == (OURS, CUSTOMER, "Sorry Jane, it leaves the warehouse today.")
    assert first.replies is not None and (first.replies.collected["zendesk"], first.replies.sent) == (1, 1)
    assert second.replies is not None and (second.replies.collected["zendesk"], second.replies.sent) == (0, 0)
    assert not first.failures and not second.failures and not third.failures
    [reply] = replies_of(zendesk.hub)
    assert (reply.status, reply.channel, reply.channel_message_id) == ("delivered", "sms", sent["sid"])
    # The echo is in the ledger; the ticket has the agent's comment once, not a second copy written by crmhub.
    with zendesk.hub.store.transaction() as session:
        echo = session.scalar(select(LedgerRow).where(LedgerRow.external_id == sent["sid"]))
        assert echo is not None and echo.direction == "outbound"
        box = session.scalar(select(OutboxRow).where(OutboxRow.interaction_id == echo.id))
        assert box is not None and (box.crm, box.status, box.result_ref) == ("zendesk", "done", f"reply:{reply.reply_ref}")
    bodies = [text for c in zendesk.comments() for text, _ in zendesk_messages(c)]
    assert bodies.count("Sorry Jane, it leaves the warehouse today.") == 1


def test_a_whatsapp_conversation_is_answered_on_whatsapp_from_our_sender(zendesk: ZendeskKit) -> None:
    zendesk.tw.receive_message(f"whatsapp:{CUSTOMER}", f"whatsapp:{WHATSAPP}", "Hola, ¿dónde está mi pedido?")
    zendesk.hub.sync_once()
    zendesk.reply("Llega mañana.")
    zendesk.hub.sync_once()
    [sent] = sent_messages(zendesk.tw)
    assert (sent["from"], sent["to"], sent["body"]) == (f"whatsapp:{WHATSAPP}", f"whatsapp:{CUSTOMER}", "Llega mañana.")


def test_a_send_whose_answer_is_lost_is_found_again_not_sent_twice(zendesk: ZendeskKit) -> None:
    zendesk.tw.receive_message(CUSTOMER, OURS, "Where is my refund?")
    zendesk.hub.sync_once()
    zendesk.reply("It was paid yesterday.")
    # Twilio takes the message, then the connection drops before the answer: the retry looks before sending.
    zendesk.tw.faults.add(Fault("reset", method="POST", path="Messages.json$", after=True))
    cycle = zendesk.hub.sync_once()
    assert not cycle.failures and [f["hits"] for f in zendesk.tw.faults.list()] == [1]
    [sent] = sent_messages(zendesk.tw)
    assert sent["body"] == "It was paid yesterday."
    [reply] = replies_of(zendesk.hub)
    assert reply.channel_message_id == sent["sid"] and reply.status in ("sent", "delivered")


def test_an_uncertain_send_left_by_the_last_run_is_checked_before_any_new_send(
        zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    zd.add_user(name="Jane Doe", phone="+1 415 555 0123")
    zd.add_agent("alice@acme.test", "Alice", token="alice-token")
    zd.clock.advance(120)
    tw.add_number(OURS)
    tw.receive_message(CUSTOMER, OURS, "Where is my refund?")
    urls = {"zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url}
    clock = Clock()
    settings = settings_for(tmp_path, urls, ("zendesk", "twilio"), retry={"max_attempts": 1})  # no retry in-call
    with build_hub(load_config(settings), clock=clock) as hub:
        hub.sync_once()
        [ticket] = zd.tickets()
        agent = Zenpy(subdomain="sandbox", email="alice@acme.test", token="alice-token",
                      session=build_session(base_url=zendesk_sandbox.url))
        agent.tickets.update(Ticket(id=ticket["id"], comment=Comment(body="Paid yesterday.", public=True)))
        zd.clock.advance(61)
        tw.faults.add(Fault("reset", method="POST", path="Messages.json$", after=True))
        hub.sync_once()  # sent, but the answer was lost: the run ends not knowing
        [reply] = replies_of(hub)
        assert (reply.status, reply.channel_message_id) == ("sending", None)
        clock.advance(minutes=2)  # the retry is due
        hub.sync_once()
    [sent] = sent_messages(tw)
    [reply] = replies_of(hub)
    assert reply.channel_message_id == sent["sid"] and reply.status in ("sent", "delivered")


def test_a_permanent_send_failure_is_a_dead_letter_and_a_private_note_on_the_ticket(zendesk: ZendeskKit) -> None:
    zendesk.tw.receive_message(CUSTOMER, OURS, "Where is my order?")
    zendesk.tw.receive_message(CUSTOMER, OURS, "STOP")  # Twilio's opt-out: no more messages from this number
    zendesk.hub.sync_once()
    zendesk.reply("It ships tomorrow.")
    cycle = zendesk.hub.sync_once()
    assert sent_messages(zendesk.tw) == []
    assert cycle.replies is not None and cycle.replies.dead == 1
    [reply] = replies_of(zendesk.hub)
    assert reply.status == "dead" and reply.noted_at is not None
    with zendesk.hub.store.transaction() as session:
        [letter] = open_dead_letters(session)
    assert letter.source == "reply:zendesk" and letter.ref == reply.reply_ref and "21610" in letter.reason
    [note] = [c for c in zendesk.comments() if c["body"].startswith("crmhub:")]
    assert not note["public"] and "START" in note["body"] and CUSTOMER in note["body"]
    zendesk.hub.sync_once()  # written once
    assert len([c for c in zendesk.comments() if c["body"].startswith("crmhub:")]) == 1
    # The customer texts START; ops replay the dead letter; the reply goes out, once.
    zendesk.tw.receive_message(CUSTOMER, OURS, "START")
    with zendesk.hub.store.transaction() as session:
        assert replay(session, letter.id, now=zendesk.clock()).resolved
    zendesk.hub.sync_once()
    zendesk.hub.sync_once()
    [sent] = sent_messages(zendesk.tw)
    assert (sent["to"], sent["body"]) == (CUSTOMER, "It ships tomorrow.")


def test_replies_on_tickets_crmhub_did_not_open_and_customers_comments_are_not_sent(zendesk: ZendeskKit) -> None:
    zendesk.tw.receive_message(CUSTOMER, OURS, "Hello?")
    zendesk.hub.sync_once()
    other = zendesk.zd.add_ticket("Printer on fire", "help", zendesk.zd.add_user(name="Bob"))
    zendesk.agent.tickets.update(Ticket(id=other, comment=Comment(body="Not for crmhub", public=True)))
    zendesk.zd.clock.advance(61)
    cycle = zendesk.hub.sync_once()
    assert sent_messages(zendesk.tw) == []
    assert cycle.replies is not None and cycle.replies.ignored["zendesk"] == 1


def test_status_counts_show_in_crmhub_status_and_metrics(zendesk: ZendeskKit) -> None:
    from crmhub.status import store_status

    zendesk.tw.receive_message(CUSTOMER, OURS, "Hi")
    zendesk.hub.sync_once()
    zendesk.reply("Hello Jane")
    zendesk.hub.sync_once()
    zendesk.clock.advance(minutes=5)  # no status callback (webhooks off): the next run asks Twilio
    zendesk.hub.sync_once()
    report = store_status(zendesk.hub.store)
    assert report["replies"] == [{"crm": "zendesk", "channel": "sms", "status": "delivered", "count": 1}]
    sample: Callable[[str], float | None] = lambda status: zendesk.hub.metrics.sample(  # noqa: E731
        "crmhub_replies_total", {"crm": "zendesk", "channel": "sms", "status": status})
    assert (sample("pending"), sample("sent"), sample("delivered")) == (1.0, 1.0, 1.0)


# ---- Salesforce ----------------------------------------------------------------------------------
@dataclass
class SalesforceKit:
    hub: Hub
    clock: Clock
    sf: Any
    tw: Any
    agent: Any  # simple-salesforce, logged in as a human agent

    def case(self) -> str:
        [case] = self.sf.records("Case")
        return str(case["Id"])

    def comment(self, body: str, *, published: bool = True) -> None:
        self.agent.CaseComment.create({"ParentId": self.case(), "CommentBody": body, "IsPublished": published})

    def notes(self) -> list[dict[str, Any]]:
        return [c for c in self.sf.records("CaseComment") if not c["IsPublished"]]


@pytest.fixture
def salesforce(salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
               tmp_path: Path) -> Iterator[SalesforceKit]:
    from simple_salesforce import Salesforce

    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.insert("Contact", LastName="Doe", Phone="(415) 555-0123")
    sf.add_user("alice@acme.test", "alice-password", name="Alice Agent")
    agent = Salesforce(instance_url=salesforce_sandbox.url, session_id=sf.issue_token("alice@acme.test"),
                       session=build_session(base_url=salesforce_sandbox.url))
    tw.add_number(OURS)
    urls = {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url}
    clock = Clock()
    with build_hub(load_config(settings_for(tmp_path, urls, ("salesforce", "twilio"))), clock=clock) as hub:
        yield SalesforceKit(hub, clock, sf, tw, agent)


def test_a_published_case_comment_is_texted_once_and_an_unpublished_one_is_not(salesforce: SalesforceKit) -> None:
    salesforce.tw.receive_message(CUSTOMER, OURS, "My parcel is late")
    salesforce.hub.sync_once()
    salesforce.comment("Internal: ask the warehouse", published=False)
    salesforce.comment("Sorry, it leaves the warehouse today.")
    first = salesforce.hub.sync_once()
    salesforce.hub.sync_once()
    [sent] = sent_messages(salesforce.tw)
    assert (sent["from"], sent["to"], sent["body"]) == (OURS, CUSTOMER, "Sorry, it leaves the warehouse today.")
    assert first.replies is not None and first.replies.collected["salesforce"] == 1 and not first.failures
    # The echo is history for other CRMs only: no Task on the Case repeats the agent's comment.
    tasks = [t["Description"] for t in salesforce.sf.records("Task")]
    assert tasks == ["My parcel is late"]
    [reply] = replies_of(salesforce.hub)
    assert reply.channel_message_id == sent["sid"]


def test_crmhubs_own_case_comments_are_never_replies(salesforce: SalesforceKit) -> None:
    salesforce.tw.receive_message(CUSTOMER, OURS, "Hello")
    salesforce.hub.sync_once()
    salesforce.sf.insert("CaseComment", ParentId=salesforce.case(), CommentBody="by the integration user",
                         IsPublished=True)  # the seed API writes as crmhub's own user
    cycle = salesforce.hub.sync_once()
    assert sent_messages(salesforce.tw) == []
    assert cycle.replies is not None and cycle.replies.collected["salesforce"] == 0


def test_a_salesforce_reply_that_fails_is_an_unpublished_case_comment_once(salesforce: SalesforceKit) -> None:
    salesforce.tw.receive_message(CUSTOMER, OURS, "Where is it?")
    salesforce.tw.receive_message(CUSTOMER, OURS, "STOP")
    salesforce.hub.sync_once()
    salesforce.comment("It ships tomorrow.")
    salesforce.hub.sync_once()
    salesforce.hub.sync_once()
    assert sent_messages(salesforce.tw) == []
    [note] = salesforce.notes()
    assert note["ParentId"] == salesforce.case() and "21610" in note["CommentBody"]
    with salesforce.hub.store.transaction() as session:
        [letter] = open_dead_letters(session)
    assert letter.source == "reply:salesforce"


# ---- X (answered from Salesforce) -----------------------------------------------------------------
@dataclass
class XKit:
    hub: Hub
    clock: Clock
    sf: Any
    x: Any
    agent: Any
    customer: str  # the customer's X user id

    def comment(self, body: str) -> None:
        [case] = self.sf.records("Case")
        self.agent.CaseComment.create({"ParentId": case["Id"], "CommentBody": body, "IsPublished": True})

    def ours(self) -> list[dict[str, Any]]:
        """DM events we sent."""
        return [e for e in self.x.dm_events() if e["sender_id"] == DEFAULT_ACCOUNT_ID]


@pytest.fixture
def xkit(salesforce_sandbox: EmulatorServer, x_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[XKit]:
    from simple_salesforce import Salesforce

    sf: Any = salesforce_sandbox.emulator
    x: Any = x_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.insert("Contact", LastName="Doe", X_Handle__c="@JaneDoe")
    sf.add_user("alice@acme.test", "alice-password", name="Alice Agent")
    agent = Salesforce(instance_url=salesforce_sandbox.url, session_id=sf.issue_token("alice@acme.test"),
                       session=build_session(base_url=salesforce_sandbox.url))
    customer = x.add_user("janedoe", "Jane Doe")
    urls = {"salesforce": salesforce_sandbox.url, "x": x_sandbox.url}
    clock = Clock()
    with build_hub(load_config(settings_for(tmp_path, urls, ("salesforce", "x"))), clock=clock) as hub:
        yield XKit(hub, clock, sf, x, agent, customer)


def test_a_reply_on_a_dm_case_is_a_dm_to_the_customer_once(xkit: XKit) -> None:
    xkit.x.send_dm(xkit.customer, DEFAULT_ACCOUNT_ID, "my order number is 1234")
    xkit.hub.sync_once()
    xkit.comment("Thanks Jane, order 1234 ships today.")
    xkit.x.faults.add(Fault("reset", method="POST", path="/messages$", after=True))  # sent, answer lost
    first = xkit.hub.sync_once()
    second = xkit.hub.sync_once()
    assert [f["hits"] for f in xkit.x.faults.list()] == [1]  # the first DM's answer was lost
    [sent] = xkit.ours()
    assert sent["text"] == "Thanks Jane, order 1234 ships today."
    assert sent["dm_conversation_id"] == "-".join(sorted((xkit.customer, DEFAULT_ACCOUNT_ID), key=int))
    assert not first.failures and not second.failures
    [reply] = replies_of(xkit.hub)
    assert (reply.channel, reply.channel_message_id, reply.status) == ("x_dm", sent["id"], "sent")
    # The DM poll reads our message back: a repeat in the ledger, and no Task repeats the agent's comment.
    assert [t["Description"] for t in xkit.sf.records("Task")] == ["my order number is 1234"]


def test_a_reply_on_a_mention_case_is_a_reply_post_in_the_thread(xkit: XKit) -> None:
    mention = xkit.x.post_mention(xkit.customer, "where is my order?")
    xkit.hub.sync_once()
    xkit.comment("It ships today, Jane.")
    xkit.hub.sync_once()
    [post] = [t for t in xkit.x.tweets() if t["author_id"] == DEFAULT_ACCOUNT_ID]
    assert post["referenced_tweets"] == [{"type": "replied_to", "id": mention}]
    assert post["text"] == "@janedoe It ships today, Jane."
    [reply] = replies_of(xkit.hub)
    assert (reply.channel, reply.channel_message_id) == ("x_mention", post["id"])
    with xkit.hub.store.transaction() as session:  # the echo is in the ledger, for the other CRMs' history
        echo = session.scalar(select(LedgerRow).where(LedgerRow.external_id == post["id"]))
    assert echo is not None and echo.channel == "x_mention" and echo.direction == "outbound"


def test_a_reply_post_whose_answer_is_lost_is_found_on_our_timeline_not_posted_twice(xkit: XKit) -> None:
    mention = xkit.x.post_mention(xkit.customer, "where is my order?")
    xkit.hub.sync_once()
    xkit.comment("It ships today, Jane.")
    xkit.x.faults.add(Fault("reset", method="POST", path="/2/tweets$", after=True))  # posted, answer lost
    first = xkit.hub.sync_once()
    xkit.hub.sync_once()
    assert [f["hits"] for f in xkit.x.faults.list()] == [1] and not first.failures
    [post] = [t for t in xkit.x.tweets() if t["author_id"] == DEFAULT_ACCOUNT_ID]
    assert post["referenced_tweets"] == [{"type": "replied_to", "id": mention}]
    [reply] = replies_of(xkit.hub)
    assert (reply.status, reply.channel_message_id) == ("sent", post["id"])  # found by id, not guessed
    # Our own post, read back by the timeline poll, is the echo: never a second Task in Salesforce.
    assert len(xkit.sf.records("Task")) == 1


def test_x_refusing_the_dm_is_a_dead_letter_and_a_note_on_the_case(xkit: XKit) -> None:
    xkit.x.send_dm(xkit.customer, DEFAULT_ACCOUNT_ID, "hello?")
    with xkit.x.lock:
        xkit.x.state["users"][xkit.customer]["receives_your_dm"] = False  # the customer closed their DMs
    xkit.hub.sync_once()
    xkit.comment("Hello Jane!")
    cycle = xkit.hub.sync_once()
    assert xkit.ours() == [] and cycle.replies is not None and cycle.replies.dead == 1
    [note] = [c for c in xkit.sf.records("CaseComment") if not c["IsPublished"]]
    assert "does not accept DMs" in note["CommentBody"]
    with xkit.hub.store.transaction() as session:
        [letter] = open_dead_letters(session)
    assert letter.source == "reply:salesforce" and "403" in letter.reason


# ---- HubSpot -------------------------------------------------------------------------------------
@dataclass
class HubSpotKit:
    hub: Hub
    clock: Clock
    hs: Any
    tw: Any
    url: str

    def ticket(self) -> str:
        [ticket] = self.hs.objects("tickets")
        return str(ticket["id"])

    def log_message(self, body: str, *, associate_later: bool = False) -> str:
        """An agent logs an outbound SMS on the ticket through the Communications API; returns its id."""
        http = requests.Session()
        http.headers["Authorization"] = "Bearer sandbox-token"
        to_ticket = [{"to": {"id": self.ticket()},
                      "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 83}]}]
        body_json: dict[str, Any] = {"properties": {"hs_communication_channel_type": "SMS",
                                                    "hs_communication_logged_from": "CRM",
                                                    "hs_communication_body": body,
                                                    "hs_timestamp": datetime.now(UTC).isoformat()}}
        if not associate_later:
            body_json["associations"] = to_ticket
        answer = http.post(f"{self.url}/crm/v3/objects/communications", json=body_json, timeout=10)
        assert answer.status_code == 201, answer.text
        created = str(answer.json()["id"])
        if associate_later:
            linked = http.put(f"{self.url}/crm/v4/objects/communications/{created}/associations/default/tickets/"
                              f"{self.ticket()}", timeout=10)
            assert linked.status_code == 200, linked.text
        return created


@pytest.fixture
def hubspot(hubspot_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[HubSpotKit]:
    hs: Any = hubspot_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    hs.add("contacts", firstname="Jane", mobilephone="415.555.0123")
    tw.add_number(OURS)
    urls = {"hubspot": hubspot_sandbox.url, "twilio": twilio_sandbox.url}
    clock = Clock()
    with build_hub(load_config(settings_for(tmp_path, urls, ("hubspot", "twilio"))), clock=clock) as hub:
        yield HubSpotKit(hub, clock, hs, tw, hubspot_sandbox.url)


def test_an_sms_an_agent_logs_on_a_hubspot_ticket_is_sent_once(hubspot: HubSpotKit) -> None:
    hubspot.tw.receive_message(CUSTOMER, OURS, "My parcel is late")
    hubspot.hub.sync_once()
    logged = hubspot.log_message("Sorry Jane, it leaves today.")
    later = hubspot.log_message("And here is the tracking link.", associate_later=True)
    first = hubspot.hub.sync_once()
    hubspot.hub.sync_once()
    assert [(m["from"], m["to"], m["body"]) for m in sent_messages(hubspot.tw)] == [
        (OURS, CUSTOMER, "Sorry Jane, it leaves today."), (OURS, CUSTOMER, "And here is the tracking link.")]
    assert first.replies is not None and first.replies.collected["hubspot"] == 2 and not first.failures
    assert [r.reply_ref for r in replies_of(hubspot.hub)] == [logged, later]
    # crmhub's own communications (the customer's SMS, and no copy of the agent's) are never replies.
    bodies = sorted(c["properties"]["hs_communication_body"] for c in hubspot.hs.objects("communications"))
    assert bodies == ["And here is the tracking link.", "My parcel is late", "Sorry Jane, it leaves today."]


def test_a_hubspot_reply_that_fails_is_a_note_on_the_ticket_once(hubspot: HubSpotKit) -> None:
    hubspot.tw.receive_message(CUSTOMER, OURS, "Where is it?")
    hubspot.tw.receive_message(CUSTOMER, OURS, "STOP")
    hubspot.hub.sync_once()
    hubspot.log_message("It ships tomorrow.")
    hubspot.hub.sync_once()
    hubspot.hub.sync_once()
    assert sent_messages(hubspot.tw) == []
    [note] = [n for n in hubspot.hs.objects("notes") if "21610" in (n["properties"].get("hs_note_body") or "")]
    assert set(hubspot.hs.associated("notes", note["id"], "tickets")) == {hubspot.ticket()}
    with hubspot.hub.store.transaction() as session:
        [letter] = open_dead_letters(session)
    assert letter.source == "reply:hubspot"


# ---- delivery statuses and their write-back -----------------------------------------------------
def test_status_callbacks_are_persisted_on_the_reply_and_never_move_backwards(
        zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path, free_tcp_port: int) -> None:
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    zd.add_user(name="Jane Doe", phone="+1 415 555 0123")
    zd.add_agent("alice@acme.test", "Alice", token="alice-token")
    zd.clock.advance(120)
    tw.add_number(OURS)
    tw.receive_message(CUSTOMER, OURS, "Hi")
    public = f"http://127.0.0.1:{free_tcp_port}"
    settings = settings_for(tmp_path, {"zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url},
                            ("zendesk", "twilio"),
                            webhooks={"enabled": True, "port": free_tcp_port, "public_url": public})
    with build_hub(load_config(settings), clock=Clock()) as hub, \
            WebhookServer(hub.webhook_app(), port=free_tcp_port):
        hub.sync_once()
        agent = Zenpy(subdomain="sandbox", email="alice@acme.test", token="alice-token",
                      session=build_session(base_url=zendesk_sandbox.url))
        [ticket] = zd.tickets()
        agent.tickets.update(Ticket(id=ticket["id"], comment=Comment(body="Hello Jane", public=True)))
        zd.clock.advance(61)
        hub.sync_once()
        assert tw.wait_for_webhooks(timeout=10)
        callbacks = [h for h in tw.webhook_log() if h["kind"] == "message-status"]
        assert [h["params"]["MessageStatus"] for h in callbacks] == ["sending", "sent", "delivered"]
        assert all(h["url"] == f"{public}/webhooks/twilio/status" and h["status"] == 200 for h in callbacks)
        # Twilio may deliver late and twice: a late "sent" after "delivered" changes nothing.
        late = callbacks[1]
        assert requests.post(late["url"], data=late["params"], headers={"X-Twilio-Signature": late["signature"]},
                             timeout=5).status_code == 200
        [reply] = replies_of(hub)
        assert (reply.status, reply.channel_status) == ("delivered", "delivered")
        assert hub.metrics.sample("crmhub_replies_total",
                                  {"crm": "zendesk", "channel": "sms", "status": "delivered"}) == 1.0


def test_whatsapp_outside_the_24_hour_window_fails_and_the_ticket_says_why(zendesk: ZendeskKit) -> None:
    """crmhub's clock two hours behind Twilio's: it takes the window as open, Twilio refuses (63016).

    (With the clocks agreeing crmhub sends nothing outside the window: tests/test_whatsapp_window.py.)
    """
    zendesk.clock.offset = zendesk.tw.clock.now() - datetime.now(UTC) - timedelta(hours=2)
    day_ago = zendesk.tw.clock.now() - timedelta(hours=25)
    zendesk.tw.receive_message(f"whatsapp:{CUSTOMER}", f"whatsapp:{WHATSAPP}", "Hola", at=day_ago)
    zendesk.hub.sync_once()
    zendesk.reply("Sorry for the wait!")
    cycle = zendesk.hub.sync_once()
    assert cycle.replies is not None and cycle.replies.sent == 1  # Twilio took it...
    zendesk.clock.advance(minutes=5)  # ...and the next status read finds it failed (no callbacks: webhooks off)
    zendesk.hub.sync_once()
    [reply] = replies_of(zendesk.hub)
    assert (reply.status, reply.channel_status) == ("failed", "failed") and reply.noted_at is not None
    [note] = [c for c in zendesk.comments() if c["body"].startswith("crmhub:")]
    assert not note["public"] and "63016" in note["body"] and "24-hour window" in note["body"]
    with zendesk.hub.store.transaction() as session:
        [letter] = open_dead_letters(session)
    assert letter.source == "reply:zendesk" and "63016" in letter.reason


def test_the_daemons_replies_job_sends_without_logging_the_text(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from simple_salesforce import Salesforce

    from tests.test_run import wait_for

    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.add_user("alice@acme.test", "alice-password", name="Alice Agent")
    tw.add_number(OURS)
    tw.receive_message(CUSTOMER, OURS, "Is my order ready?")
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      every="1s")
    log = tmp_path / "daemon.log"  # a file, not a pipe: a pipe nobody reads fills up and blocks the daemon
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "crmhub", "run", "--config", str(settings)],
                                   stdout=subprocess.DEVNULL, stderr=out)
    try:
        wait_for(lambda: len(sf.records("Case")) == 1, 60, "the case")
        agent = Salesforce(instance_url=salesforce_sandbox.url, session_id=sf.issue_token("alice@acme.test"),
                           session=build_session(base_url=salesforce_sandbox.url))
        agent.CaseComment.create({"ParentId": sf.records("Case")[0]["Id"], "CommentBody": "Ready for pickup, Jane.",
                                  "IsPublished": True})
        wait_for(lambda: len(sent_messages(tw)) == 1, 60, "the reply on Twilio")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    stderr = log.read_text()
    assert "reply sent" in stderr and "Ready for pickup" not in stderr
    [sent] = sent_messages(tw)
    assert (sent["from"], sent["to"], sent["body"]) == (OURS, CUSTOMER, "Ready for pickup, Jane.")


def test_deadletters_show_names_the_reply_but_never_its_text(zendesk: ZendeskKit) -> None:
    from crmhub.ops.deadletters import show

    zendesk.tw.receive_message(CUSTOMER, OURS, "STOP")
    zendesk.hub.sync_once()
    zendesk.reply("A private matter for Jane")
    zendesk.hub.sync_once()
    with zendesk.hub.store.transaction() as session:
        [letter] = open_dead_letters(session)
        lines = show(session, letter.id)
    [reply] = replies_of(zendesk.hub)
    assert any(f"reply {reply.id}: zendesk {reply.reply_ref}" in line and "dead" in line for line in lines)
    assert not any("private matter" in line for line in lines)


def test_an_agents_reply_with_a_lone_surrogate_is_sent_with_a_replacement_character(zendesk: ZendeskKit) -> None:
    """An agent's text is outside input too: a character the store cannot hold must not stop every replies run."""
    zendesk.tw.receive_message(CUSTOMER, OURS, "My parcel is late")
    zendesk.hub.sync_once()
    zendesk.reply("Sorry \ud800 Jane")

    first = zendesk.hub.sync_once()

    assert not first.failures, first.failures
    [sent] = sent_messages(zendesk.tw)
    assert sent["body"] == "Sorry \ufffd Jane"


def test_a_relink_after_a_reply_never_writes_the_agents_reply_back_as_a_task(salesforce: SalesforceKit) -> None:
    """The echo of an agent's reply is settled by the reply already on the Case: a later relink must not resend it."""
    salesforce.tw.receive_message(CUSTOMER, OURS, "My parcel is late")
    salesforce.hub.sync_once()
    salesforce.comment("Sorry, it leaves the warehouse today.")
    salesforce.hub.sync_once()
    salesforce.hub.sync_once()  # the sent SMS comes back as an outbound echo and is settled
    assert len(sent_messages(salesforce.tw)) == 1
    # An admin adds a second Contact with the customer's number: the person now has two records (a conflict),
    # and crmhub re-points their history onto the primary one.
    salesforce.sf.insert("Contact", LastName="Doe (duplicate)", Phone="+1 415 555 0123")
    salesforce.hub.sync_once()
    salesforce.hub.sync_once()
    tasks = [t["Description"] for t in salesforce.sf.records("Task")]
    assert tasks == ["My parcel is late"]
    assert len(sent_messages(salesforce.tw)) == 1
