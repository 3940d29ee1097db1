"""The sandbox mail server, driven by real clients: stdlib imaplib and smtplib, and imapclient.

What a client sees (CAPABILITY, UIDVALIDITY/UIDNEXT, UID SEARCH/FETCH, IDLE,
APPEND, SMTP replies) and what the server holds afterwards (`/_sandbox/state`)
are the assertions; faults are armed over `/_sandbox/faults` as for the HTTP
emulators.
"""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from imapclient import IMAPClient

from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.inbound import SUPPORT_ADDRESS
from crmhub.sandbox.mail import DEFAULT_ADDRESS, DEFAULT_PASSWORD, MailEmulator

CUSTOMER = "ana@example.net"


def port(server: EmulatorServer, listener: str) -> int:
    return urlsplit(server.listener_urls[listener]).port or 0


@contextmanager
def imap(server: EmulatorServer, mailbox: str = "INBOX", *, readonly: bool = False) -> Iterator[imaplib.IMAP4]:
    """A logged-in imaplib client with `mailbox` selected."""
    with imaplib.IMAP4("127.0.0.1", port(server, "imap")) as client:
        client.login(DEFAULT_ADDRESS, DEFAULT_PASSWORD)
        status, _ = client.select(mailbox, readonly=readonly)
        assert status == "OK"
        yield client


@contextmanager
def smtp(server: EmulatorServer, *, login: bool = True) -> Iterator[smtplib.SMTP]:
    with smtplib.SMTP("127.0.0.1", port(server, "smtp"), timeout=10) as client:
        if login:
            client.login(DEFAULT_ADDRESS, DEFAULT_PASSWORD)
        yield client


