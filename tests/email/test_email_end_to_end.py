"""The email channel end to end: a real Dovecot and Postfix, the hub, and the CRM emulators.

A customer's mail lands once in Salesforce, Zendesk and HubSpot; bounces
and auto-replies open nothing; an agent's reply in the CRM goes out once,
threaded to the customer's message, and the customer's answer to it joins
the same case.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import select

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from tests.crm_views import zendesk_bodies
from tests.daemons import wait_for
from crmhub.store.schema import ReplyRow
from tests.email.lost_answer import LostAnswerRelay
from tests.email.mailserver import MailServer
from tests.email.messages import JANE, SUPPORT, auto_reply, bounce, customer_mail
from tests.test_run import start_crmhub


def email_settings(tmp_path: Path, urls: dict[str, str], mail: MailServer, crms: tuple[str, ...],
                   smtp_port: int | None = None) -> Path:
    """Sandbox settings for `crms` with the email channel on the test mail server (the only channel)."""
    path = write_sandbox_settings(tmp_path, urls, enabled=crms)
    secret = tmp_path / "email-password"
    secret.write_text(mail.password)
    yaml = YAML()
    settings = yaml.load(path.read_text())
    settings["retry"].update({"initial_wait": "10ms", "max_wait": "50ms", "max_total": "10s"})
    settings["channels"]["email"] = {
        "address": SUPPORT, "display_name": "Acme Support",
        "imap": {"host": "127.0.0.1", "port": mail.imap_port, "security": "starttls", "ca_file": mail.ca_file,
                 "password": f"file:{secret}"},
        # through a relay (`smtp_port`), plain SMTP on loopback: the relay reads the server's answers
        "smtp": ({"host": "127.0.0.1", "port": smtp_port, "security": "none"} if smtp_port else
                 {"host": "127.0.0.1", "port": mail.smtp_port, "security": "starttls", "ca_file": mail.ca_file})}
    with path.open("w") as out:
        yaml.dump(settings, out)
    return path


@pytest.fixture
def every_crm(mail_server: MailServer, salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer,
              hubspot_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[tuple[Hub, Any, Any, Any]]:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    hs: Any = hubspot_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.insert("Contact", LastName="Doe", Email="Jane@Customers.test")
    zd.add_user(name="Jane Doe", email="jane@customers.test")
    hs.add("contacts", firstname="Jane", email="jane@customers.test")
    zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute's changes
    urls = {"salesforce": salesforce_sandbox.url, "zendesk": zendesk_sandbox.url, "hubspot": hubspot_sandbox.url}
    settings = email_settings(tmp_path, urls, mail_server, ("salesforce", "zendesk", "hubspot"))
    with build_hub(load_config(settings)) as hub:
        for connector in hub.crms.values():
            if hasattr(connector, "job_poll_first"):
                connector.job_poll_first = 0.05  # Zendesk jobs finish on the first read
        yield hub, sf, zd, hs


def test_a_customer_mail_reaches_every_crm_once_and_bounces_and_auto_replies_open_nothing(
        mail_server: MailServer, every_crm: tuple[Hub, Any, Any, Any]) -> None:
    hub, sf, zd, hs = every_crm
    mail_server.deliver(customer_mail(JANE, "m1@customers.test", "My parcel is late", subject="Parcel"),
                        SUPPORT, sender=JANE)
    mail_server.deliver(auto_reply(JANE, "ooo@customers.test"), SUPPORT, sender=JANE)
    mail_server.deliver(bounce("crmhub-0000@crmhub.test"), SUPPORT, sender="")
    mail_server.deliver(auto_reply("bob@customers.test", "bulk@customers.test", Precedence="bulk"), SUPPORT,
                        sender="bob@customers.test")
    first = hub.sync_once()
    second = hub.sync_once()
    assert [d.delivered for d in first.deliveries] == [1, 1, 1]
    assert [d.delivered for d in second.deliveries] == [0, 0, 0]

    [contact] = sf.records("Contact")
    [task] = sf.records("Task")
    [case] = sf.records("Case")
    assert task["WhoId"] == contact["Id"] and task["Description"] == "Parcel\n\nMy parcel is late"
    assert task["Subject"].startswith("Email")
    [ticket] = zd.tickets()
    assert zendesk_bodies(zd, ticket["id"]) == ["Parcel\n\nMy parcel is late"]
    assert len(hs.objects("tickets")) == 1 and len(hs.objects("contacts")) == 1  # matched, not created
    assert case["Id"]
    skipped = {sample.labels["reason"]: sample.value for family in hub.metrics.registry.collect()
               if family.name == "crmhub_items_skipped" for sample in family.samples
               if sample.name.endswith("_total") and sample.labels["source"] == "email"}
    assert skipped == {"auto-reply": 1, "bounce": 1, "bulk mail": 1}  # in /metrics, counted once though read twice


@dataclass
class SalesforceMail:
    hub: Hub
    sf: Any
    agent: Any  # simple-salesforce, logged in as a human agent

    def comment(self, body: str) -> None:
        [case] = self.sf.records("Case")
        self.agent.CaseComment.create({"ParentId": case["Id"], "CommentBody": body, "IsPublished": True})


@pytest.fixture
def salesforce_mail(mail_server: MailServer, salesforce_sandbox: EmulatorServer,
                    tmp_path: Path) -> Iterator[SalesforceMail]:
    with salesforce_hub(mail_server, salesforce_sandbox, tmp_path) as kit:
        yield kit


def salesforce_agent(salesforce_sandbox: EmulatorServer) -> tuple[Any, Any]:
    """Salesforce with its queues, Jane's Contact and a human agent: (the emulator, the agent's client)."""
    from simple_salesforce import Salesforce

    sf: Any = salesforce_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.insert("Contact", LastName="Doe", Email="jane@customers.test")
    sf.add_user("alice@acme.test", "alice-password", name="Alice Agent")
    return sf, Salesforce(instance_url=salesforce_sandbox.url, session_id=sf.issue_token("alice@acme.test"),
                          session=build_session(base_url=salesforce_sandbox.url))


@contextmanager
def salesforce_hub(mail_server: MailServer, salesforce_sandbox: EmulatorServer, tmp_path: Path,
                   smtp_port: int | None = None) -> Iterator[SalesforceMail]:
    """Salesforce with Jane's Contact and an agent, and a hub reading and answering the support mailbox."""
    sf, agent = salesforce_agent(salesforce_sandbox)
    settings = email_settings(tmp_path, {"salesforce": salesforce_sandbox.url}, mail_server, ("salesforce",),
                              smtp_port)
    with build_hub(load_config(settings)) as hub:
        yield SalesforceMail(hub, sf, agent)


