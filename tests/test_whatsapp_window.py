"""WhatsApp's 24-hour window (issue 18 item 2): free text inside it, an approved template outside it, else a note.

Outside it the reply is held behind the template and goes out as written once the customer writes back (or is
given up with a note after 7 days).

A whole hub against the Zendesk and Twilio emulators, on the sandbox's clock
(the ledger's times are Twilio's): the customer writes on WhatsApp, crmhub
opens the ticket, an agent replies in Zendesk; the test asserts on what the
Twilio emulator sent and on what the ticket holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.errors import ConfigError
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.store.ledger import open_dead_letters
from crmhub.webhooks import WebhookServer
from tests.test_replies import WHATSAPP, replies_of, sent_messages, settings_for

CUSTOMER = "+14155550188"
TEMPLATE_BODY = "Hi {{1}}, we have answered your request {{2}}. Reply to this message to read our answer."


@dataclass
class Kit:
    hub: Hub
    zd: Any
    tw: Any
    agent: Zenpy

    def customer_writes(self, text: str, *, name: str | None = "Jane") -> None:
        """The customer writes now; crmhub reads it (by webhook when the receiver runs, else by poll)."""
        self.tw.receive_message(f"whatsapp:{CUSTOMER}", f"whatsapp:{WHATSAPP}", text, profile_name=name)
        assert self.tw.wait_for_webhooks(timeout=10)
        self.hub.sync_once()

    def later(self, hours: float) -> None:
        self.tw.clock.advance(hours * 3600)  # one clock for every emulator and the hub

    def ticket(self) -> int:
        [ticket] = self.zd.tickets()
        return int(ticket["id"])

    def reply(self, body: str) -> None:
        self.agent.tickets.update(Ticket(id=self.ticket(), comment=Comment(body=body, public=True)))
        self.zd.clock.advance(61)  # the incremental export leaves out the last minute

    def notes(self) -> list[dict[str, Any]]:
        return [c for c in self.zd.comments(self.ticket()) if c["body"].startswith("crmhub:")]

    def sent(self) -> list[dict[str, Any]]:
        return sent_messages(self.tw, f"whatsapp:{CUSTOMER}")


def _kit(zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path,
         templates: list[dict[str, Any]], port: int | None = None) -> Iterator[Kit]:
    """The hub; with `port`, its webhook receiver too, where Twilio posts inbound messages (with the
    customer's WhatsApp profile name, which the REST API's messages do not carry)."""
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    zd.add_user(name="Jane Roe", phone=CUSTOMER)
    zd.add_agent("bea@acme.test", "Bea", token="bea-token")
    zd.clock.advance(120)
    public = f"http://127.0.0.1:{port}"
    tw.add_number(WHATSAPP, sms_url=f"{public}/webhooks/twilio/messages" if port else None)
    urls = {"zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url}
    hooks = {"webhooks": {"enabled": True, "port": port, "public_url": public}} if port else {}
    path = settings_for(tmp_path, urls, ("zendesk", "twilio"), **hooks)
    yaml = YAML()
    settings = yaml.load(path.read_text())
    settings["channels"]["twilio"]["whatsapp_templates"] = templates
    with path.open("w") as out:
        yaml.dump(settings, out)
    with build_hub(load_config(path), clock=tw.clock.now) as hub, ExitStack() as serving:  # Twilio's times
        if port:
            serving.enter_context(WebhookServer(hub.webhook_app(), port=port))
        for connector in hub.crms.values():
            connector.job_poll_first = 0.05  # type: ignore[union-attr]  # Zendesk jobs finish on the first read
        agent = Zenpy(subdomain="sandbox", email="bea@acme.test", token="bea-token",
                      session=build_session(base_url=zendesk_sandbox.url))
        yield Kit(hub, zd, tw, agent)


@pytest.fixture
def with_template(zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path,
                  free_tcp_port: int) -> Iterator[Kit]:
    tw: Any = twilio_sandbox.emulator
    spanish = tw.add_content("respuesta", "Hola {{1}}, ya respondimos ({{2}}).", {"1": "cliente", "2": "0"},
                             language="es")
    waiting = tw.add_content("answer_waiting", TEMPLATE_BODY, {"1": "customer", "2": "0"})
    templates = [{"name": "respuesta", "content_sid": spanish, "variables": {1: "customer_name", 2: "case_id"},
                  "languages": ["es"]},
                 {"name": "answer_waiting", "content_sid": waiting, "variables": {1: "customer_name", 2: "case_id"}},
                 {"name": "no_name_needed", "content_sid": waiting, "variables": {1: "case_id", 2: "case_id"}}]
    yield from _kit(zendesk_sandbox, twilio_sandbox, tmp_path, templates, free_tcp_port)


@pytest.fixture
def without_template(zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
                     tmp_path: Path) -> Iterator[Kit]:
    yield from _kit(zendesk_sandbox, twilio_sandbox, tmp_path, [])


def test_a_reply_inside_the_window_goes_as_free_text_once(with_template: Kit) -> None:
    kit = with_template
    kit.customer_writes("My order never came")
    kit.later(hours=23)
    kit.reply("It ships today.")
    kit.hub.sync_once()
    kit.hub.sync_once()
    [sent] = kit.sent()
    assert (sent["from"], sent["body"]) == (f"whatsapp:{WHATSAPP}", "It ships today.")
    [reply] = replies_of(kit.hub)
    assert reply.status in ("sent", "delivered") and reply.channel_message_id == sent["sid"]


def test_a_reply_outside_the_window_goes_as_the_template_that_fits_once(with_template: Kit) -> None:
    kit = with_template
    kit.customer_writes("My order never came")
    kit.later(hours=30)
    kit.reply("It ships today.")
    kit.hub.sync_once()
    kit.hub.sync_once()
    [sent] = kit.sent()  # the Spanish template does not fit an English conversation; the next one does
    assert sent["body"] == (f"Hi Jane, we have answered your request {kit.ticket()}. "
                            "Reply to this message to read our answer.")
    assert sent["status"] == "delivered" and sent["error_code"] is None
    assert kit.tw.wait_for_webhooks(timeout=10)  # the status callbacks have reached the receiver
    kit.hub.sync_once()
    [reply] = replies_of(kit.hub)  # held behind its template: the template's delivery does not settle it
    assert reply.status == "held" and reply.channel_message_id == sent["sid"]
    assert kit.notes() == []
    with kit.hub.store.transaction() as session:
        assert open_dead_letters(session) == []


def test_a_template_send_whose_answer_is_lost_still_goes_once(with_template: Kit) -> None:
    kit = with_template
    kit.customer_writes("My order never came")
    kit.later(hours=30)
    kit.reply("It ships today.")
    kit.tw.faults.add(Fault("reset", method="POST", path="Messages.json$", after=True))
    cycle = kit.hub.sync_once()
    assert not cycle.failures and [f["hits"] for f in kit.tw.faults.list()] == [1]
    kit.tw.clock.advance(300)
    kit.hub.sync_once()
    [sent] = kit.sent()
    assert sent["body"].startswith("Hi Jane, we have answered your request")
    [reply] = replies_of(kit.hub)
    assert reply.channel_message_id == sent["sid"] and reply.status == "held"


def _held(kit: Kit) -> dict[str, Any]:
    """The customer wrote 30 hours ago; the agent's reply went as the template, once, and is held."""
    kit.customer_writes("My order never came")
    kit.later(hours=30)
    kit.reply("It ships today.")
    kit.hub.sync_once()
    [template] = kit.sent()
    [reply] = replies_of(kit.hub)
    assert reply.status == "held" and template["body"].startswith("Hi Jane, we have answered")
    return template


