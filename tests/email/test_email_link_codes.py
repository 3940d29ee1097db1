"""`statements: {email: confirm_by_code}`: a claimed email address gets a one-time code by email; answered from it,
the claim joins.

A real Dovecot and Postfix, the hub and the Salesforce emulator. Bob writes
that Jane's address is his too; crmhub mails a code to Jane from the support
mailbox, marked automatic, once even when the SMTP answer is lost. The code
mail and the copy crmhub reads back from its own mailbox go into no CRM and
open no case. Only the code coming back from Jane's address joins the two
(link log evidence `code`); the same code from Bob's does not, and digits
Jane only quotes from an earlier message are no wrong try. The code is never
in a log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import select
from structlog.testing import capture_logs

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.store.schema import LinkCodeRow, LinkEventRow, LinkSuggestionRow, ReplyRow
from tests.email.lost_answer import LostAnswerRelay
from tests.email.mailserver import MailServer
from tests.email.messages import BOB, JANE, SUPPORT, customer_mail
from tests.email.test_email_end_to_end import email_settings

CLAIM = f"Hi, I also write from {JANE}, please put my orders together."
TEXT = "Acme here. Your code: {code}\nReply to this mail with it to link your address."


@dataclass
class Kit:
    hub: Hub
    sf: Any
    mail: MailServer
    jane: str  # her Contact

    def sync(self, times: int = 1) -> None:
        for _ in range(times):
            cycle = self.hub.sync_once()
            assert not cycle.failures, cycle.failures

    def code_mail(self) -> EmailMessage:
        [raw] = self.mail.await_messages(JANE, 1)
        return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]

    def suggestion(self) -> tuple[str, str | None]:
        with self.hub.store.transaction() as session:
            [row] = session.scalars(select(LinkSuggestionRow))
            return row.status, row.decided_by

    def codes(self) -> list[tuple[str, int]]:
        with self.hub.store.transaction() as session:
            return [(row.status, row.tries) for row in session.scalars(select(LinkCodeRow).order_by(LinkCodeRow.id))]

    def bobs_records(self) -> set[str]:
        """The Contact Bob's first mail (its Task and Case) sits on."""
        [task] = [t for t in self.sf.records("Task") if "put my orders together" in (t.get("Description") or "")]
        [case] = [c for c in self.sf.records("Case") if c["Id"] == task["WhatId"]]
        return {task["WhoId"], case["ContactId"]}


@contextmanager
def code_hub(mail_server: MailServer, salesforce_sandbox: EmulatorServer, tmp_path: Path,
             smtp_port: int | None = None, text: str | None = None) -> Iterator[Kit]:
    """Jane's Contact in Salesforce; the hub reads and answers the support mailbox and mails codes to claimed
    addresses (in `text`, identities.yaml codes.texts.email, when given)."""
    sf: Any = salesforce_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    jane = sf.insert("Contact", LastName="Doe", FirstName="Jane", Email=JANE)
    settings = email_settings(tmp_path, {"salesforce": salesforce_sandbox.url}, mail_server, ("salesforce",),
                              smtp_port)
    identities = tmp_path / "mappings" / "identities.yaml"
    yaml = YAML()
    tree = yaml.load(identities.read_text())
    tree["statements"] = {"phone": "suggest", "email": "confirm_by_code", "x_handle": "suggest"}
    if text is not None:
        tree["codes"] = {"texts": {"email": text}}
    with identities.open("w") as out:
        yaml.dump(tree, out)
    with build_hub(load_config(settings)) as hub:
        yield Kit(hub, sf, mail_server, jane)


@pytest.fixture
def kit(mail_server: MailServer, salesforce_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Kit]:
    with code_hub(mail_server, salesforce_sandbox, tmp_path, text=TEXT) as found:
        yield found


def _claim(kit: Kit) -> None:
    kit.mail.deliver(customer_mail(BOB, "b1@customers.test", CLAIM, subject="Orders"), SUPPORT, sender=BOB)
    kit.sync(2)


def _code(mail: EmailMessage) -> str:
    found = re.search(r"\b(\d{6})\b", mail.get_content())
    assert found, "the mail carries a six-digit code"
    return found.group(1)


def _reply(sender: str, message_id: str, text: str, to: EmailMessage) -> EmailMessage:
    """`sender`'s answer to the mail `to`, threaded to it as a mail client does."""
    parent = str(to["Message-ID"]).strip("<>")
    return customer_mail(sender, message_id, text, subject=f"Re: {to['Subject']}", in_reply_to=parent,
                         references=(parent,))