def test_an_agent_reply_goes_out_once_threaded_and_the_answer_joins_the_case(
        mail_server: MailServer, salesforce_mail: SalesforceMail) -> None:
    hub, sf = salesforce_mail.hub, salesforce_mail.sf
    mail_server.deliver(customer_mail(JANE, "m1@customers.test", "My parcel is late", subject="Parcel"),
                        SUPPORT, sender=JANE)
    hub.sync_once()
    salesforce_mail.comment("Sorry Jane, it leaves the warehouse today.")
    first = hub.sync_once()
    assert first.replies is not None and first.replies.sent == 1 and not first.failures

    [raw] = mail_server.await_messages(JANE, 1)
    sent = message_from_bytes(raw, policy=policy.default)
    assert sent["In-Reply-To"] == "<m1@customers.test>" and sent["References"] == "<m1@customers.test>"
    assert sent["Subject"] == "Re: Parcel" and sent.get_content().strip() == "Sorry Jane, it leaves the warehouse today."
    mail_server.await_messages(SUPPORT, 2)  # our own copy is back in the mailbox
    hub.sync_once()  # reads the copy: the ledger holds it already (the reply's echo), nothing new anywhere
    assert len(mail_server.messages(JANE)) == 1
    assert [t["Description"] for t in sf.records("Task")] == ["Parcel\n\nMy parcel is late"]

    mail_server.deliver(customer_mail(JANE, "m2@customers.test", "Thanks!\n\nOn Mon, Acme Support wrote:\n> Sorry",
                                      subject="Re: Parcel", in_reply_to=sent["Message-ID"].strip("<>"),
                                      references=("m1@customers.test", sent["Message-ID"].strip("<>"))),
                        SUPPORT, sender=JANE)
    mail_server.deliver(auto_reply(JANE, "ooo2@customers.test"), SUPPORT, sender=JANE)  # her autoresponder
    hub.sync_once()
    hub.sync_once()
    assert len(sf.records("Case")) == 1
    assert sorted(t["Description"] for t in sf.records("Task")) == ["Parcel\n\nMy parcel is late", "Thanks!"]
    assert len(mail_server.messages(JANE)) == 1  # the auto-reply got no answer: no loop

    # The next reply answers her latest message, not the first: In-Reply-To names m2, References the chain.
    salesforce_mail.comment("Glad it arrived!")
    hub.sync_once()
    second = message_from_bytes(mail_server.await_messages(JANE, 2)[-1], policy=policy.default)
    assert second["In-Reply-To"] == "<m2@customers.test>"
    assert second["References"] == f"<m1@customers.test> {sent['Message-ID']} <m2@customers.test>"
    assert second["Subject"] == "Re: Parcel"