def test_a_held_reply_goes_as_free_text_once_when_the_customer_writes_back(with_template: Kit) -> None:
    kit = with_template
    template = _held(kit)
    kit.later(hours=2)
    kit.hub.sync_once()
    assert [m["sid"] for m in kit.sent()] == [template["sid"]]  # no word from the customer: still held
    kit.customer_writes("OK, what is it?")
    kit.hub.sync_once()
    kit.hub.sync_once()
    template_, answer = kit.sent()  # oldest first, by the emulator's creation order
    assert template_["sid"] == template["sid"]
    assert (answer["from"], answer["body"]) == (f"whatsapp:{WHATSAPP}", "It ships today.")
    [reply] = replies_of(kit.hub)
    assert reply.status in ("sent", "delivered") and reply.channel_message_id == answer["sid"]
    assert kit.notes() == []


def test_a_held_reply_whose_answer_is_lost_still_goes_once(with_template: Kit) -> None:
    kit = with_template
    _held(kit)
    kit.tw.faults.add(Fault("reset", method="POST", path="Messages.json$", after=True))
    kit.customer_writes("OK, what is it?")  # its sync releases the reply; the send's answer is lost
    assert [f["hits"] for f in kit.tw.faults.list()] == [1]
    kit.tw.clock.advance(300)
    kit.hub.sync_once()
    kit.hub.sync_once()
    bodies = [m["body"] for m in kit.sent()]  # oldest first
    assert len(bodies) == 2 and bodies[0].startswith("Hi Jane") and bodies[1] == "It ships today."
    [reply] = replies_of(kit.hub)
    assert reply.status in ("sent", "delivered") and reply.text == "It ships today."


