"""The email connector against a real Dovecot (IMAP, LMTP delivery) and Postfix (SMTP): reading, threading,
what opens no case, and replies out once."""

from __future__ import annotations

from dataclasses import replace
from email import message_from_bytes, policy

import pytest

from crmhub.connectors.email import EmailChannel, EmailPage, code_conversation
from crmhub.connectors.email_parse import reply_message_id
from crmhub.errors import PermanentError
from crmhub.model import Channel, Direction, Identity, IdentityKind, Interaction, OutboundMessage
from tests.email.lost_answer import LostAnswerRelay
from tests.email.mailserver import MailServer
from tests.email.messages import BOB, JANE, SUPPORT, auto_reply, bounce, customer_mail


def read_all(channel: EmailChannel, cursor: str | None = None) -> tuple[list[EmailPage], str | None]:
    pages = list(channel.pages(cursor))
    assert pages[-1].last
    return pages, pages[-1].cursor


def interactions(pages: list[EmailPage]) -> list[Interaction]:
    return [item for page in pages for item in page.interactions]


def test_a_customer_mail_is_read_once_by_uid_and_left_unseen(mail_server: MailServer,
                                                               email_channel: EmailChannel) -> None:
    mail_server.deliver(customer_mail(JANE, "m1@customers.test", name="Jane Doe"), SUPPORT, sender=JANE)

    pages, cursor = read_all(email_channel)
    [item] = interactions(pages)
    assert item.channel is Channel.EMAIL and item.direction is Direction.INBOUND
    assert item.external_id == "m1@customers.test"
    assert item.conversation_key == "email:m1@customers.test"
    assert item.sender == Identity(IdentityKind.EMAIL, JANE) and item.sender.display == "Jane Doe"
    assert item.recipient.value == SUPPORT
    assert item.text == "My order\n\nWhere is my order?"  # a new thread's subject leads its text

    again, _ = read_all(email_channel, cursor)
    assert interactions(again) == []  # the cursor moved past it
    mail_server.deliver(customer_mail(BOB, "m2@customers.test"), SUPPORT, sender=BOB)
    [second] = interactions(read_all(email_channel, cursor)[0])
    assert second.external_id == "m2@customers.test"
    with mail_server.imap(SUPPORT) as client:  # people reading the same mailbox still see it as new
        client.select_folder("INBOX", readonly=True)
        assert client.search(["UNSEEN"]) == client.search(["ALL"])


def test_a_rebuilt_folder_is_read_again_from_its_start(mail_server: MailServer, email_channel: EmailChannel) -> None:
    mail_server.deliver(customer_mail(JANE, "m1@customers.test"), SUPPORT, sender=JANE)
    _, cursor = read_all(email_channel)
    mail_server.clear()  # a new UIDVALIDITY: old UIDs mean nothing now
    mail_server.deliver(customer_mail(BOB, "m2@customers.test"), SUPPORT, sender=BOB)
    pages, new_cursor = read_all(email_channel, cursor)
    assert [i.external_id for i in interactions(pages)] == ["m2@customers.test"]
    assert new_cursor is not None and new_cursor.split(":")[0] != cursor.split(":")[0]


def test_replies_thread_into_the_first_message_of_their_thread(mail_server: MailServer,
                                                               email_channel: EmailChannel) -> None:
    mail_server.deliver(customer_mail(JANE, "root@customers.test"), SUPPORT, sender=JANE)
    mail_server.deliver(customer_mail(JANE, "second@customers.test", "Any news?", subject="Re: My order",
                                      in_reply_to="ours@crmhub.test",
                                      references=("root@customers.test", "ours@crmhub.test")), SUPPORT, sender=JANE)
    mail_server.deliver(customer_mail(JANE, "third@customers.test", "Hello?", in_reply_to="root@customers.test"),
                        SUPPORT, sender=JANE)
    mail_server.deliver(customer_mail(JANE, "new@customers.test", "Another thing", subject="My order"),
                        SUPPORT, sender=JANE)
    items = interactions(read_all(email_channel)[0])
    assert [i.conversation_key for i in items] == ["email:root@customers.test"] * 3 + ["email:new@customers.test"]
    assert items[1].text == "Any news?"  # a reply's subject is not repeated into its text


