"""`MailEmulator`: the sandbox mail server (IMAP + SMTP) with the emulators' HTTP control plane.

The HTTP port answers only `/_sandbox/` (state, reset, faults, calls, clock,
and the seed actions `inbound`, `deliver`, `accounts`); the mail itself
goes over the `smtp` and `imap` listeners (server.py), started and stopped
with the HTTP server (`Emulator.start_listeners`). docs/sandbox/mail.md.

The mailboxes live in pymap's in-memory backend; `state` is refreshed from
it whenever it is read or persisted, so `/_sandbox/state` and `--state-dir`
see exactly what an IMAP client sees. Code on the mail loop never takes
`self.lock` (an HTTP thread holding it may be waiting on that loop).
"""

from __future__ import annotations

import asyncio
import copy
import re
import threading
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, ClassVar

from crmhub.sandbox._server import ControlAction, Emulator, SandboxClock
from crmhub.sandbox.mail.server import HOST, MailServers
from crmhub.sandbox.mail.smtp import MailHandler
from crmhub.sandbox.mail.store import SENT, Mailstore

DEFAULT_ADDRESS = "support@crmhub.test"
DEFAULT_PASSWORD = "sandbox-mail-password"  # also crmhub/defaults/sandbox-secrets/mail-password
SAVE_DELAY = 0.5  # seconds: mail arriving by SMTP reaches the state file this late at most (and on a clean stop)
_HEADERS = BytesHeaderParser(policy=policy.default)
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field-name: printable ASCII but the colon


