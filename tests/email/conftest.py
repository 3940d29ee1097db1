"""The email tests' mail server: one private Dovecot + Postfix per test session (worker), emptied per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.email.mailserver import MailServer, MailServerAbsent, start

SUPPORT = "support@crmhub.test"  # crmhub's mailbox
OTHER_SUPPORT = "help@crmhub.test"  # a second mailbox of ours
CUSTOMERS = ("jane@customers.test", "bob@customers.test")


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
