"""The mailboxes of the sandbox mail server: pymap's in-memory ("dict") backend.

pymap (a maintained IMAP4rev1 server library) holds the mailboxes and speaks
IMAP; this module adds what the sandbox needs on top of it: accounts made
from plain passwords, delivery into a named mailbox from outside an IMAP
session (SMTP, `/_sandbox/` seed actions), and a JSON dump and reload of every
mailbox, UIDs and UIDVALIDITY kept, so `crmhub sandbox --state-dir` restarts
with the same mailboxes a client's UID cursor points into.

Everything here runs on the mail server's event loop (see server.py).
"""

from __future__ import annotations

from argparse import Namespace
from datetime import UTC, datetime
from email import policy
from email.parser import BytesHeaderParser
from typing import Any

from pymap.backend.dict import Config, Identity, Login
from pymap.backend.dict.mailbox import MailboxData, MailboxSet, Message
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials.flag import Flag
from pymap.user import Passwords, UserMetadata

SENT = "Sent"
_HEADERS = BytesHeaderParser(policy=policy.default)


def imap_config() -> Config:
    """pymap's settings for a loopback test server: no TLS, LOGIN allowed in clear, no login delay."""
    args = Namespace(passlib_cfg=None, debug=False, proxy_protocol=None)
    return Config(args, host="127.0.0.1", port=0, demo_data=False, demo_user="", demo_password="",
                  tls_enabled=False, secure_auth=False, reject_dnsbl=False, invalid_user_sleep=0.0)


class Mailstore:
    """Accounts and their mailboxes (pymap's Login and MailboxSets)."""

    def __init__(self) -> None:
        self.config = imap_config()
        self.login = Login(self.config)
        self.passwords: dict[str, str] = {}
        self.save_sent: dict[str, bool] = {}
        self._described: dict[object, dict[str, str | None]] = {}
        """A message's JSON fields by pymap's content id: a dump parses each message once, not once per dump."""

    async def add_account(self, address: str, password: str, *, save_sent: bool = True) -> None:
        """An IMAP/SMTP login `address` with `password` (replaces the password of an existing one).

        `save_sent`: mail it submits over SMTP is also filed in its `Sent` mailbox.
        """
        hashed = await Passwords(self.config).hash_password(password)
        self.login.users_dict[address] = UserMetadata(self.config, address, password=hashed)
        self.passwords[address] = password
        self.save_sent[address] = save_sent
        await self._mailbox(address, SENT)  # there from the start, as at a hosted mail service

    async def clear(self) -> None:
        """No accounts, no mail."""
        self.login.users_dict.clear()
        self.config.set_cache.clear()
        self.passwords.clear()
        self.save_sent.clear()
        self._described.clear()

    def has_account(self, address: str) -> bool:
        return address in self.login.users_dict

    def check_password(self, address: str, password: str) -> bool:
        """SMTP AUTH's check (IMAP logins go through pymap's own)."""
        return self.passwords.get(address) == password

    async def deliver(self, address: str, raw: bytes, *, mailbox: str = "INBOX", when: datetime | None = None,
                      flags: frozenset[str] = frozenset(), uid: int | None = None) -> tuple[int, int]:
        """Store `raw` in one of `address`'s mailboxes (made if missing); returns (UIDVALIDITY, UID)."""
        box = await self._mailbox(address, mailbox)
        if uid is not None:  # a reload: the UID the message had before
            box._max_uid = uid - 1  # pymap's dict backend has no public way to keep UIDs
        message = await box.append(AppendMessage(raw, when or datetime.now(UTC), frozenset(Flag(f) for f in flags)),
                                   recent=True)
        return box.uid_validity, message.uid

    async def dump(self) -> dict[str, Any]:
        """Every account's mailboxes as JSON-able data (raw messages as text, bytes kept by surrogateescape)."""
        out: dict[str, Any] = {}
        for address in sorted(self.login.users_dict):
            boxes = await self._mailboxes(address)
            names = [entry.name for entry in (await boxes.list_mailboxes()).list()]
            out[address] = {"password": self.passwords.get(address, ""), "save_sent": self.save_sent.get(address, True),
                            "mailboxes": {}}
            for name in names:
                box = await boxes.get_mailbox(name)
                messages = []
                async for message in box.messages():
                    if message.expunged:
                        continue
                    messages.append({
                        "uid": message.uid, **self._describe(message),
                        "flags": sorted(str(flag) for flag in message.permanent_flags),
                        "internal_date": message.internal_date.isoformat(),
                    })
                out[address]["mailboxes"][name] = {"uidvalidity": box.uid_validity, "uidnext": box._max_uid + 1,
                                                   "messages": sorted(messages, key=lambda m: int(str(m["uid"])))}
        return out

    def _describe(self, message: Message) -> dict[str, str | None]:
        """Message-ID, From, Subject and the raw text of a stored message (cached: contents never change)."""
        described = self._described.get(message.email_id)
        if described is None:
            raw = bytes(message._content or b"")  # the dict backend keeps it whole
            headers = _HEADERS.parsebytes(raw)
            described = {"message_id": _text(headers.get("Message-ID")), "from": _text(headers.get("From")),
                         "subject": _text(headers.get("Subject")), "raw": raw.decode("utf-8", "surrogateescape")}
            self._described[message.email_id] = described
        return described

    async def load(self, dumped: dict[str, Any]) -> None:
        """Rebuild the mailboxes of a `dump()` (same UIDVALIDITY, UIDs and flags)."""
        for address, account in dumped.items():
            await self.add_account(address, str(account.get("password", "")),
                                   save_sent=bool(account.get("save_sent", True)))
            for name, saved in account.get("mailboxes", {}).items():
                box = await self._mailbox(address, name)
                box._uid_validity = int(saved["uidvalidity"])
                for message in saved["messages"]:
                    await self.deliver(address, message["raw"].encode("utf-8", "surrogateescape"), mailbox=name,
                                       when=datetime.fromisoformat(message["internal_date"]),
                                       flags=frozenset(message["flags"]), uid=int(message["uid"]))
                box._max_uid = max(box._max_uid, int(saved["uidnext"]) - 1)

    async def _mailboxes(self, address: str) -> MailboxSet:
        """`address`'s MailboxSet, the one pymap's sessions for that login use."""
        cached = self.config.set_cache.get(address)
        if cached is None:
            async with Identity(address, self.login, None, frozenset()).new_session() as session:
                return session.mailbox_set
        return cached[0]

    async def _mailbox(self, address: str, name: str) -> MailboxData:
        boxes = await self._mailboxes(address)
        try:
            return await boxes.get_mailbox(name)
        except KeyError:
            await boxes.add_mailbox(name)
            return await boxes.get_mailbox(name)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
