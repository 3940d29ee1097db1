"""channels.email through the real loader: what an admin may write, and what is refused with file, line and fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crmhub.channels.registry import load
from crmhub.connectors._retry import Retrier
from tests.config.conftest import ENV, SETTINGS, ConfigDir

EMAIL = """\
      email:
        address: Support@Example.com
        display_name: Acme Support
        imap: {host: imap.example.com, password: env:EMAIL_PASSWORD}
        smtp: {host: smtp.example.com, security: starttls}
"""


@pytest.fixture
def mail_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConfigDir]:
    monkeypatch.chdir(tmp_path)
    yield ConfigDir(tmp_path)


def write(cfg: ConfigDir, block: str) -> None:
    cfg.write(settings=SETTINGS.rstrip() + "\n" + block)


def test_the_block_builds_the_connector_with_default_ports_and_logins(mail_cfg: ConfigDir) -> None:
    write(mail_cfg, EMAIL)
    config = mail_cfg.load(env={**ENV, "EMAIL_PASSWORD": "mail-very-secret"})
    channel = load("email").build(config, Retrier())
    assert channel.ours.value == "support@example.com" and channel.display_name == "Acme Support"
    assert (channel.imap_endpoint.port, channel.imap_endpoint.security, channel.imap_endpoint.username) == (
        993, "ssl", "support@example.com")
    assert (channel.smtp_endpoint.port, channel.smtp_endpoint.password) == (587, "mail-very-secret")
    assert "mail-very-secret" not in repr(channel.smtp_endpoint) + repr(config)
    assert "email" in config.settings.channels.enabled_names()


@pytest.mark.parametrize("block, words", [
    (EMAIL.replace("Support@Example.com", "support at example"), "is not an email address"),
    (EMAIL.replace("{host: imap.example.com,", "{host: imap.example.com, security: none,"), "in the clear"),
    (EMAIL.replace(", password: env:EMAIL_PASSWORD}", "}"), "imap.password is missing"),
    (EMAIL.replace("env:EMAIL_PASSWORD", "hunter2"), "inline secret"),
    (EMAIL.replace("security: starttls", "security: tls"), "security"),
    (EMAIL + "        page_size: 0\n", "page_size"),
    (EMAIL + "        folders: INBOX\n", "unknown key 'folders'"),
])
def test_bad_blocks_are_refused_with_file_and_line(mail_cfg: ConfigDir, block: str, words: str) -> None:
    write(mail_cfg, block)
    problems = mail_cfg.problems(env={**ENV, "EMAIL_PASSWORD": "mail-very-secret"})
    assert any(words in p and p.startswith("settings.yaml:") for p in problems), problems
    assert not any("hunter2" in p or "mail-very-secret" in p for p in problems)


def test_a_missing_password_variable_is_named(mail_cfg: ConfigDir) -> None:
    write(mail_cfg, EMAIL)
    assert any("EMAIL_PASSWORD" in p for p in mail_cfg.problems(env=ENV))
