"""The email tests' mail server: one private Dovecot + Postfix per test session (worker), emptied per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.email import EmailChannel, Endpoint

from tests.email.mailserver import MailServer, MailServerAbsent, start
from tests.email.messages import CUSTOMERS, OTHER_SUPPORT, SUPPORT


@pytest.fixture(scope="session")
def _mail_server() -> Iterator[MailServer]:
    try:
        server = start((SUPPORT, OTHER_SUPPORT, *CUSTOMERS))
    except MailServerAbsent as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mail_server(_mail_server: MailServer) -> MailServer:
    """Dovecot (IMAP with IDLE, LMTP) and Postfix (SMTP with AUTH) on free ports, every mailbox empty."""
    _mail_server.clear()
    return _mail_server


@pytest.fixture
def email_channel(mail_server: MailServer) -> Iterator[EmailChannel]:
    """crmhub's email connector on the support mailbox of `mail_server` (plain IMAP/SMTP on loopback, AUTH)."""
    channel = EmailChannel(
        address=SUPPORT, display_name="Acme Support",
        imap=Endpoint("127.0.0.1", mail_server.imap_port, "none", SUPPORT, mail_server.password),
        smtp=Endpoint("127.0.0.1", mail_server.smtp_port, "none", SUPPORT, mail_server.password),
        retrier=Retrier(RetryPolicy(max_attempts=3), sleep=lambda _s: None))
    yield channel
    channel.close()
