"""Email: one mailbox read by IMAP (imapclient), replies sent by SMTP (smtplib).

Reading: the folder (INBOX) is read by UID. The cursor is
`<UIDVALIDITY>:<last UID>`; a poll fetches the UIDs above it, a page at a
time, with `BODY.PEEK[]` on a read-only SELECT, so crmhub never marks mail as
seen or moves it (people may read the same mailbox). When the server says
the folder's UIDVALIDITY changed (it was rebuilt), the whole folder is read
again and the ledger, keyed by Message-ID, drops what it already holds.
Each message becomes an Interaction, a `Skipped` (bounce, auto-reply,
read receipt, bulk mail, loop: counted by reason in `skipped`, never a
case) or a dead letter (`email_parse`). A message over `max_message_bytes`
is a dead letter without being downloaded. `wait_for_mail` holds an IMAP
IDLE (RFC 2177) where the server has it, so a poll can start as soon as mail
arrives; without IDLE it returns at once and polling alone finds the mail.

Sending: a reply is a text/plain message from our address to the customer,
`Re:` the subject of the message it answers (the customer's latest in the
conversation, else its first), with `In-Reply-To` naming it and
`References` (the parent's References plus the parent), so it threads in
the customer's client and their answer threads back into the conversation.
Its Message-ID is derived from the reply's idempotency key
(`email_parse.reply_message_id`): every try of one reply carries the same
id. The server is told to deliver a copy to our own mailbox too (envelope
only, no Bcc header), which is how a lost answer is settled: before a try
that follows an uncertain one, the mailbox (and `sent_folder`, if set) is
searched for that Message-ID, waiting up to `lost_answer_wait` for the copy
to arrive; found means sent, and nothing goes out again. An agent's reply
carries no `Auto-Submitted` header: a person wrote it (RFC 3834 section 5),
and marking it automatic would make the customer's own helpdesk ignore it.
A survey question or a one-time link code, which crmhub writes itself, is
`Auto-Submitted: auto-generated`, so no autoresponder answers it. A code
mail starts its own thread (`code_conversation`: keyed by its own
Message-ID, as the poll keys the copy it reads back), so that copy, read
before the send was recorded, waits for it and then goes into no CRM.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, formataddr
from typing import Any, Literal

import imapclient
import structlog
from imapclient.exceptions import IMAPClientError, LoginError

from crmhub.connectors._base import Connector
from crmhub.connectors._retry import Retrier
from crmhub.connectors.email_parse import (
    Skipped, conversation_key, is_ours, msg_ids, read_message, reply_message_id,
)
from crmhub.errors import AuthError, ConnectorError, PermanentError, Rejected, Timeout
from crmhub.identities import email as email_identity
from crmhub.model import (
    Channel, Delivery, Direction, Identity, Interaction, Malformed, OutboundMessage, ReplyStatus, SentMessage,
)
from crmhub.store.surveys import is_survey

Security = Literal["ssl", "starttls", "none"]
log = structlog.get_logger("crmhub.connectors.email")
SUBJECT_FALLBACK = "Your message"
CODE_SUBJECT = "Your one-time code"
IDLE_RENEW = 25 * 60  # RFC 2177: re-issue IDLE at least every 29 minutes


@dataclass(frozen=True)
class Endpoint:
    """A server and how to reach it: host, port, TLS and login (password never in a repr)."""

    host: str
    port: int
    security: Security = "ssl"
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str | None = None  # verify the server against this CA bundle instead of the system's


@dataclass(frozen=True)
class EmailPage:
    """One page of the folder, translated; `cursor` is `<uidvalidity>:<last uid>` of the page."""

    interactions: Sequence[Interaction]
    malformed: Sequence[Malformed]
    cursor: str | None
    last: bool
    skipped: Sequence[Skipped] = ()
    known: int = 0


class EmailChannel(Connector):
    """One mailbox: inbound by IMAP, agents' replies out by SMTP."""

    name = "email"
    tracks_delivery = True  # bounces of our replies turn them failed

    def __init__(self, *, address: str, imap: Endpoint, smtp: Endpoint, display_name: str = "",
                 folder: str = "INBOX", sent_folder: str | None = None, page_size: int = 50,
                 max_message_bytes: int = 50 * 1024 * 1024, timeout: float = 30.0,
                 lost_answer_wait: timedelta = timedelta(seconds=30), retrier: Retrier | None = None) -> None:
        super().__init__(retrier)
        ours = email_identity(address)
        self.ours = Identity(ours.kind, ours.value, display=display_name or ours.value)
        self.domain = self.ours.value.rpartition("@")[2]
        self.display_name = display_name
        self.imap_endpoint = imap
        self.smtp_endpoint = smtp
        self.folder = folder
        self.sent_folder = sent_folder
        self.page_size = max(1, page_size)
        self.max_message_bytes = max_message_bytes
        self.timeout = timeout
        self.lost_answer_wait = lost_answer_wait
        self.skipped: Counter[str] = Counter()
        """Messages read that opened no case, by reason (bounce, auto-reply...): for status and tests."""
        self._idle: imapclient.IMAPClient | None = None
        self._idle_exists = 0  # messages in the folder when the IDLE connection last looked
        self._idle_unsupported = False
        self._idle_lock = threading.Lock()

    # ---- errors ----------------------------------------------------------------
    def translate(self, exc: Exception) -> ConnectorError | None:
        if isinstance(exc, LoginError | smtplib.SMTPAuthenticationError):
            return AuthError(f"the mail server refused our login ({type(exc).__name__}); check the username "
                             "and password of channels.email", system=self.name)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = sorted({code for code, _ in exc.recipients.values()})
            return Rejected(f"the SMTP server refused the recipient (codes {codes}); check the customer's "
                            "address", system=self.name, status=codes[0] if codes else None)
        if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError):
            return Timeout(f"the mail server went away ({type(exc).__name__}); the message may or may not "
                           "have been accepted", system=self.name)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentError("the SMTP server offers no AUTH on this connection; use the provider's submission "
                                  "port (587 with security: starttls, or 465 with ssl)", system=self.name)
        if isinstance(exc, smtplib.SMTPResponseException):
            message = f"SMTP {exc.smtp_code}: {_server_text(exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500:
                return Timeout(message, system=self.name, status=exc.smtp_code)
            return Rejected(message, system=self.name, status=exc.smtp_code)
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            return PermanentError(f"TLS with the mail server failed ({type(exc).__name__}); check `security` "
                                  "and `ca_file`", system=self.name)
        if isinstance(exc, OSError | socket.timeout | imapclient.IMAPClient.AbortError):
            return Timeout(f"no answer from the mail server ({type(exc).__name__}); the call may or may not "
                           "have taken effect", system=self.name)
        if isinstance(exc, IMAPClientError):
            return PermanentError(f"IMAP: {_server_text(str(exc))}", system=self.name)
        return None

    # ---- IMAP ---------------------------------------------------------------------
    def _context(self, endpoint: Endpoint) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=endpoint.ca_file)

    def _connect(self) -> imapclient.IMAPClient:
        endpoint = self.imap_endpoint
        client = imapclient.IMAPClient(endpoint.host, port=endpoint.port, ssl=endpoint.security == "ssl",
                                       ssl_context=self._context(endpoint), timeout=self.timeout)
        client.normalise_times = False  # INTERNALDATE with its zone, not as naive local time
        try:
            if endpoint.security == "starttls":
                client.starttls(self._context(endpoint))
            client.login(endpoint.username or self.ours.value, endpoint.password)
        except BaseException:
            with suppress(Exception):
                client.shutdown()
            raise
        return client

    @contextmanager
    def _imap(self) -> Iterator[imapclient.IMAPClient]:
        client = self._connect()
        try:
            yield client
        finally:
            with suppress(Exception):
                client.logout()

    def pages(self, cursor: str | None) -> Iterator[EmailPage]:
        """Every message of the folder after `cursor`, a page at a time (see the module doc)."""
        validity, last_uid = _parse_cursor(cursor)
        with self.map_errors("imap.open"):
            client = self._connect()
        try:
            with self.map_errors("imap.select"):
                selected = client.select_folder(self.folder, readonly=True)
            now_validity = int(selected[b"UIDVALIDITY"])
            if now_validity != validity:
                if validity is not None:
                    log.warning("mail folder was rebuilt: reading it again", folder=self.folder)
                last_uid = 0
            with self.map_errors("imap.search"):
                uids = client.search(["UID", f"{last_uid + 1}:*"])
            uids = sorted(uid for uid in uids if uid > last_uid)
            if not uids:
                yield EmailPage((), (), f"{now_validity}:{last_uid}", True)
                return
            chunks = [uids[i:i + self.page_size] for i in range(0, len(uids), self.page_size)]
            for number, chunk in enumerate(chunks):
                with self.map_errors("imap.fetch"):
                    page = self._page(client, now_validity, chunk, last=number == len(chunks) - 1)
                self.skipped.update(item.reason for item in page.skipped)
                for item in page.skipped:
                    log.info("email opened no case", reason=item.reason)
                yield page
        finally:
            with suppress(Exception):
                client.logout()

    def _page(self, client: imapclient.IMAPClient, validity: int, uids: list[int], *, last: bool) -> EmailPage:
        sizes = client.fetch(uids, ["RFC822.SIZE", "INTERNALDATE"])
        small = [uid for uid in uids if int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0)) <= self.max_message_bytes]
        bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
        interactions: list[Interaction] = []
        malformed: list[Malformed] = []
        skipped: list[Skipped] = []
        for uid in uids:
            ref = f"{validity}:{uid}"
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if uid not in bodies:
                malformed.append(Malformed(self.name, f"email:uid:{ref}", f"message of {size} bytes is over "
                                           f"max_message_bytes ({self.max_message_bytes}); raise it to read it",
                                           {"uid": ref, "size": size}))
                continue
            received = _utc(sizes.get(uid, {}).get(b"INTERNALDATE"))
            item = read_message(bodies[uid].get(b"BODY[]", b""), ours=self.ours, received=received, uid=ref)
            if isinstance(item, Interaction):
                interactions.append(item)
            elif isinstance(item, Skipped):
                skipped.append(item)
            else:
                malformed.append(item)
        return EmailPage(interactions, malformed, f"{validity}:{uids[-1]}", last, skipped)

    def wait_for_mail(self, timeout: float) -> bool:
        """Block up to `timeout` s in IMAP IDLE; True when the folder has more messages than last time.

        The count is checked with NOOP before idling, since mail that arrived
        between two waits is not announced in the next IDLE. False at once
        when the server has no IDLE (poll on the interval instead), and after
        any error (the connection is dropped and opened again next time):
        waiting is an optimisation, never a source of truth.
        """
        with self._idle_lock:
            if self._idle_unsupported:
                return False
            try:
                if self._idle is None:
                    client = self._connect()
                    if not client.has_capability("IDLE"):
                        self._idle_unsupported = True
                        log.info("the IMAP server has no IDLE: new mail is read at each poll")
                        client.logout()
                        return False
                    self._idle_exists = int(client.select_folder(self.folder, readonly=True).get(b"EXISTS", 0))
                    self._idle = client
                client = self._idle
                if self._grew(client.noop()[1]):
                    return True
                client.idle()
                try:
                    responses = client.idle_check(timeout=min(timeout, IDLE_RENEW))
                finally:
                    responses += client.idle_done()[1]
                return self._grew(responses)
            except Exception as exc:
                log.warning("IMAP IDLE failed; polling finds the mail", error=type(exc).__name__)
                self._drop_idle()
                return False

    def _grew(self, responses: Sequence[Any]) -> bool:
        """Whether untagged `* n EXISTS` responses say the folder grew since the last wait."""
        counts = [int(r[0]) for r in responses if isinstance(r, tuple) and len(r) > 1 and r[1] == b"EXISTS"]
        if not counts:
            return False
        grew = max(counts) > self._idle_exists
        self._idle_exists = counts[-1]
        return grew

    def _drop_idle(self) -> None:
        client, self._idle = self._idle, None
        if client is not None:
            with suppress(Exception):
                client.shutdown()

    def close(self) -> None:
        """Drop the IDLE connection (the daemon's shutdown); a wait in it ends at once, from any thread."""
        client = self._idle
        if client is not None:
            with suppress(Exception):
                client.shutdown()

    # ---- sending --------------------------------------------------------------------
    def send(self, message: OutboundMessage) -> SentMessage:
        """Send one agent reply by SMTP, threaded to the message it answers (see the module doc).

        Raises:
            Rejected: the server refused the recipient or the message (5xx), with the server's words.
            AuthError: the SMTP login was refused.
            TransientError: no answer, or a 4xx, after the retry layer's attempts.
        """
        message_id = reply_message_id(message.key, self.domain)
        # A code starts its own thread (its conversation is keyed by its own Message-ID): it answers nothing.
        parent, thread = (None, ThreadInfo()) if message.code else self._answering(message)
        outgoing = self._compose(message, message_id, parent, thread)

        def send() -> SentMessage:
            self._submit(outgoing, message.recipient.value)
            return self._sent(message, message_id, found=False)

        def find_sent(_floor: datetime) -> SentMessage | None:
            return self._sent(message, message_id, found=True) if self._find_copy(message_id) else None

        return self.send_checked("smtp.send", message.uncertain_since, find_sent, send)

    def _answering(self, message: OutboundMessage) -> tuple[str | None, ThreadInfo]:
        """The Message-ID a reply answers, with that message's subject and References.

        The customer's latest message (the engine's `in_reply_to`) where the
        mailbox still holds it, else the conversation's root; a hashed id (a
        message without a usable Message-ID) is never put in a header.
        """
        root = _root(message.conversation_key)
        candidates = [c for c in (message.in_reply_to, root) if c and not c.startswith("sha256:")]
        for candidate in dict.fromkeys(candidates):
            thread = self.call("imap.thread", lambda c=candidate: self._thread_of(c))  # type: ignore[misc]
            if thread != ThreadInfo():
                return candidate, thread
        return root, ThreadInfo()

    def _compose(self, message: OutboundMessage, message_id: str, parent: str | None,
                 thread: ThreadInfo) -> EmailMessage:
        outgoing = EmailMessage()
        outgoing["From"] = formataddr((self.display_name, self.ours.value)) if self.display_name else self.ours.value
        display = message.recipient.display if message.recipient.display != message.recipient.value else ""
        outgoing["To"] = formataddr((display, message.recipient.value)) if display else message.recipient.value
        subject = thread.subject or SUBJECT_FALLBACK
        outgoing["Subject"] = (CODE_SUBJECT if message.code else
                               subject if subject.lower().startswith("re:") else f"Re: {subject}")
        outgoing["Date"] = format_datetime(datetime.now(UTC))
        outgoing["Message-ID"] = f"<{message_id}>"
        # `<crm>:<reply_ref>`: crmhub's own question, or its one-time code, not a person's words
        if is_survey(message.key.partition(":")[2]) or message.code:
            outgoing["Auto-Submitted"] = "auto-generated"  # RFC 3834: no autoresponder answers it
        if parent:
            outgoing["In-Reply-To"] = f"<{parent}>"
            references = [*(r for r in thread.references if r != parent), parent][-20:]
            outgoing["References"] = " ".join(f"<{r}>" for r in references)
        outgoing.set_content(message.text)
        return outgoing

    def _submit(self, outgoing: EmailMessage, recipient: str) -> None:
        """One SMTP transaction: to the customer, and a copy to our own mailbox (envelope only)."""
        with self._smtp() as smtp:
            recipients = [recipient] if recipient == self.ours.value else [recipient, self.ours.value]
            smtp.send_message(outgoing, from_addr=self.ours.value, to_addrs=recipients)

    @contextmanager
    def _smtp(self) -> Iterator[smtplib.SMTP]:
        """A logged-in SMTP session (TLS as `security` says), closed with QUIT."""
        endpoint = self.smtp_endpoint
        smtp_class = smtplib.SMTP_SSL if endpoint.security == "ssl" else smtplib.SMTP
        kwargs: dict[str, Any] = {"context": self._context(endpoint)} if endpoint.security == "ssl" else {}
        with smtp_class(endpoint.host, endpoint.port, timeout=self.timeout, **kwargs) as smtp:
            if endpoint.security == "starttls":
                smtp.starttls(context=self._context(endpoint))
            smtp.ehlo_or_helo_if_needed()
            if endpoint.username:
                smtp.login(endpoint.username, endpoint.password)
            yield smtp

    def _find_copy(self, message_id: str) -> bool:
        """Whether our copy of the message `message_id` is in the mailbox, waiting for it up to `lost_answer_wait`."""
        deadline = time.monotonic() + self.lost_answer_wait.total_seconds()
        folders = [self.folder, *([self.sent_folder] if self.sent_folder else [])]
        with self._imap() as client:
            while True:
                for folder in folders:
                    client.select_folder(folder, readonly=True)
                    if client.search(["HEADER", "Message-ID", f"<{message_id}>"]):
                        return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                client.select_folder(self.folder, readonly=True)
                if client.has_capability("IDLE"):
                    client.idle()
                    try:
                        client.idle_check(timeout=min(left, 5.0))
                    finally:
                        client.idle_done()
                else:
                    client.noop()
                    time.sleep(min(left, 1.0))

    def _thread_of(self, parent: str) -> ThreadInfo:
        """The subject and References of the message we answer, read from our mailbox (empty when gone)."""
        with self._imap() as client:
            client.select_folder(self.folder, readonly=True)
            uids = client.search(["HEADER", "Message-ID", f"<{parent}>"])
            if not uids:
                return ThreadInfo()
            fetched = client.fetch(uids[-1:], ["BODY.PEEK[HEADER.FIELDS (SUBJECT REFERENCES)]"])
        # Servers echo the field list their own way (Dovecot as asked, pymap sorted): take whichever came back.
        raw = next((value for key, value in next(iter(fetched.values())).items()
                    if key.startswith(b"BODY[HEADER.FIELDS")), b"")
        headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
        subject = " ".join(str(headers.get("Subject", "")).split())
        return ThreadInfo(subject, tuple(msg_ids(headers.get("References"))))

    def _sent(self, message: OutboundMessage, message_id: str, *, found: bool) -> SentMessage:
        echo = Interaction(channel=Channel.EMAIL, direction=Direction.OUTBOUND, external_id=message_id,
                           conversation_key=message.conversation_key, sender=self.ours,
                           recipient=message.recipient, text=message.text, occurred_at=datetime.now(UTC),
                           raw={"message_id": message_id})
        return SentMessage(message_id, ReplyStatus.SENT, echo=echo, found_earlier=found)

    def delivery(self, message_id: str) -> Delivery:
        """FAILED when a delivery report (bounce) about our message is in the mailbox, else SENT."""
        if not is_ours(message_id, self.domain):
            return Delivery(ReplyStatus.SENT)

        def look() -> bool:
            with self._imap() as client:
                client.select_folder(self.folder, readonly=True)
                return bool(client.search(["HEADER", "Content-Type", "report", "TEXT", f"<{message_id}>"]))

        if self.call("imap.bounces", look):
            return Delivery(ReplyStatus.FAILED, "bounced",
                            "the customer's mail server returned the reply (a bounce is in our mailbox); "
                            "check the address on the contact")
        return Delivery(ReplyStatus.SENT)


