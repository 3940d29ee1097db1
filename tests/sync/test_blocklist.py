"""The blocklist: exact values and patterns over normalised identities."""

from __future__ import annotations

from crmhub.identities import email, phone, x_account
from crmhub.sync.blocklist import Blocklist


def test_values_and_patterns_block_normalised_identities() -> None:
    blocklist = Blocklist.of(["+10000000000", "support@acme.com", "@AcmeHelp"], [r"^noreply@", r"^\+1555000"])
    assert blocklist.blocks(phone("+1 000 000 0000"))
    assert blocklist.blocks(email("Support@Acme.com"))
    assert blocklist.blocks(email("noreply@shop.example"))
    assert blocklist.blocks(phone("(555) 000-1234"))
    assert blocklist.blocks(x_account("42", "acmehelp"))
    assert not blocklist.blocks(phone("(415) 555-0123"))
    assert blocklist.usable([phone("(555) 000-1234"), email("jane@example.com")]) == [email("jane@example.com")]
