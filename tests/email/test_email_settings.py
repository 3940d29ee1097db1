"""channels.email: what an admin may write, and what is refused with the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from crmhub.connectors.email_settings import EmailSettings, build_email

GOOD = {"address": "Support@Example.com", "display_name": "Acme Support",
        "imap": {"host": "imap.example.com", "password": "env:EMAIL_PASSWORD"},
        "smtp": {"host": "smtp.example.com", "security": "starttls"}}


def test_defaults_fill_ports_and_logins() -> None:
    settings = EmailSettings.model_validate(GOOD)
    channel = build_email(settings, secret=lambda path: {"channels.email.imap.password": "pw"}[path])
    assert settings.address == "support@example.com"
    assert (channel.imap_endpoint.port, channel.imap_endpoint.security, channel.imap_endpoint.username) == (
        993, "ssl", "support@example.com")
    assert (channel.smtp_endpoint.port, channel.smtp_endpoint.password) == (587, "pw")  # the IMAP password
    assert "pw" not in repr(channel.smtp_endpoint)


@pytest.mark.parametrize("change, words", [
    ({"address": "support at example"}, "is not an email address"),
    ({"imap": {"host": "imap.example.com", "security": "none", "password": "env:P"}}, "in the clear"),
    ({"imap": {"host": "imap.example.com"}}, "imap.password is missing"),
    ({"imap": {"host": "imap.example.com", "password": "hunter2"}}, "inline secret"),
    ({"smtp": {"host": "smtp.example.com", "port": 70000}}, "less than or equal to 65535"),
    ({"page_size": 0}, "greater than or equal to 1"),
    ({"folders": "INBOX"}, "Extra inputs are not permitted"),
])
def test_bad_settings_are_refused_with_the_fix(change: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        EmailSettings.model_validate({**GOOD, **change})


def test_plain_text_is_allowed_on_loopback() -> None:
    settings = EmailSettings.model_validate({**GOOD, "imap": {"host": "127.0.0.1", "security": "none",
                                                             "password": "env:P"}})
    assert settings.imap.security == "none"