def control(server: EmulatorServer, what: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{server.url}/_sandbox/{what}", json=body, timeout=10)


def state(server: EmulatorServer) -> dict[str, Any]:
    answer = requests.get(f"{server.url}/_sandbox/state", timeout=10)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def mailbox(server: EmulatorServer, name: str = "INBOX") -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = state(server)["accounts"][DEFAULT_ADDRESS]["mailboxes"].get(name, {}).get(
        "messages", [])
    return messages


def reply(message_id: str = "<reply-1@crmhub.test>", in_reply_to: str = "<q1@example.net>") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"] = DEFAULT_ADDRESS, CUSTOMER
    message["Subject"], message["Message-ID"] = "Re: Order 1234", message_id
    message["In-Reply-To"] = message["References"] = in_reply_to
    message.set_content("It ships tomorrow.")
    return message


def test_a_customer_email_is_found_and_fetched_by_uid_without_marking_it_seen(mail_sandbox: EmulatorServer) -> None:
    made = control(mail_sandbox, "inbound", {"from": f"Ana Ruiz <{CUSTOMER}>", "subject": "Order 1234",
                                             "text": "Where is my order?", "message_id": "<q1@example.net>"})
    assert made.status_code == 201 and made.json()["id"] == "<q1@example.net>"
    with imap(mail_sandbox) as client:
        assert {"IMAP4REV1", "IDLE", "UIDPLUS"} <= set(client.capabilities) | set(
            client.capability()[1][0].decode().upper().split())
        assert client.untagged_responses["UIDVALIDITY"] == [str(made.json()["uidvalidity"]).encode()]
        assert client.untagged_responses["UIDNEXT"] == [str(made.json()["uid"] + 1).encode()]
        _, [uids] = client.uid("SEARCH", "HEADER", "Message-ID", "<q1@example.net>")
        assert uids.split() == [str(made.json()["uid"]).encode()]
        _, fetched = client.uid("FETCH", uids, "(UID FLAGS BODY.PEEK[])")
        _, flags = client.uid("FETCH", uids, "(FLAGS)")
    message = message_from_bytes(fetched[0][1], policy=policy.default)
    assert (message["From"], message["Subject"]) == (f"Ana Ruiz <{CUSTOMER}>", "Order 1234")
    assert message.get_content().strip() == "Where is my order?"
    assert b"\\Seen" not in flags[0]
    assert SUPPORT_ADDRESS == DEFAULT_ADDRESS  # `crmhub sandbox inbound email` writes to this mailbox


def test_imapclient_idles_until_mail_arrives_by_smtp(mail_sandbox: EmulatorServer) -> None:
    with IMAPClient("127.0.0.1", port=port(mail_sandbox, "imap"), ssl=False, timeout=10) as client:
        client.login(DEFAULT_ADDRESS, DEFAULT_PASSWORD)
        selected = client.select_folder("INBOX")
        assert b"IDLE" in client.capabilities()
        client.idle()
        with smtp(mail_sandbox, login=False) as sender:  # the MX role: a customer's server delivers to us
            sender.sendmail(CUSTOMER, [DEFAULT_ADDRESS], b"From: ana@example.net\r\nSubject: hi\r\n"
                                                         b"Message-ID: <idle@example.net>\r\n\r\nhello\r\n")
        responses = client.idle_check(timeout=10)  # returns as soon as the server tells; 10 s is only a bound
        client.idle_done()
        assert (1, b"EXISTS") in responses
        [uid] = client.search(["HEADER", "Message-ID", "<idle@example.net>"])
        assert uid == selected[b"UIDNEXT"]
        assert client.fetch([uid], ["RFC822"])[uid][b"RFC822"].endswith(b"\r\n\r\nhello\r\n")


def test_our_reply_is_kept_as_sent_and_filed_in_sent(mail_sandbox: EmulatorServer) -> None:
    with smtp(mail_sandbox) as client:
        assert client.has_extn("auth") and "PLAIN" in client.esmtp_features["auth"].upper()
        assert client.send_message(reply()) == {}
    [sent] = state(mail_sandbox)["outbound"]
    assert (sent["id"], sent["rcpt_tos"], sent["login"]) == ("<reply-1@crmhub.test>", [CUSTOMER], DEFAULT_ADDRESS)
    assert (sent["in_reply_to"], sent["references"]) == ("<q1@example.net>", "<q1@example.net>")
    assert [m["message_id"] for m in mailbox(mail_sandbox, "Sent")] == ["<reply-1@crmhub.test>"]
    assert mailbox(mail_sandbox) == []  # nothing of ours in the INBOX


def test_relaying_and_bad_logins_are_refused(mail_sandbox: EmulatorServer) -> None:
    with smtp(mail_sandbox, login=False) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail("spam@example.org", ["someone@else.example"], b"Subject: x\r\n\r\ny\r\n")
    assert refused.value.recipients["someone@else.example"][0] == 550
    with smtplib.SMTP("127.0.0.1", port(mail_sandbox, "smtp"), timeout=10) as client, \
            pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(DEFAULT_ADDRESS, "wrong")
    with pytest.raises(imaplib.IMAP4.error), imaplib.IMAP4("127.0.0.1", port(mail_sandbox, "imap")) as client:
        client.login(DEFAULT_ADDRESS, "wrong")
    assert state(mail_sandbox)["outbound"] == []


def test_a_lost_answer_after_data_leaves_the_message_sent_once_and_findable(mail_sandbox: EmulatorServer) -> None:
    armed = control(mail_sandbox, "faults", {"kind": "reset", "method": "SMTP", "path": "DATA", "after": True})
    assert armed.status_code == 201
    with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)), smtp(mail_sandbox) as client:
        client.send_message(reply())
    assert [s["id"] for s in state(mail_sandbox)["outbound"]] == ["<reply-1@crmhub.test>"]  # it did go
    with imap(mail_sandbox, "Sent", readonly=True) as client:  # a careful sender looks before sending again
        _, [found] = client.uid("SEARCH", "HEADER", "Message-ID", "<reply-1@crmhub.test>")
    assert len(found.split()) == 1
    with smtp(mail_sandbox) as client:  # the fault was used up: the next message goes normally
        assert client.send_message(reply("<reply-2@crmhub.test>")) == {}
    assert [s["id"] for s in state(mail_sandbox)["outbound"]] == ["<reply-1@crmhub.test>", "<reply-2@crmhub.test>"]


@pytest.mark.parametrize(("fault", "error"), [
    ({"kind": "reset"}, (smtplib.SMTPServerDisconnected, ConnectionError)),
    ({"kind": "server_error"}, smtplib.SMTPDataError),
    ({"kind": "rate_limit"}, (smtplib.SMTPDataError, smtplib.SMTPServerDisconnected)),
])
def test_a_refused_or_cut_data_sends_nothing(mail_sandbox: EmulatorServer, fault: dict[str, Any],
                                             error: Any) -> None:
    assert control(mail_sandbox, "faults", {**fault, "method": "SMTP", "path": "DATA"}).status_code == 201
    with pytest.raises(error), smtp(mail_sandbox) as client:
        client.send_message(reply())
    assert state(mail_sandbox)["outbound"] == [] and mailbox(mail_sandbox, "Sent") == []


def test_an_imap_connection_reset_is_a_fault_like_the_others(mail_sandbox: EmulatorServer) -> None:
    control(mail_sandbox, "faults", {"kind": "reset", "method": "IMAP", "path": "CONNECT"})
    with pytest.raises((imaplib.IMAP4.abort, ConnectionError, EOFError, OSError)):
        imaplib.IMAP4("127.0.0.1", port(mail_sandbox, "imap"))
    with imap(mail_sandbox):  # the next one is served
        pass
    calls = requests.get(f"{mail_sandbox.url}/_sandbox/calls", timeout=10).json()
    assert calls["by_endpoint"]["IMAP CONNECT"] == 2


