"""The email channel module (one support mailbox, IMAP in and SMTP out): `module.MODULE` implements the channel contract."""
