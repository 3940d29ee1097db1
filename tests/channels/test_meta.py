"""Messenger and Instagram end to end: the Meta emulator, crmhub's hub and receiver, Salesforce.

A customer writes on Messenger; Meta's signed webhook reaches crmhub's
receiver over real HTTP and the case opens in Salesforce, once, however
often the reconciliation poll reads the same message again. An agent's
published CaseComment goes back as one Messenger message, inside Meta's
windows: a `RESPONSE` within 24 hours, the `HUMAN_AGENT` tag up to 7 days,
and after that a note on the case instead of a send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.meta import DEFAULT_APP_SECRET, DEFAULT_PAGE_ID, DEFAULT_VERIFY_TOKEN, MetaEmulator
from crmhub.store.ledger import open_dead_letters
from crmhub.webhooks import WebhookServer
from tests.test_replies import Clock, replies_of, settings_for

DAY = 86400.0
HOOK = "/webhooks/meta"


@dataclass
class MetaKit:
    hub: Hub
    meta: MetaEmulator
    sf: Any
    sf_url: str
    url: str  # crmhub's receiver
    app: Any  # its app (counters in app.state)

    def write(self, text: str, person: str | None = None, platform: str = "messenger") -> tuple[str, str]:
        """The customer writes; returns (their scoped id, the message id) once Meta's webhook was delivered."""
        person = person or self.meta.add_person(platform, "Jane Doe")
        mid = self.meta.inbound(platform, person, text)["id"]
        assert self.meta.wait_for_deliveries(timeout=10)
        return person, mid

    def case(self) -> dict[str, Any]:
        [case] = self.sf.records("Case")
        return dict(case)

    def comment(self, body: str) -> None:
        """A human agent publishes a comment through her own API session (a fresh one: days may have passed)."""
        from simple_salesforce import Salesforce

        agent = Salesforce(instance_url=self.sf_url, session_id=self.sf.issue_token("alice@acme.test"),
                           session=build_session(base_url=self.sf_url))
        agent.CaseComment.create({"ParentId": self.case()["Id"], "CommentBody": body, "IsPublished": True})

    def ours(self, person: str) -> list[dict[str, Any]]:
        return [m for m in self.meta.messages(person) if m["is_echo"]]


