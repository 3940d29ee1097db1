"""The email channel end to end on the sandbox mail server, as `crmhub sandbox` and `crmhub demo` run it.

A whole hub against the Salesforce emulator and the mail server, wired by
`write_sandbox_settings` exactly as the demo is: a customer's email becomes
history once, an agent's answer goes out once (also when the SMTP answer is
lost), and an auto-reply opens nothing. What is asserted is what the CRM and
the mail server hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer, Fault
from tests.test_replies import Clock, settings_for

JANE = "jane.doe@example.com"


@dataclass
class MailKit:
    hub: Hub
    sf: Any
    mail: Any
    agent: Any  # simple-salesforce, logged in as a human agent

    def case_of(self, text: str) -> str:
        [task] = [t for t in self.sf.records("Task") if text in (t.get("Description") or "")]
        return str(task["WhatId"])


@pytest.fixture
def kit(salesforce_sandbox: EmulatorServer, mail_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[MailKit]:
    from simple_salesforce import Salesforce

    sf: Any = salesforce_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.insert("Contact", FirstName="Jane", LastName="Doe", Email=JANE)
    sf.add_user("alice@acme.test", "alice-password", name="Alice Agent")
    agent = Salesforce(instance_url=salesforce_sandbox.url, session_id=sf.issue_token("alice@acme.test"),
                       session=build_session(base_url=salesforce_sandbox.url))
    urls = {"salesforce": salesforce_sandbox.url} | {
        f"mail-{name}": url for name, url in mail_sandbox.listener_urls.items()}
    with build_hub(load_config(settings_for(tmp_path, urls, ("salesforce", "email"))), clock=Clock()) as hub:
        yield MailKit(hub, sf, mail_sandbox.emulator, agent)


def test_an_email_lands_once_and_the_answer_goes_out_once_though_its_smtp_answer_is_lost(kit: MailKit) -> None:
    asked = kit.mail.receive_email(f"Jane Doe <{JANE}>", "Where is order 1234?", subject="Order 1234")
    kit.hub.sync_once()
    kit.hub.sync_once()
    [task] = [t for t in kit.sf.records("Task") if "Where is order 1234?" in t["Description"]]
    [jane] = kit.sf.records("Contact")
    assert task["WhoId"] == jane["Id"]  # known by the address on her Contact

    kit.mail.faults.add(Fault("reset", method="SMTP", path="DATA", after=True))  # taken, the 250 never heard
    kit.agent.CaseComment.create({"ParentId": kit.case_of("Where is order 1234?"), "IsPublished": True,
                                  "CommentBody": "It left the warehouse this morning."})
    kit.hub.sync_once()
    kit.hub.sync_once()
    [sent] = kit.mail.outbound()
    assert (sent["rcpt_tos"], sent["in_reply_to"], sent["subject"]) == ([JANE], asked["id"], "Re: Order 1234")
    assert kit.mail.faults.list()[0]["hits"] == 1  # the fault did fire: the send was retried and found
    assert len([t for t in kit.sf.records("Task") if t["Description"]]) == 1  # our own copy is no new history


def test_an_auto_reply_opens_no_case(kit: MailKit) -> None:
    kit.mail.receive_email(JANE, "I am out of the office until Monday.", subject="Out of office",
                           headers={"Auto-Submitted": "auto-replied"})
    kit.hub.sync_once()
    assert kit.sf.records("Task") == [] and kit.sf.records("Case") == []