def test_a_reply_keeps_what_the_customer_wrote_not_what_they_quoted(mail_server: MailServer,
                                                                   email_channel: EmailChannel) -> None:
    mail_server.deliver(customer_mail(JANE, "r1@customers.test", "Thanks, and the invoice?\n\nOn Mon, 7 Dec 2026 "
                                      "at 10:00, Acme Support <support@crmhub.test> wrote:\n> It ships tomorrow.\n",
                                      in_reply_to="root@customers.test"), SUPPORT, sender=JANE)
    mail_server.deliver(customer_mail(BOB, "r2@customers.test", in_reply_to="root2@customers.test",
                                      html='<div>Yes please</div><div class="gmail_quote"><div>On Mon, Acme '
                                           'wrote:</div><blockquote>It ships tomorrow.</blockquote></div>'),
                        SUPPORT, sender=BOB)
    mail_server.deliver(customer_mail(BOB, "r3@customers.test", "> all quoted", in_reply_to="root2@customers.test"),
                        SUPPORT, sender=BOB)
    texts = [i.text for i in interactions(read_all(email_channel)[0])]
    assert texts == ["Thanks, and the invoice?", "Yes please", "> all quoted"]  # nothing left: all of it kept


def test_html_becomes_text_and_attachments_are_recorded_not_kept(mail_server: MailServer,
                                                                  email_channel: EmailChannel) -> None:
    message = customer_mail(JANE, "h1@customers.test", subject="Broken",
                            html="<html><body><p>The <b>blue</b> one</p><p>is broken</p>"
                                 "<script>alert(1)</script></body></html>")
    message.add_attachment(b"%PDF-1.4 " + b"x" * 991, maintype="application", subtype="pdf", filename="invoice.pdf")
    message.add_attachment(b"\x89PNG" + b"y" * 96, maintype="image", subtype="png", filename="photo.png")
    mail_server.deliver(message, SUPPORT, sender=JANE)
    [item] = interactions(read_all(email_channel)[0])
    assert item.text == "Broken\n\nThe blue one\n\nis broken"
    assert item.media == ("invoice.pdf (1000 bytes)", "photo.png (100 bytes)")
    assert "alert" not in item.text and "PDF" not in str(item.raw)


@pytest.mark.parametrize("headers, reason", [
    ({"Auto-Submitted": "auto-replied"}, "auto-reply"),
    ({"Auto-Submitted": "auto-generated; owner-email=x@customers.test"}, "auto-reply"),
    ({"X-Autoreply": "yes"}, "auto-reply"),
    ({"Precedence": "bulk"}, "bulk mail"),
    ({"Precedence": "junk"}, "bulk mail"),
])
def test_auto_replies_open_no_case(mail_server: MailServer, email_channel: EmailChannel,
                                    headers: dict[str, str], reason: str) -> None:
    mail_server.deliver(auto_reply(JANE, "ooo@customers.test", **headers), SUPPORT, sender=JANE)
    mail_server.deliver(customer_mail(BOB, "real@customers.test"), SUPPORT, sender=BOB)
    pages, _ = read_all(email_channel)
    assert [i.external_id for i in interactions(pages)] == ["real@customers.test"]
    assert [(s.ref, s.reason) for p in pages for s in p.skipped] == [("ooo@customers.test", reason)]
    assert email_channel.skipped == {reason: 1}


def test_an_explicit_auto_submitted_no_is_a_person(mail_server: MailServer, email_channel: EmailChannel) -> None:
    mail_server.deliver(auto_reply(JANE, "human@customers.test", Auto_Submitted="no"), SUPPORT, sender=JANE)
    assert [i.external_id for i in interactions(read_all(email_channel)[0])] == ["human@customers.test"]


def test_bounces_open_no_case(mail_server: MailServer, email_channel: EmailChannel) -> None:
    mail_server.deliver(bounce("crmhub-0123@crmhub.test"), SUPPORT, sender="")  # null sender, as RFC 5321 says
    pages, _ = read_all(email_channel)
    assert interactions(pages) == []
    [skipped] = [s for p in pages for s in p.skipped]
    assert (skipped.reason, skipped.about) == ("bounce", "crmhub-0123@crmhub.test")


