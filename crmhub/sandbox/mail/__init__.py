"""A sandbox mail server: IMAP4rev1 (pymap) and SMTP (aiosmtpd) around one support mailbox.

See docs/sandbox/mail.md.
"""

from crmhub.sandbox.mail.emulator import DEFAULT_ADDRESS, DEFAULT_PASSWORD, MailEmulator

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_PASSWORD", "MailEmulator"]