@pytest.fixture
def kit(salesforce_sandbox: EmulatorServer, meta_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[MetaKit]:
    sf: Any = salesforce_sandbox.emulator
    meta = meta_sandbox.emulator
    assert isinstance(meta, MetaEmulator)
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.add_user("alice@acme.test", "alice-password", name="Alice Agent")
    urls = {"salesforce": salesforce_sandbox.url, "meta": meta_sandbox.url}
    with build_hub(load_config(settings_for(tmp_path, urls, ("salesforce", "meta"))), clock=Clock()) as hub:
        app = hub.webhook_app()
        with WebhookServer(app) as receiver:
            assert meta.subscribe(receiver.url + HOOK, DEFAULT_VERIFY_TOKEN) is True
            yield MetaKit(hub, meta, sf, salesforce_sandbox.url, receiver.url, app)


def test_a_signed_webhook_opens_the_case_once_and_the_poll_does_not_double_it(kit: MetaKit) -> None:
    person, mid = kit.write("my parcel never came")
    first, second = kit.hub.sync_once(), kit.hub.sync_once()
    assert not first.failures and not second.failures
    assert [(p.stream, p.stored) for p in first.polls if p.source == "meta"] == [("messenger", 0), ("instagram", 0)]
    [task] = kit.sf.records("Task")
    assert task["Crmhub_Key__c"] == f"messenger:{mid}" and task["Description"] == "my parcel never came"
    case = kit.case()
    assert case["Origin"] == "Messenger" and task["WhatId"] == case["Id"]
    _, follow_up = kit.write("any news?", person)
    kit.hub.sync_once()
    assert sorted(t["Crmhub_Key__c"] for t in kit.sf.records("Task")) == sorted(
        [f"messenger:{mid}", f"messenger:{follow_up}"])
    assert len(kit.sf.records("Case")) == 1  # one conversation, one case


def test_instagram_dms_missed_by_the_webhook_are_found_by_the_poll(kit: MetaKit) -> None:
    kit.meta.subscribe(kit.url + "/nowhere")  # a wrong callback URL: Meta's verification fails, no event is sent
    person = kit.meta.add_person("instagram", "Ann Insta")
    mid = kit.meta.inbound("instagram", person, "hi from instagram")["id"]
    kit.hub.sync_once()
    [task] = kit.sf.records("Task")
    assert task["Crmhub_Key__c"] == f"instagram:{mid}" and kit.case()["Origin"] == "Instagram"


def test_a_bad_signature_is_refused_and_counted_and_the_handshake_needs_the_token(kit: MetaKit) -> None:
    body = json.dumps({"object": "page", "entry": [{"id": DEFAULT_PAGE_ID, "messaging": [
        {"sender": {"id": "1"}, "recipient": {"id": DEFAULT_PAGE_ID}, "timestamp": 1,
         "message": {"mid": "m_forged", "text": "forged"}}]}]}).encode()
    forged = requests.post(kit.url + HOOK, data=body, timeout=5, headers={
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()})
    unsigned = requests.post(kit.url + HOOK, data=body, timeout=5)
    assert (forged.status_code, unsigned.status_code) == (403, 403)
    assert kit.app.state.rejected["meta"] == 2 and kit.app.state.counts[("meta.events", "rejected")] == 2
    kit.hub.sync_once()
    assert kit.sf.records("Task") == []
    ok = requests.get(kit.url + HOOK, timeout=5, params={"hub.mode": "subscribe", "hub.verify_token":
                                                          DEFAULT_VERIFY_TOKEN, "hub.challenge": "8675309"})
    wrong = requests.get(kit.url + HOOK, timeout=5, params={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                                             "hub.challenge": "8675309"})
    assert (ok.status_code, ok.text, wrong.status_code) == (200, "8675309", 403)
    signed = json.dumps({"object": "page", "entry": "not a list"}).encode()
    answer = requests.post(kit.url + HOOK, data=signed, timeout=5, headers={
        "X-Hub-Signature-256": "sha256=" + hmac.new(DEFAULT_APP_SECRET.encode(), signed, hashlib.sha256).hexdigest()})
    assert answer.status_code == 200
    garbage = b"\xff not json"
    dead = requests.post(kit.url + HOOK, data=garbage, timeout=5, headers={
        "X-Hub-Signature-256": "sha256=" + hmac.new(DEFAULT_APP_SECRET.encode(), garbage, hashlib.sha256).hexdigest()})
    assert dead.status_code == 200  # signed by Meta: a dead letter, so Meta stops sending it again
    with kit.hub.store.transaction() as session:
        [letter] = open_dead_letters(session)
    assert letter.source == "meta" and letter.reason == "Meta webhook: body is not JSON"
    assert kit.app.state.counts[("meta.verify", "refused")] == 1


def test_an_agents_reply_goes_out_once_even_when_its_answer_is_lost(kit: MetaKit) -> None:
    person, _ = kit.write("where is my order?")
    kit.hub.sync_once()
    kit.comment("It ships today, Jane.")
    kit.meta.faults.add(Fault("reset", method="POST", path="/messages$", after=True))  # sent, the answer lost
    first, second = kit.hub.sync_once(), kit.hub.sync_once()
    assert [f["hits"] for f in kit.meta.faults.list()] == [1] and not first.failures and not second.failures
    [sent] = kit.ours(person)
    assert (sent["text"], sent["messaging_type"]) == ("It ships today, Jane.", "RESPONSE")
    [reply] = replies_of(kit.hub)
    assert (reply.channel, reply.channel_message_id, reply.status) == ("messenger", sent["id"], "sent")
    # Meta's echo of our message (webhook and poll) is the reply's echo: no Task repeats the agent's comment.
    assert [t["Description"] for t in kit.sf.records("Task")] == ["where is my order?"]


def test_three_days_on_the_reply_carries_the_human_agent_tag_and_after_eight_it_is_a_note(kit: MetaKit) -> None:
    person, _ = kit.write("hello?")
    kit.hub.sync_once()
    kit.meta.clock.advance(3 * DAY)
    kit.comment("Sorry for the wait, Jane.")
    kit.hub.sync_once()
    [tagged] = kit.ours(person)
    assert (tagged["messaging_type"], tagged["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")

    kit.meta.clock.advance(5 * DAY)
    kit.comment("Still there?")
    cycle = kit.hub.sync_once()
    assert len(kit.ours(person)) == 1 and cycle.replies is not None and cycle.replies.dead == 1
    [note] = [c for c in kit.sf.records("CaseComment") if not c["IsPublished"]]
    assert "last wrote 8 days ago" in note["CommentBody"]
    with kit.hub.store.transaction() as session:
        [letter] = open_dead_letters(session)
    assert letter.source == "reply:salesforce" and "Still there" not in letter.reason