def test_append_answers_appenduid_and_odd_bytes_come_back_unchanged(mail_sandbox: EmulatorServer) -> None:
    raw = b"From: ana@example.net\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nLatin-1 \xe9 and UTF-8 \xc3\xa9\r\n"
    with smtp(mail_sandbox, login=False) as client:
        client.sendmail(CUSTOMER, [DEFAULT_ADDRESS.upper()], raw)  # addresses compare case-insensitively
    with imap(mail_sandbox) as client:
        _, [uids] = client.uid("SEARCH", "ALL")
        _, fetched = client.uid("FETCH", uids, "(BODY.PEEK[])")
        status, answer = client.append("Sent", "(\\Seen)", None, reply().as_bytes())
    assert fetched[0][1] == raw
    assert status == "OK" and b"APPENDUID" in answer[0]
    assert [m["subject"] for m in mailbox(mail_sandbox)] == ["café"]


def test_bad_seed_requests_say_what_is_wrong(mail_sandbox: EmulatorServer) -> None:
    cases = [("inbound", {"from": "not an address", "text": "hi"}, "is not an email address"),
             ("inbound", {"from": CUSTOMER}, "'text' is missing"),
             ("deliver", {"to": "nobody@crmhub.test", "raw": "Subject: x\r\n\r\ny"}, "has no mailbox here"),
             ("deliver", {"to": DEFAULT_ADDRESS, "raw": 5}, "'raw' must be the message as text"),
             ("inbound", {"from": CUSTOMER, "text": "x", "headers": {"Bad Name": "v"}}, "is not a header field name"),
             ("inbound", {"from": CUSTOMER, "text": "x", "subject": "two\nlines"}, "linefeed"),
             ("accounts", {"address": "sales", "password": "x"}, "is not an email address")]
    for what, body, said in cases:
        answer = control(mail_sandbox, what, body)
        assert answer.status_code == 400 and said in answer.json()["error"], (what, answer.text)
    assert mailbox(mail_sandbox) == []


def test_garbage_over_smtp_is_stored_as_given_and_the_rest_still_flows(mail_sandbox: EmulatorServer) -> None:
    odd = [b"\x00\xff no headers at all", b"", b"Subject: a\r\nno colon in this line\r\n\r\nx",
           b"X-Many: x\r\n" * 5000 + b"\r\nbody"]
    with smtp(mail_sandbox, login=False) as client:
        for raw in odd:
            assert client.sendmail(CUSTOMER, [DEFAULT_ADDRESS], raw) == {}
    made = control(mail_sandbox, "inbound", {"from": CUSTOMER, "subject": "after", "text": "fine"})
    assert made.status_code == 201
    with imap(mail_sandbox, readonly=True) as client:
        _, [uids] = client.uid("SEARCH", "ALL")
        assert len(uids.split()) == len(odd) + 1
        _, fetched = client.uid("FETCH", uids.split()[0], "(BODY.PEEK[])")
    assert fetched[0][1].rstrip(b"\r\n") == odd[0]


def test_a_new_account_gets_its_own_mailbox(mail_sandbox: EmulatorServer) -> None:
    assert control(mail_sandbox, "accounts", {"address": "Sales@crmhub.test", "password": "pw"}).status_code == 201
    control(mail_sandbox, "inbound", {"from": CUSTOMER, "to": "sales@crmhub.test", "text": "a quote please"})
    with imaplib.IMAP4("127.0.0.1", port(mail_sandbox, "imap")) as client:
        client.login("sales@crmhub.test", "pw")
        client.select("INBOX")
        _, [uids] = client.uid("SEARCH", "ALL")
    assert len(uids.split()) == 1 and mailbox(mail_sandbox) == []


def test_a_restart_keeps_mailboxes_uids_and_uidvalidity(tmp_path: Path) -> None:
    state_file = tmp_path / "mail.json"
    with EmulatorServer(MailEmulator(state_file=state_file)) as first:
        made = control(first, "inbound", {"from": CUSTOMER, "subject": "one", "text": "1"}).json()
        with smtp(first) as client:
            client.send_message(reply())
        with imap(first) as client:
            client.uid("STORE", str(made["uid"]), "+FLAGS", "(\\Seen)")
        before = state(first)
    with EmulatorServer(MailEmulator(state_file=state_file)) as second, imap(second) as client:
        assert client.untagged_responses["UIDVALIDITY"] == [str(made["uidvalidity"]).encode()]
        _, flags = client.uid("FETCH", str(made["uid"]), "(FLAGS)")
        assert b"\\Seen" in flags[0]
        control(second, "inbound", {"from": CUSTOMER, "subject": "two", "text": "2"})
        client.noop()  # a selected mailbox shows new mail on the next command's untagged EXISTS
        _, [uids] = client.uid("SEARCH", "ALL")
        assert [int(u) for u in uids.split()] == [made["uid"], made["uid"] + 1]
        assert state(second)["outbound"] == before["outbound"]
