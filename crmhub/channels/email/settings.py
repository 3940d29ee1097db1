"""The `channels.email` block of settings.yaml (the registry's `settings` for email).

A mailbox the customers write to, read by IMAP and answered by SMTP. The
passwords are secret references (`env:` / `file:`), never inline. Plain
text (`security: none`) is refused off loopback: it would send the
mailbox's password over the network in the clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from crmhub.config._model import Model
from crmhub.config._types import PositiveDuration, SecretRef, is_loopback, problem
from crmhub.identities import InvalidIdentity, email


class MailServerSettings(Model):
    """One server (IMAP or SMTP): where it is and how crmhub logs in."""

    host: str = Field(min_length=1, description="The server's host name.", examples=["imap.example.com"])
    port: int | None = Field(None, ge=1, le=65535, description="Its port; default by `security`: IMAP 993/143, "
                                                               "SMTP 465/587/25.")
    security: Literal["ssl", "starttls", "none"] = Field(
        "ssl", description="ssl: TLS from the start (IMAPS 993, SMTPS 465); starttls: upgrade a plain "
                           "connection (IMAP 143, submission 587); none: loopback only.")
    username: str | None = Field(None, description="Login name; default: the mailbox address (for SMTP: the IMAP "
                                                           "login name).")
    password: SecretRef | None = Field(None, description="Password or app password (env:/file:); the SMTP "
                                                         "server's default is the IMAP one.",
                                       examples=["env:EMAIL_PASSWORD"])
    ca_file: str | None = Field(None, description="A CA bundle to verify the server with, instead of the "
                                                  "system's (a private CA).")

    @model_validator(mode="after")
    def _no_plain_text_off_loopback(self) -> MailServerSettings:
        if self.security == "none" and not is_loopback(self.host):
            raise problem("mail_plaintext", f"security: none would send the password to {self.host} in the clear; "
                                            "use security: ssl (or starttls), or a server on 127.0.0.1")
        return self


class EmailSettings(Model):
    """A support mailbox: customers' mail in by IMAP, agents' replies out by SMTP."""

    enabled: bool = Field(True, description="Set false to switch the channel off and keep its settings.")
    address: str = Field(description="The address customers write to (our identity in every thread).",
                         examples=["support@example.com"])
    display_name: str = Field("", max_length=100, description="The name replies come from, e.g. Acme Support.")
    imap: MailServerSettings = Field(description="The IMAP server holding the mailbox.")
    smtp: MailServerSettings = Field(description="The SMTP server replies are submitted to.")
    folder: str = Field("INBOX", min_length=1, description="The folder customers' mail arrives in.")
    sent_folder: str | None = Field(None, description="Where the server keeps sent mail by itself (Gmail, "
                                                      "Microsoft 365), also searched before a resend.")
    poll_every: PositiveDuration = Field(timedelta(seconds=60), description="How often to poll the folder "
                                                                             "(IDLE wakes a poll sooner).")
    idle: bool = Field(True, description="Hold an IMAP IDLE between polls where the server has it.")
    page_size: int = Field(50, ge=1, le=500, description="Messages fetched per IMAP request (1..500).")
    max_message_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="Larger messages are dead letters, "
                                                                          "never downloaded.")
    lost_answer_wait: PositiveDuration = Field(timedelta(seconds=30), description="After an SMTP answer was lost, "
                                               "how long to wait for our copy to arrive before sending again.")

    @field_validator("address")
    @classmethod
    def _an_address(cls, value: str) -> str:
        try:
            return email(value).value
        except InvalidIdentity:
            raise problem("email_address", f"'{value[:60]}' is not an email address; write the mailbox's "
                                           "address, e.g. support@example.com") from None

    @model_validator(mode="after")
    def _passwords(self) -> EmailSettings:
        if self.imap.password is None:
            raise problem("email_password", "imap.password is missing; write imap.password: env:EMAIL_PASSWORD "
                                            "(the mailbox's password or app password)")
        return self

    def in_sandbox(self, host: str, ports: Mapping[str, int]) -> EmailSettings:
        """With `sandbox.enabled`: an IMAP or SMTP server on loopback with no port set takes the sandbox mail
        server's (`mail-imap`, `mail-smtp`: 8708 and 8707, or N+8 and N+7); an explicit port wins."""
        update = {kind: server.model_copy(update={"port": ports[f"mail-{kind}"]})
                  for kind, server in (("imap", self.imap), ("smtp", self.smtp))
                  if server.port is None and is_loopback(server.host) and f"mail-{kind}" in ports}
        return self.model_copy(update=update)