def test_a_reply_whose_smtp_answer_is_lost_goes_out_once(mail_server: MailServer,
                                                         salesforce_sandbox: EmulatorServer, tmp_path: Path) -> None:
    relay = LostAnswerRelay(mail_server.smtp_port)
    try:
        with salesforce_hub(mail_server, salesforce_sandbox, tmp_path, relay.port) as kit:
            mail_server.deliver(customer_mail(JANE, "m1@customers.test", "My parcel is late"), SUPPORT, sender=JANE)
            kit.hub.sync_once()
            kit.comment("It leaves today.")
            cycle = kit.hub.sync_once()
            kit.hub.sync_once()
            with kit.hub.store.transaction() as session:
                [reply] = session.scalars(select(ReplyRow))
                reply_status, message_id = reply.status, reply.channel_message_id
    finally:
        relay.close()
    assert relay.lost.is_set()  # the server accepted the message and its answer never reached crmhub
    assert cycle.replies is not None and not cycle.failures
    [raw] = mail_server.await_messages(JANE, 1)
    assert message_from_bytes(raw, policy=policy.default)["Message-ID"] == f"<{message_id}>"
    assert reply_status == "sent" and len(mail_server.messages(JANE)) == 1


def test_crmhub_run_reads_mail_as_it_arrives_through_idle(mail_server: MailServer,
                                                         salesforce_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    path = email_settings(tmp_path, {"salesforce": salesforce_sandbox.url}, mail_server, ("salesforce",))
    yaml = YAML()
    settings = yaml.load(path.read_text())
    settings["channels"]["email"]["poll_every"] = "1h"  # only IDLE can bring the mail in within this test
    with path.open("w") as out:
        yaml.dump(settings, out)
    log = tmp_path / "run.log"
    process = start_crmhub("run", path, log)
    try:
        wait_for(lambda: "running" in log.read_text(), 60, "the daemon's first cycle")
        mail_server.deliver(customer_mail(JANE, "live@customers.test", "Are you there?"), SUPPORT, sender=JANE)
        wait_for(lambda: len(sf.records("Task")) == 1, 60, "the mail as a Task, long before the hourly poll")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "Are you there" not in text and mail_server.password not in text  # no bodies, no secrets
