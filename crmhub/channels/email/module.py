"""Email as a channel module: one support mailbox read by IMAP, agents' replies sent by SMTP (`channels.email`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crmhub.channels.contract import ChannelModule, PagesFn
from crmhub.channels.email.settings import EmailSettings, MailServerSettings
from crmhub.config import Config
from crmhub.connectors._retry import Retrier
from crmhub.connectors.email import EmailChannel, Endpoint, code_conversation
from crmhub.model import Channel, CodeRoute, Identity, IdentityKind
from crmhub.sync.replies import ChannelSender

DEFAULT_PORTS = {"imap": {"ssl": 993, "starttls": 143, "none": 143},
                 "smtp": {"ssl": 465, "starttls": 587, "none": 25}}
STREAM = "inbox"
CODE_TEXT = ("Your code is {code}.\n\nTo link this email address with the conversation you mentioned it in, reply to "
             "this email with the code. If that was not you, ignore this email: nothing is linked without the code.")


class EmailModule(ChannelModule):
    name = "email"
    credentials_fix = ("check channels.email: the mailbox's username and password (or app password) for "
                       "imap and smtp, and that the provider allows IMAP and SMTP logins for it")

    def build(self, config: Config, retrier: Retrier) -> EmailChannel:
        block: EmailSettings = self.settings(config)
        imap_password = config.secret("channels.email.imap.password").get_secret_value()
        smtp_password = (config.secret("channels.email.smtp.password").get_secret_value()
                         if block.smtp.password is not None else imap_password)
        return EmailChannel(
            address=block.address, display_name=block.display_name,
            imap=endpoint(block.imap, "imap", block.address, imap_password),
            smtp=endpoint(block.smtp, "smtp", block.imap.username or block.address, smtp_password),
            folder=block.folder, sent_folder=block.sent_folder, page_size=block.page_size,
            max_message_bytes=block.max_message_bytes, lost_answer_wait=block.lost_answer_wait, retrier=retrier)

    def streams(self, block: Any) -> list[str]:
        return [STREAM]

    def pages(self, connector: EmailChannel) -> Mapping[str, PagesFn]:
        return {STREAM: connector.pages}

    def partition(self, connector: EmailChannel) -> str:
        return f"{connector.ours.value}/{connector.folder}"

    def waiter(self, connector: EmailChannel, block: Any) -> Callable[[float], bool] | None:
        return connector.wait_for_mail if block.idle else None

    def close(self, connector: EmailChannel) -> None:
        connector.close()

    def senders(self, connector: EmailChannel) -> Mapping[Channel, ChannelSender]:
        return {Channel.EMAIL: connector}

    def own_identities(self, block: Any) -> set[Identity]:
        return {Identity(IdentityKind.EMAIL, block.address)}

    def code_routes(self, block: Any) -> list[CodeRoute]:
        """A claimed email address gets its code from the support mailbox, as a mail starting its own thread:
        keyed as our poll keys the copy it reads back (the thread of the code's own Message-ID)."""
        if not block.enabled:
            return []
        return [CodeRoute(IdentityKind.EMAIL, Channel.EMAIL, Identity(IdentityKind.EMAIL, block.address), CODE_TEXT,
                          code_conversation)]


def endpoint(server: MailServerSettings, kind: str, default_user: str, password: str) -> Endpoint:
    """A server's settings as the connector's `Endpoint`, with the port its `security` implies when unset."""
    return Endpoint(server.host, server.port or DEFAULT_PORTS[kind][server.security], server.security,
                    server.username or default_user, password, server.ca_file)


MODULE = EmailModule()
