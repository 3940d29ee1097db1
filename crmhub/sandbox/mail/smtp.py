"""The SMTP side of the sandbox mail server (aiosmtpd), MX and submission in one.

Without AUTH it is a domain's MX: it takes mail for its own accounts only
(a customer's email to support) and refuses relaying with 550 5.7.1. After
AUTH PLAIN or LOGIN as one of its accounts it is a submission server: mail
to its own accounts is delivered, mail to anyone else is kept as sent (the
`outbound` list of `/_sandbox/state`), and a copy goes to the sender's `Sent`
mailbox, as hosted mail services file what one submits, so a client can look
there before sending again after a lost answer.

Faults (armed like the HTTP ones, method `SMTP`, path `DATA`): `reset`
drops the connection before the message is taken, or with `after: true`
once it is delivered, the 250 never sent; `server_error` answers 451;
`rate_limit` answers 421 (too many messages).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class _Quiet(logging.Filter):
    """aiosmtpd warns "Session.login_data is deprecated" from its own AUTH code on every login: not ours to fix."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


# aiosmtpd's logger: its info and debug lines are the SMTP conversation (AUTH PLAIN's password, addresses).
_LOG = logging.getLogger("mail.log")
_LOG.setLevel(max(_LOG.level, logging.WARNING))
_LOG.addFilter(_Quiet())

Deliver = Callable[[str | None, str, list[str], bytes], Awaitable[None]]
"""(authenticated login or None, MAIL FROM, RCPT TOs, message): store it, raise nothing."""
FaultCheck = Callable[[], Any]
"""The armed fault for the next DATA, or None (crmhub.sandbox._server.Fault)."""


class MailHandler:
    """aiosmtpd handler: relay rules at RCPT, delivery and faults at DATA."""

    def __init__(self, is_local: Callable[[str], bool], check_password: Callable[[str, str], bool],
                 deliver: Deliver, take_fault: FaultCheck) -> None:
        self._is_local = is_local
        self._check_password = check_password
        self._deliver = deliver
        self._take_fault = take_fault

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        """AUTH PLAIN / LOGIN against the accounts (aiosmtpd's authenticator callback)."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        ok = self._check_password(login, auth_data.password.decode("utf-8", "replace"))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if not session.authenticated and not self._is_local(address):
            return "550 5.7.1 Relaying denied: authenticate first (AUTH PLAIN) to send outside this server"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._take_fault()
        if fault is not None and fault.kind == "reset" and not fault.after:
            _reset(server)
            return "451 4.3.0 connection reset"  # never sent: the connection is gone
        if fault is not None and fault.kind == "server_error":
            return "451 4.3.0 Temporary server error, try again later"
        if fault is not None and fault.kind == "rate_limit":
            return "421 4.7.0 Too many messages, try again later"
        login = session.auth_data if session.authenticated and isinstance(session.auth_data, str) else None
        raw = envelope.original_content or b""
        await self._deliver(login, envelope.mail_from or "", list(envelope.rcpt_tos), raw)
        if fault is not None and fault.kind == "reset":
            _reset(server)  # delivered; the client never hears so
        return "250 2.0.0 OK: queued"


def _reset(server: SMTP) -> None:
    """Drop the client's connection with a TCP RST (SO_LINGER 0), as a crashed server would."""
    transport = cast(asyncio.Transport | None, server.transport)
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