@dataclass(frozen=True)
class ThreadInfo:
    subject: str = ""
    references: tuple[str, ...] = ()


def code_conversation(ours: Identity, _target: Identity, key: str) -> str:
    """The conversation of the one-time code mail with idempotency key `key`: the thread its own Message-ID
    starts, as the poll keys our copy of it (and the customer's reply to it)."""
    return conversation_key(reply_message_id(key, ours.value.rpartition("@")[2]))


def _root(key: str) -> str | None:
    """The thread root a conversation key names (None for a hashed one: too long to be a header)."""
    prefix = f"{Channel.EMAIL.value}:"
    if not key.startswith(prefix) or key.startswith(f"{prefix}sha256:"):
        return None
    root = key[len(prefix):]
    return root if conversation_key(root) == key else None


def _parse_cursor(cursor: str | None) -> tuple[int | None, int]:
    """`<uidvalidity>:<uid>` -> (uidvalidity, uid); anything else reads the folder from its start."""
    if cursor:
        validity, _, uid = cursor.partition(":")
        if validity.isdigit() and uid.isdigit():
            return int(validity), int(uid)
    return None, 0


def _utc(value: object) -> datetime:
    """IMAP INTERNALDATE (imapclient gives naive local times unless told otherwise) in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _server_text(text: object) -> str:
    """A server's answer for an error message: decoded, one line, short."""
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return " ".join(raw.split())[:200]


@dataclass(frozen=True)
class MailboxProbe:
    """What `crmhub check` reads of the servers, read only: IMAP capabilities and folders, SMTP extensions."""

    imap_capabilities: frozenset[str]
    folders: tuple[str, ...]
    smtp_extensions: frozenset[str]


def probe(channel: EmailChannel) -> MailboxProbe:
    """Log in to both servers and read what they offer; nothing is sent, selected read-write or changed.

    Raises:
        AuthError: a login was refused; Timeout / PermanentError: a server is unreachable or its TLS fails.
    """
    with channel.map_errors("check.imap"), channel._imap() as client:
        capabilities = frozenset(c.decode("ascii", "replace").upper() for c in client.capabilities())
        folders = tuple(str(name) for _flags, _delimiter, name in client.list_folders())
    with channel.map_errors("check.smtp"), channel._smtp() as smtp:
        extensions = frozenset(name.upper() for name in smtp.esmtp_features)
    return MailboxProbe(capabilities, folders, extensions)