class MailEmulator(Emulator):
    """A mail server holding the support mailbox; customers' mail in, our replies out (kept, never sent on)."""

    name: ClassVar[str] = "mail"
    listeners: ClassVar[tuple[str, ...]] = ("smtp", "imap")

    def __init__(self, *, clock: SandboxClock | None = None, state_file: str | Path | None = None) -> None:
        super().__init__(clock=clock, state_file=state_file)
        self._servers: MailServers | None = None
        self._outbound_lock = threading.Lock()
        self._file_lock = threading.Lock()
        self._save_pending = False

    # ---- Emulator hooks ----------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return {"accounts": {DEFAULT_ADDRESS: {"password": DEFAULT_PASSWORD, "mailboxes": {}}}, "outbound": []}

    def start_listeners(self, ports: dict[str, int]) -> dict[str, str]:
        store = Mailstore()
        handler = MailHandler(self._is_local, store.check_password, self._deliver_smtp, self._smtp_fault)
        self._servers = MailServers(store, handler, on_imap_connect=self._imap_connect)
        self._servers.start(smtp_port=ports.get("smtp", 0), imap_port=ports.get("imap", 0))
        self._servers.call(store.load(self.state["accounts"]))
        return self.listener_urls()

    def stop_listeners(self) -> None:
        if self._servers is not None:
            self.persist()  # what IMAP clients changed (flags, APPENDs, expunges) is saved on the way out
            self._servers.stop()
            self._servers = None

    def listener_urls(self) -> dict[str, str]:
        ports = self._running().ports
        return {name: f"{name}://{HOST}:{port}" for name, port in ports.items()}

    def control_actions(self) -> dict[str, ControlAction]:
        """`POST /_sandbox/inbound` (a customer writes), `deliver` (a raw message), `accounts` (a login)."""
        return {"inbound": self._inbound, "deliver": self._deliver_raw, "accounts": self._add_account}

    def snapshot(self) -> dict[str, Any]:
        self._refresh()
        with self._outbound_lock:  # the mail loop appends to `outbound` under this lock
            return copy.deepcopy(self.state)

    def persist(self) -> None:
        if self._servers is not None:
            self._refresh()
        self._write()

    def _write(self) -> None:
        """The state file, written by one thread at a time (HTTP threads and the mail loop both save)."""
        with self._file_lock, self._outbound_lock:
            super().persist()

    def reset(self) -> None:
        with self.lock:
            self.state = self.initial_state()
            if self._servers is not None:
                self._servers.call(self._servers.store.clear())
                self._servers.call(self._servers.store.load(self.state["accounts"]))
        super().reset()

    # ---- seed API (also in-process, as the demo seeds) -----------------------
    def receive_email(self, sender: str, text: str, *, subject: str = "", **fields: Any) -> dict[str, Any]:
        """A customer's email to support (`POST /_sandbox/inbound`; `fields`: to, message_id, in_reply_to...)."""
        return self._inbound({"from": sender, "text": text, "subject": subject, **fields})

    def outbound(self) -> list[dict[str, Any]]:
        """What was sent to addresses outside this server (our replies), oldest first."""
        with self._outbound_lock:
            return copy.deepcopy(self.state.get("outbound", []))

    # ---- seed actions (HTTP threads) ---------------------------------------
    def _inbound(self, body: dict[str, Any]) -> dict[str, Any]:
        """A customer's email to one of our accounts, composed from plain fields."""
        sender, to = str(body["from"]).strip(), str(body.get("to") or DEFAULT_ADDRESS).strip()
        if "@" not in parseaddr(sender)[1]:
            raise ValueError(f"'from' {sender!r} is not an email address (write e.g. ana@example.net)")
        message = EmailMessage()
        message["From"], message["To"] = sender, to
        message["Subject"] = str(body.get("subject") or "")
        message["Date"] = format_datetime(self.clock.now())
        message["Message-ID"] = str(body.get("message_id") or make_msgid(domain=parseaddr(sender)[1].split("@")[1]))
        for key, header in (("in_reply_to", "In-Reply-To"), ("references", "References")):
            if body.get(key):
                message[header] = str(body[key])
        for name, value in dict(body.get("headers") or {}).items():
            if not _HEADER_NAME.fullmatch(str(name)):
                raise ValueError(f"header name {name!r} is not a header field name (printable ASCII, no colon or "
                                 "space, e.g. Auto-Submitted)")
            message[str(name)] = str(value)
        message.set_content(str(body["text"]))
        if body.get("html"):
            message.add_alternative(str(body["html"]), subtype="html")
        return self._deliver_raw({"to": to, "raw": message.as_string(policy=policy.SMTP)})

    def _deliver_raw(self, body: dict[str, Any]) -> dict[str, Any]:
        """A raw RFC 5322 message (a bounce, an auto-reply) into an account's mailbox, as its MX would."""
        if not isinstance(body["raw"], str):
            raise TypeError("'raw' must be the message as text (RFC 5322: headers, a blank line, the body)")
        to, raw = str(body["to"]).strip().lower(), body["raw"].encode("utf-8", "surrogateescape")
        if not self._is_local(to):
            raise ValueError(f"{to!r} has no mailbox here; the accounts are {', '.join(self._accounts())}")
        servers = self._running()
        uidvalidity, uid = servers.call(servers.store.deliver(to, raw, mailbox=str(body.get("mailbox", "INBOX")),
                                                              when=self.clock.now()))
        self.persist()
        return {"id": _header(raw, "Message-ID"), "to": to, "uid": uid, "uidvalidity": uidvalidity}

    def _add_account(self, body: dict[str, Any]) -> dict[str, Any]:
        address = str(body["address"]).strip().lower()
        if "@" not in address:
            raise ValueError(f"'address' {address!r} is not an email address")
        servers = self._running()
        servers.call(servers.store.add_account(address, str(body["password"]),
                                               save_sent=bool(body.get("save_sent", True))))
        self.persist()
        return {"id": address}

    # ---- on the mail loop --------------------------------------------------
    async def _deliver_smtp(self, login: str | None, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        """One accepted SMTP message: local recipients' INBOX, the rest kept as sent, a copy in the sender's Sent."""
        store, now = self._running().store, self.clock.now()
        self._count("SMTP DATA")
        local = [r.lower() for r in rcpt_tos if self._is_local(r)]
        remote = [r for r in rcpt_tos if not self._is_local(r)]
        for address in dict.fromkeys(local):
            await store.deliver(address, raw, when=now)
        if remote:
            with self._outbound_lock:
                self.state.setdefault("outbound", []).append({
                    "id": _header(raw, "Message-ID"), "login": login, "mail_from": mail_from, "rcpt_tos": remote,
                    "at": now.isoformat(), "subject": _header(raw, "Subject"),
                    "in_reply_to": _header(raw, "In-Reply-To"), "references": _header(raw, "References"),
                    "raw": raw.decode("utf-8", "surrogateescape")})
        if login is not None and store.save_sent.get(login, True):
            await store.deliver(login, raw, mailbox=SENT, when=now, flags=frozenset({"\\Seen"}))
        if self.state_file is not None and not self._save_pending:
            # one save for a burst of mail: a dump per message would make a long run quadratic
            self._save_pending = True
            asyncio.get_running_loop().call_later(SAVE_DELAY, lambda: asyncio.ensure_future(self._save()))

    async def _save(self) -> None:
        """The delayed save of `_deliver_smtp` (on the mail loop)."""
        self._save_pending = False
        accounts = await self._running().store.dump()
        with self._outbound_lock:
            self.state["accounts"] = accounts
        self._write()

    def _smtp_fault(self) -> Any:
        return self.faults.take(("reset", "server_error", "rate_limit"), "SMTP", "DATA")

    def _imap_connect(self) -> bool:
        """Count an IMAP connection; False drops it (a `reset` fault, method IMAP, path CONNECT)."""
        self._count("IMAP CONNECT")
        return self.faults.take("reset", "IMAP", "CONNECT") is None

    # ---- helpers -------------------------------------------------------------
    def _running(self) -> MailServers:
        if self._servers is None:
            raise RuntimeError("the mail emulator's listeners are not started (use EmulatorServer)")
        return self._servers

    def _accounts(self) -> list[str]:
        if self._servers is None:
            return sorted(self.state["accounts"])
        return sorted(self._servers.store.passwords)

    def _is_local(self, address: str) -> bool:
        return address.strip().strip("<>").lower() in self._accounts()

    def _count(self, key: str) -> None:
        now = self.clock.time()
        self.calls[key] += 1
        self.call_times.append(now)
        self.call_log.append((now, key))

    def _refresh(self) -> None:
        """`state["accounts"]` from the live mailboxes."""
        if self._servers is None:
            return
        accounts = self._servers.call(self._servers.store.dump())
        with self._outbound_lock:
            self.state["accounts"] = accounts


def _header(raw: bytes, name: str) -> str | None:
    value = _HEADERS.parsebytes(raw).get(name)
    return None if value is None else str(value)
