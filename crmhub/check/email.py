"""Email preflight: both logins, the folders crmhub reads and searches, IDLE, and the SMTP server's offer.

Read only: IMAP is logged in to and its folders listed (nothing selected
read-write, nothing flagged); SMTP is logged in to and left with QUIT,
no message is sent.
"""

from __future__ import annotations

from collections.abc import Iterator

from crmhub.check._report import Finding, failed, listed, passed
from crmhub.check._where import Where
from crmhub.config import Config
from crmhub.connectors.email import EmailChannel, probe

SYSTEM = "email"


def check(channel: EmailChannel, config: Config, where: Where) -> Iterator[Finding]:
    settings = config.settings.channels.email
    assert settings is not None
    found = probe(channel)  # AuthError for a refused login: the module's credentials_fix
    yield passed(SYSTEM, "credentials", f"IMAP and SMTP logins of {channel.ours.value}")
    for key, folder in (("folder", settings.folder), ("sent_folder", settings.sent_folder)):
        if folder is None:
            continue
        if folder in found.folders:
            yield passed(SYSTEM, f"folder {folder}", "exists")
        else:
            yield failed(SYSTEM, f"folder {folder}",
                         f"folder '{folder}' named in {where('settings', ('channels', 'email', key))} is not in "
                         "the mailbox", f"name one of its folders: {listed(sorted(found.folders))}")
    if "IDLE" in found.imap_capabilities:
        yield passed(SYSTEM, "IMAP IDLE", "supported: new mail is seen as it arrives")
    else:
        yield passed(SYSTEM, "IMAP IDLE", f"not offered: new mail is seen at the next poll (every "
                                          f"{settings.poll_every})")
    yield passed(SYSTEM, "SMTP", f"{channel.smtp_endpoint.host}:{channel.smtp_endpoint.port}, logged in")