def test_bad_messages_are_dead_letters_and_the_rest_go_on(mail_server: MailServer,
                                                          email_channel: EmailChannel) -> None:
    no_sender = customer_mail(JANE, "nofrom@customers.test")
    del no_sender["From"]
    mail_server.deliver(no_sender, SUPPORT, sender=JANE)
    mail_server.deliver(b"\x00\xff garbage without headers \r\n\r\n\xfe\xfe", SUPPORT, sender=JANE)
    mail_server.deliver(customer_mail(JANE, "big@customers.test", "x" * 5000), SUPPORT, sender=JANE)
    mail_server.deliver(customer_mail(BOB, "fine@customers.test", "\u202eevil\u0000 text"), SUPPORT, sender=BOB)
    email_channel.max_message_bytes = 4000
    pages, _ = read_all(email_channel)
    assert [i.external_id for i in interactions(pages)] == ["fine@customers.test"]
    reasons = {m.ref.split(":")[1]: m.reason for p in pages for m in p.malformed}
    assert reasons["nofrom@customers.test"] == "no sender address in From"
    assert "max_message_bytes (4000); raise it to read it" in reasons["uid"]
    assert reasons["sha256"] == "no sender address in From"  # the garbage: no headers, so no id and no sender


def test_idle_wakes_when_mail_arrives(mail_server: MailServer, email_channel: EmailChannel) -> None:
    assert email_channel.wait_for_mail(0.2) is False  # connected, selected, nothing new
    mail_server.deliver(customer_mail(JANE, "m1@customers.test"), SUPPORT, sender=JANE)
    assert email_channel.wait_for_mail(60) is True


def reply(text: str = "It ships tomorrow.", *, key: str = "reply:salesforce:00a1", to: str = JANE,
          conversation: str = "email:m1@customers.test", in_reply_to: str | None = "m1@customers.test",
          **extra: object) -> OutboundMessage:
    return OutboundMessage(key=key, channel=Channel.EMAIL, conversation_key=conversation,
                           sender=Identity(IdentityKind.EMAIL, SUPPORT),
                           recipient=Identity(IdentityKind.EMAIL, to, display="Jane Doe"), text=text,
                           in_reply_to=in_reply_to, **extra)  # type: ignore[arg-type]


def test_a_reply_goes_out_once_threaded_and_its_copy_reads_back_as_the_same_item(
        mail_server: MailServer, email_channel: EmailChannel) -> None:
    mail_server.deliver(customer_mail(JANE, "m1@customers.test", subject="My order",
                                      references=("older@customers.test",), in_reply_to="older@customers.test"),
                        SUPPORT, sender=JANE)
    _, cursor = read_all(email_channel)

    sent = email_channel.send(reply())

    [raw] = mail_server.await_messages(JANE, 1)
    mail_server.await_messages(SUPPORT, 2)
    out = message_from_bytes(raw, policy=policy.default)
    assert out["Message-ID"] == f"<{reply_message_id('reply:salesforce:00a1', 'crmhub.test')}>" == f"<{sent.message_id}>"
    assert out["In-Reply-To"] == "<m1@customers.test>"
    assert out["References"] == "<older@customers.test> <m1@customers.test>"
    assert out["Subject"] == "Re: My order"
    assert str(out["From"]) == "Acme Support <support@crmhub.test>"
    assert out["Auto-Submitted"] is None and out["Bcc"] is None
    assert out.get_content().strip() == "It ships tomorrow."
    # our copy comes back in our own mailbox as the outbound item the echo already is
    [copy] = interactions(read_all(email_channel, cursor)[0])
    assert sent.echo is not None and copy.external_id == sent.echo.external_id == sent.message_id
    assert copy.direction is Direction.OUTBOUND and copy.recipient.value == JANE
    assert copy.conversation_key == "email:older@customers.test"


def test_a_survey_question_is_marked_automatic_and_an_agents_reply_is_not(mail_server: MailServer,
                                                                         email_channel: EmailChannel) -> None:
    email_channel.send(reply("How did we do? Answer 1 to 5.", key="salesforce:survey:7", in_reply_to=None))
    [raw] = mail_server.await_messages(JANE, 1)
    assert message_from_bytes(raw, policy=policy.default)["Auto-Submitted"] == "auto-generated"


