"""Mail as customers' clients, autoresponders and mail servers write it, for the email tests."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime
from datetime import UTC, datetime

SUPPORT = "support@crmhub.test"  # crmhub's mailbox
OTHER_SUPPORT = "help@crmhub.test"  # a second mailbox of ours
CUSTOMERS = ("jane@customers.test", "bob@customers.test")
JANE, BOB = CUSTOMERS


def customer_mail(sender: str, message_id: str, text: str = "Where is my order?", *, subject: str = "My order",
                  name: str = "", in_reply_to: str | None = None, references: tuple[str, ...] = (),
                  html: str | None = None, to: str = SUPPORT) -> EmailMessage:
    """A customer's message; `html` makes it HTML-only (as some webmail clients send)."""
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>" if name else sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        message["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        message["References"] = " ".join(f"<{r}>" for r in references)
    if html is not None:
        message.set_content(html, subtype="html")
    else:
        message.set_content(text)
    return message


def auto_reply(sender: str, message_id: str, **headers: str) -> EmailMessage:
    """An out-of-office answer, marked as RFC 3834 says (or with the `headers` given instead)."""
    message = customer_mail(sender, message_id, "I am out of the office until Monday.", subject="Out of office")
    for name, value in (headers or {"Auto-Submitted": "auto-replied"}).items():
        message[name.replace("_", "-")] = value
    return message


def bounce(original_id: str, *, to: str = SUPPORT) -> bytes:
    """A delivery status notification (RFC 3464) from a mail server, about the message `original_id`."""
    return f"""\
From: MAILER-DAEMON@customers.test (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@customers.test>
Date: {format_datetime(datetime.now(UTC))}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

This is the mail system. Your message could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; customers.test

Final-Recipient: rfc822; gone@customers.test
Action: failed
Status: 5.1.1

--b1
Content-Type: text/rfc822-headers

From: {to}
To: gone@customers.test
Subject: Re: My order
Message-ID: <{original_id}>

--b1--
""".replace("\n", "\r\n").encode()