def test_a_reply_held_past_the_limit_is_given_up_with_one_note(with_template: Kit) -> None:
    kit = with_template
    _held(kit)
    kit.later(hours=24 * 7 + 1)
    for _ in range(3):
        kit.hub.sync_once()
        kit.tw.clock.advance(300)
    assert len(kit.sent()) == 1  # the template only
    [reply] = replies_of(kit.hub)
    assert reply.status == "dead" and reply.noted_at is not None
    [note] = kit.notes()
    assert not note["public"] and "did not write back within 7 days" in note["body"]
    assert "It ships today" not in note["body"]
    kit.customer_writes("Hello?")  # too late: the agent answers again; nothing goes out on its own
    kit.hub.sync_once()
    assert len(kit.sent()) == 1 and len(kit.notes()) == 1


def test_a_template_needing_the_customers_name_is_passed_over_when_whatsapp_gave_none(with_template: Kit) -> None:
    kit = with_template
    kit.customer_writes("Order 77?", name=None)
    kit.later(hours=30)
    kit.reply("It ships today.")
    kit.hub.sync_once()
    [sent] = kit.sent()  # answer_waiting needs the name: no_name_needed goes instead
    assert sent["body"] == (f"Hi {kit.ticket()}, we have answered your request {kit.ticket()}. "
                            "Reply to this message to read our answer.")


def test_outside_the_window_without_a_template_nothing_is_sent_and_the_ticket_says_why_once(
        without_template: Kit) -> None:
    kit = without_template
    kit.customer_writes("Hola")
    kit.later(hours=25)
    kit.reply("Sorry for the wait!")
    for _ in range(3):
        kit.hub.sync_once()
        kit.tw.clock.advance(300)
    assert kit.sent() == []
    [reply] = replies_of(kit.hub)
    assert reply.status == "dead" and reply.attempts == 1 and reply.noted_at is not None
    [note] = kit.notes()
    assert not note["public"] and "24-hour window is closed" in note["body"]
    assert "channels.twilio.whatsapp_templates" in note["body"] and "Sorry for the wait" not in note["body"]
    with kit.hub.store.transaction() as session:
        [letter] = open_dead_letters(session)
    assert letter.source == "reply:zendesk" and "24-hour window" in letter.reason


def test_template_settings_are_checked_with_file_and_line(tmp_path: Path) -> None:
    path = settings_for(tmp_path, {"zendesk": "http://127.0.0.1:1", "twilio": "http://127.0.0.1:2"},
                        ("zendesk", "twilio"))
    yaml = YAML()
    settings = yaml.load(path.read_text())
    settings["channels"]["twilio"]["whatsapp_templates"] = [
        {"name": "ok", "content_sid": "HXnot-a-sid", "variables": {1: "customer_name"}},
        {"name": "leaky", "content_sid": "HX" + "0" * 32, "variables": {1: "excerpt"}},
        {"name": "gap", "content_sid": "HX" + "1" * 32, "variables": {1: "case_id", 3: "customer_name"}}]
    with path.open("w") as out:
        yaml.dump(settings, out)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    problems = "\n".join(raised.value.problems)
    assert "channels.twilio.whatsapp_templates[0].content_sid: 'HXnot-a-sid' is not a Twilio Content SID" in problems
    assert "whatsapp_templates[1].variables: 'excerpt': the reply's text never goes into a template" in problems
    assert "whatsapp_templates[2].variables: placeholders 1, 3: number them 1, 2, 3" in problems
    assert all(line.startswith("settings.yaml:") or "settings.yaml:" in line.split(" ")[0]
               for line in raised.value.problems), problems