def test_a_code_mail_starts_its_own_thread_which_is_the_conversation_its_copy_reads_back_in(
        mail_server: MailServer, email_channel: EmailChannel) -> None:
    ours, key = Identity(IdentityKind.EMAIL, SUPPORT), "crmhub:code:12:1"
    conversation = code_conversation(ours, Identity(IdentityKind.EMAIL, JANE), key)
    sent = email_channel.send(reply("Your code is 123456.", key=key, conversation=conversation, in_reply_to=None,
                                    code=True))
    [raw] = mail_server.await_messages(JANE, 1)
    out = message_from_bytes(raw, policy=policy.default)
    assert out["Auto-Submitted"] == "auto-generated" and out["Subject"] == "Your one-time code"
    assert out["In-Reply-To"] is None and out["References"] is None
    mail_server.await_messages(SUPPORT, 1)
    [copy] = interactions(read_all(email_channel)[0])  # a poll that reads our copy before the send is recorded
    assert copy.direction is Direction.OUTBOUND and copy.external_id == sent.message_id
    assert copy.conversation_key == conversation  # so it waits for the code's replies row: it is never a CRM's


def test_a_second_try_after_a_sent_reply_sends_nothing(mail_server: MailServer, email_channel: EmailChannel) -> None:
    from datetime import UTC, datetime
    mail_server.deliver(customer_mail(JANE, "m1@customers.test"), SUPPORT, sender=JANE)
    first = email_channel.send(reply())
    again = email_channel.send(reply(uncertain_since=datetime.now(UTC)))
    assert again.found_earlier and again.message_id == first.message_id
    assert len(mail_server.await_messages(JANE, 1)) == 1


def test_a_reply_to_an_address_that_bounces_reads_as_failed(mail_server: MailServer,
                                                            email_channel: EmailChannel) -> None:
    sent = email_channel.send(reply(to="gone@customers.test", in_reply_to=None))
    assert sent.message_id is not None
    # Postfix's LMTP delivery is refused (no such user), so Postfix returns a real DSN to our mailbox
    mail_server.await_messages(SUPPORT, 2)  # our copy and the bounce
    pages, _ = read_all(email_channel)
    [bounced] = [s for p in pages for s in p.skipped if s.reason == "bounce"]
    assert bounced.about == sent.message_id
    assert email_channel.delivery(sent.message_id).status.value == "failed"


def test_a_lost_smtp_answer_does_not_send_twice(mail_server: MailServer, email_channel: EmailChannel) -> None:
    mail_server.deliver(customer_mail(JANE, "m1@customers.test"), SUPPORT, sender=JANE)
    relay = LostAnswerRelay(mail_server.smtp_port)
    email_channel.smtp_endpoint = replace(email_channel.smtp_endpoint, port=relay.port)
    try:
        sent = email_channel.send(reply())  # the first try's answer is lost; the retry looks before sending
    finally:
        relay.close()
    assert relay.lost.is_set() and relay.server_answer.startswith(b"250")
    assert sent.found_earlier and sent.message_id == reply_message_id("reply:salesforce:00a1", "crmhub.test")
    [raw] = mail_server.await_messages(JANE, 1)
    assert mail_server.messages(JANE) == [raw]  # after our copy arrived (it did: it was found), still one


def test_a_reply_whose_earlier_try_never_reached_the_server_is_sent(mail_server: MailServer,
                                                                    email_channel: EmailChannel) -> None:
    from datetime import UTC, datetime, timedelta
    email_channel.lost_answer_wait = timedelta(0)
    sent = email_channel.send(reply(uncertain_since=datetime.now(UTC)))
    assert not sent.found_earlier
    assert len(mail_server.await_messages(JANE, 1)) == 1


def test_starttls_to_both_servers_verified_against_a_private_ca(mail_server: MailServer,
                                                                email_channel: EmailChannel) -> None:
    email_channel.imap_endpoint = replace(email_channel.imap_endpoint, security="starttls", ca_file=mail_server.ca_file)
    email_channel.smtp_endpoint = replace(email_channel.smtp_endpoint, security="starttls", ca_file=mail_server.ca_file)
    mail_server.deliver(customer_mail(JANE, "m1@customers.test"), SUPPORT, sender=JANE)
    assert [i.external_id for i in interactions(read_all(email_channel)[0])] == ["m1@customers.test"]
    email_channel.send(reply())
    assert len(mail_server.await_messages(JANE, 1)) == 1


def test_a_server_certificate_nobody_vouches_for_is_refused(mail_server: MailServer,
                                                            email_channel: EmailChannel) -> None:
    email_channel.imap_endpoint = replace(email_channel.imap_endpoint, security="starttls")  # the system's CAs
    with pytest.raises(PermanentError, match="TLS with the mail server failed"):
        list(email_channel.pages(None))