def test_a_claimed_email_gets_one_automatic_code_mail_that_opens_nothing_and_only_its_address_can_answer(
        kit: Kit) -> None:
    with capture_logs() as logs:
        _claim(kit)
        assert kit.suggestion() == ("pending", None)
        mail = kit.code_mail()
        code = _code(mail)
        assert (mail["From"].addresses[0].addr_spec, mail["To"].addresses[0].addr_spec) == (SUPPORT, JANE)
        assert mail["Auto-Submitted"] == "auto-generated"  # RFC 3834: no autoresponder answers it
        assert mail["Subject"] == "Your one-time code" and mail["In-Reply-To"] is None
        assert mail.get_content().split() == TEXT.format(code=code).split()  # identities.yaml codes.texts.email
        kit.mail.await_messages(SUPPORT, 2)  # our own copy is back in the support mailbox
        kit.sync(2)  # crmhub reads the copy: already in the ledger as the code's echo, written nowhere
        assert len(kit.sf.records("Case")) == 1  # Bob's only: the code mail opened no case
        assert [t["Description"] for t in kit.sf.records("Task")] == [f"Orders\n\n{CLAIM}"]
        assert kit.jane not in kit.bobs_records()  # a code sent proves nothing yet

        kit.mail.deliver(_reply(BOB, "b2@customers.test", code, mail), SUPPORT, sender=BOB)  # the right code, from Bob
        # Jane answers another mail with nothing of her own: the digits she quotes are no try at her code.
        kit.mail.deliver(customer_mail(JANE, "j1@customers.test", "On Mon, Acme Support wrote:\n"
                                                                  "> Your parcel 654321 left today.",
                                       subject="Re: Parcel", in_reply_to="old@crmhub.test"), SUPPORT, sender=JANE)
        kit.sync(2)
        assert kit.suggestion() == ("pending", None)
        assert kit.codes() == [("pending", 0)]
        assert kit.jane not in kit.bobs_records()

        # Jane replies to the code mail without typing anything: the code she quotes is hers alone.
        written = len(kit.sf.records("Task")), len(kit.sf.records("Case"))
        kit.mail.deliver(_reply(JANE, "j2@customers.test", f"On Sun, Acme Support <{SUPPORT}> wrote:\n"
                                + "".join(f"> {line}\n" for line in mail.get_content().splitlines()), mail),
                         SUPPORT, sender=JANE)
        kit.sync(2)
    assert kit.suggestion() == ("confirmed", f"one-time code answered from email {JANE}")
    assert kit.codes() == [("used", 0)]
    with kit.hub.store.transaction() as session:
        assert [e.evidence for e in session.scalars(select(LinkEventRow))] == ["code"]
    assert kit.bobs_records() == {kit.jane}  # Bob's history lands on her one record
    # Her bare answer is written nowhere: no Task of quoted lines, no case "Re: Your one-time code".
    assert (len(kit.sf.records("Task")), len(kit.sf.records("Case"))) == written
    assert len(kit.mail.messages(JANE)) == 1
    assert not [t for t in kit.sf.records("Task") if t.get("Description", "").startswith("Acme here")]
    assert not [entry for entry in logs if code in repr(entry)]


def test_a_lost_smtp_answer_never_sends_a_second_code_mail(mail_server: MailServer,
                                                          salesforce_sandbox: EmulatorServer, tmp_path: Path) -> None:
    relay = LostAnswerRelay(mail_server.smtp_port)
    try:
        with code_hub(mail_server, salesforce_sandbox, tmp_path, relay.port) as kit:
            _claim(kit)
            kit.sync(2)
            with kit.hub.store.transaction() as session:
                [reply] = session.scalars(select(ReplyRow))
                status, message_id = reply.status, reply.channel_message_id
            mail = kit.code_mail()
            kit.mail.deliver(_reply(JANE, "j1@customers.test", f"{_code(mail)}\n\nOn Sun, Acme Support wrote:\n> x",
                                    mail), SUPPORT, sender=JANE)
            kit.sync(2)
            assert kit.suggestion()[0] == "confirmed"
            assert kit.bobs_records() == {kit.jane}
    finally:
        relay.close()
    assert relay.lost.is_set()  # Postfix took the code mail and its answer never reached crmhub
    assert status == "sent" and mail["Message-ID"] == f"<{message_id}>"
    assert len(mail_server.messages(JANE)) == 1
