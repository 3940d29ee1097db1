"""Twilio: SMS and WhatsApp messages and call logs into canonical Interactions (twilio SDK).

Retries: the SDK's own are off (TwilioHttpClient without max_retries); the
shared layer in `_retry` retries. The SDK reaches the sandbox, or any other
base URL, through the `requests.Session` it accepts (`http_client.session`).

Polling: Twilio lists messages newest first and filters only by send date,
so each poll re-reads from `cursor - overlap` and the ledger drops repeats;
the cursor is the newest send time seen (ISO 8601), never moved backwards,
and saved by the ingest loop with the last page of a run. While the
message webhooks are healthy the poll is only a reconcile for what one
missed, and re-reads a short window instead (`ReconcileWindow`); records
the ledger already holds (`known`, one lookup per page) are skipped before
they are translated. Calls work the same way by start time (always over
the full overlap), with one twist: a call still ringing or in progress is
not a call log yet, so the cursor stays close enough to its start for a
later poll to re-read it once it has ended.

The translations (`message_interaction`, `call_interaction`) are shared
with the webhook receiver (`twilio_hooks`), so a message or call seen both
ways is the same Interaction and the ledger stores it once.

Sending (`send`, agents' replies): Messages create from the number (or
`whatsapp:` sender) the customer wrote to, with a StatusCallback when
webhooks have a public URL. A create is not idempotent, so the send runs as
one retried operation whose later attempts, and any send after an uncertain
earlier one (`OutboundMessage.uncertain_since`), first list the messages from
our number to the customer and take one created since then with the same
body as the earlier send instead of sending again. Twilio's error codes are
turned into reasons with a fix (`ERROR_FIXES`), for the note on the case.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from crmhub.connectors._base import Connector, classify_status, retry_after_seconds
from crmhub.connectors._http import build_session
from crmhub.connectors._retry import Retrier
from crmhub.connectors.whatsapp_window import Template, closed_reason, fitting, window_open
from crmhub.errors import ConnectorError, Rejected
from crmhub.identities import WHATSAPP_PREFIX, InvalidIdentity, is_whatsapp_user, phone, whatsapp_user
from crmhub.model import (
    CallInfo,
    Channel,
    Delivery,
    Direction,
    Identity,
    Interaction,
    Malformed,
    OutboundMessage,
    ReplyStatus,
    SentMessage,
)

log = structlog.get_logger("crmhub.twilio")

DIRECTIONS = {"inbound": Direction.INBOUND}  # outbound-api, outbound-call, outbound-reply, outbound-dial: outbound
# A call is a call log once it has ended (https://www.twilio.com/docs/voice/api/call-resource#call-status-values).
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
API_ROOT = "/2010-04-01/Accounts"
MESSAGE_FIELDS = ("sid", "account_sid", "from_", "to", "body", "direction", "status", "num_media",
                  "num_segments", "error_code", "messaging_service_sid")
MESSAGE_DATES = ("date_sent", "date_created", "date_updated")
CALL_FIELDS = ("sid", "account_sid", "_from", "to", "direction", "status", "duration", "parent_call_sid",
               "phone_number_sid")
CALL_DATES = ("start_time", "end_time", "date_created", "date_updated")
# Outbound statuses as crmhub's reply statuses (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values).
REPLY_STATUSES = {"accepted": ReplyStatus.SENT, "scheduled": ReplyStatus.SENT, "queued": ReplyStatus.SENT,
                  "sending": ReplyStatus.SENT, "sent": ReplyStatus.SENT, "delivered": ReplyStatus.DELIVERED,
                  "read": ReplyStatus.DELIVERED, "undelivered": ReplyStatus.FAILED, "failed": ReplyStatus.FAILED,
                  "canceled": ReplyStatus.FAILED}
# What a Twilio error code means for a reply, and what to do (https://www.twilio.com/docs/api/errors).
ERROR_FIXES = {
    21211: "the customer's number is not a valid phone number; correct it on the contact and write to them again",
    21408: "this account may not send to the customer's country; enable it in Twilio's geo permissions",
    21610: "the customer has replied STOP to this number; they must text START to it before they can get messages",
    21612: "Twilio cannot route a message between our number and the customer's; use another channel",
    21614: "the customer's number is not a mobile number (a landline?); call them or use another channel",
    30003: "the customer's phone is unreachable (switched off or out of coverage); try again later",
    30005: "the customer's number does not exist or is out of service; check the number with the customer",
    30006: "the number is a landline or its carrier cannot take texts; call the customer or use another channel",
    30007: "the carrier filtered the message as spam; rephrase it (no shortened links) or use another channel",
    30008: "the carrier gave no reason; try again later or use another channel",
    21655: ("the template's Content SID is not one of this account's templates; copy it again from the Content "
            "Template Builder into channels.twilio.whatsapp_templates"),
    21656: "the template's variables were refused; check the variables of channels.twilio.whatsapp_templates",
    63016: ("WhatsApp's 24-hour window is closed: the customer last wrote more than 24 hours ago, and WhatsApp then "
            "only takes approved templates; reply after the customer writes again"),
}
CHECK_PAGES = 5  # pages of our messages to the customer an uncertain send looks through
MESSAGE_CHANNELS = (Channel.SMS, Channel.WHATSAPP)
WEBHOOK_FAILED = frozenset({"error", "too_large"})  # a message webhook answered without storing it
KnownFn = Callable[[Sequence[Channel], Sequence[str]], set[str]]
"""Which of these SIDs the ledger already holds on one of these channels."""


@dataclass(frozen=True)
class MessagePage:
    """One page, translated; `cursor` is the newest send (or start) time seen so far in the run."""

    interactions: Sequence[Interaction]
    malformed: Sequence[Malformed]
    cursor: str | None
    last: bool
    known: int = 0  # records skipped untranslated: the ledger already holds them


@dataclass
class ReconcileWindow:
    """How far before its cursor a message poll re-reads: `full`, or `quiet` while the webhooks are healthy.

    At 50 msg/s a 10-minute overlap is 30,000 messages re-read every poll to
    find the few hundred new ones. The overlap is there for messages listed
    late, behind the cursor; while message webhooks keep arriving and being
    stored, those came by webhook, and a message whose webhook was dropped is
    sent after the last poll's cursor, inside any window. So the window is
    `quiet` when a message webhook was stored within `quiet` and none failed
    to be stored within `full`; the first poll of a process always reads
    `full` (webhooks sent while it was down were answered by no one).

    Args:
        full: `channels.twilio.overlap`.
        quiet: the short window (`full` itself: never shorter).
        clock: monotonic seconds.
    """

    full: timedelta
    quiet: timedelta
    clock: Callable[[], float] = time.monotonic
    _stored_at: float | None = None
    _failed_at: float | None = None
    _read_in_full: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def webhook(self, outcome: str) -> None:
        """A message webhook's outcome (stored, repeat, dead_lettered, error...), from the receiver."""
        with self._lock:
            if outcome in WEBHOOK_FAILED:
                self._failed_at = self.clock()
            elif outcome in ("stored", "repeat", "dead_lettered"):
                self._stored_at = self.clock()

    def overlap(self) -> timedelta:
        """The window for the poll starting now."""
        with self._lock:
            now = self.clock()
            healthy = (self._read_in_full and self._stored_at is not None
                       and now - self._stored_at <= self.quiet.total_seconds()
                       and (self._failed_at is None or now - self._failed_at > self.full.total_seconds()))
            return self.quiet if healthy else self.full

    def read(self, overlap: timedelta) -> None:
        """A poll read every page of its window."""
        with self._lock:
            self._read_in_full = self._read_in_full or overlap >= self.full


class TwilioChannel(Connector):
    """Reads an account's SMS and WhatsApp messages and its call logs."""

    name = "twilio"

    tracks_delivery = True  # status callbacks, and the message's status on a fetch

    def __init__(self, *, account_sid: str, auth_token: str, base_url: str | None = None,
                 default_region: str = "US", page_size: int = 100, overlap: timedelta = timedelta(minutes=10),
                 timeout: float = 30.0, retrier: Retrier | None = None, status_callback: str | None = None,
                 whatsapp_templates: Sequence[Template] = (), default_language: str | None = None) -> None:
        """
        Args:
            status_callback: the URL Twilio POSTs sent messages' statuses to (the webhook receiver's
                `/webhooks/twilio/status` at its public URL); None: statuses are read by fetching.
            whatsapp_templates: approved templates for replies outside WhatsApp's 24-hour window, in order.
            default_language: the templates' fallback language (settings `languages.default`).
        """
        super().__init__(retrier)
        http = TwilioHttpClient(timeout=timeout)
        http.session = build_session(base_url=base_url, observer=self.observe_http, before=self.before_http, after=self.after_http)
        self.account_sid = account_sid
        self.default_region = default_region
        self.page_size = page_size
        self.overlap = overlap
        self.window = ReconcileWindow(full=overlap, quiet=overlap)
        """How far back message polls re-read (the app shortens `quiet` and reports webhooks); set any time."""
        self.known: KnownFn | None = None
        """The ledger's lookup, to skip records it holds before translating them (None: translate all)."""
        self.status_callback = status_callback
        self.whatsapp_templates = tuple(whatsapp_templates)
        self.default_language = default_language
        self._client = Client(account_sid, auth_token, http_client=http)

    @property
    def sdk(self) -> Client:
        """The twilio client, for read-only calls made through `call` (`crmhub check`)."""
        return self._client

    def translate(self, exc: Exception) -> ConnectorError | None:
        if isinstance(exc, TwilioRestException):
            message = f"HTTP {exc.status} code {exc.code}: {exc.msg}"
            if isinstance(exc.code, int) and exc.code in ERROR_FIXES:
                message += f" ({ERROR_FIXES[exc.code]})"
            return classify_status(exc.status, message, system=self.name, code=str(exc.code or ""))
        if isinstance(exc, TwilioException) and len(exc.args) > 1 and hasattr(exc.args[1], "status_code"):
            return self._page_error(exc.args[1])  # list/page calls raise this, with the raw response
        return None

    def _page_error(self, response: Any) -> ConnectorError:
        """Classify a failed page fetch from its status, Twilio error body and Retry-After."""
        try:
            body = json.loads(response.text or "{}")
        except ValueError:
            body = {}
        code = str(body.get("code") or "")
        message = f"HTTP {response.status_code} code {code or '-'}: {body.get('message', 'page fetch failed')}"
        headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        return classify_status(response.status_code, message, system=self.name, code=code,
                               retry_after=retry_after_seconds(headers.get("retry-after")))

    def message_pages(self, cursor: str | None) -> Iterator[MessagePage]:
        """Every message sent since `cursor - overlap` (all when None; the overlap is `window`'s), page by page."""
        filters: dict[str, Any] = {"page_size": self.page_size}
        newest = datetime.fromisoformat(cursor) if cursor else None
        overlap = self.window.overlap()
        if newest is not None:
            filters["date_sent_after"] = newest - overlap
        for messages, last in self._pages("messages", lambda: self._client.messages.page(**filters)):
            fresh = self._unknown(MESSAGE_CHANNELS, messages)
            good, bad = self._translate_all("message", fresh, MESSAGE_FIELDS, MESSAGE_DATES, self._message)
            for message in messages:
                newest = _later(newest, message.date_sent or message.date_created)
            yield MessagePage(good, bad, newest.isoformat() if newest else None, last=last,
                              known=len(messages) - len(fresh))
        self.window.read(overlap if cursor else self.window.full)  # no cursor: everything was read

    def _unknown(self, channels: Sequence[Channel], records: list[Any]) -> list[Any]:
        """The records the ledger does not hold yet (one lookup for the page)."""
        if self.known is None or not records:
            return records
        held = self.known(channels, [str(record.sid) for record in records])
        return [record for record in records if str(record.sid) not in held]

    def call_pages(self, cursor: str | None) -> Iterator[MessagePage]:
        """Every call started since `cursor - overlap` (all when None) that has ended, as call logs.

        A call not ended yet is skipped, and the cursor is held at most `overlap`
        after its start, so the next poll re-reads it; recording URLs come from
        one listing of the window's recordings (the Call resource has none).
        """
        filters: dict[str, Any] = {"page_size": self.page_size}
        newest = datetime.fromisoformat(cursor) if cursor else None
        if newest is not None:
            filters["start_time_after"] = newest - self.overlap
        held: datetime | None = None
        recordings: dict[str, str] | None = None
        for calls, last in self._pages("calls", lambda: self._client.calls.page(**filters)):
            logs = [call for call in calls if str(call.status) in FINAL_CALL_STATUSES]
            ended = self._unknown((Channel.CALL,), logs)
            if recordings is None and any(str(call.status) == "completed" for call in ended):
                recordings = self._recording_urls(filters.get("start_time_after"))
            urls = recordings or {}
            good, bad = self._translate_all("call", ended, CALL_FIELDS, CALL_DATES,
                                            lambda call, raw: self._call(call, raw, urls.get(str(call.sid))))
            for call in calls:
                started = call.start_time or call.date_created
                if str(call.status) in FINAL_CALL_STATUSES:
                    newest = _later(newest, started)
                elif started is not None and (held is None or started < held):
                    held = started
            cursor_at = newest if held is None or newest is None else min(newest, held + self.overlap)
            yield MessagePage(good, bad, cursor_at.isoformat() if cursor_at else None, last=last,
                              known=len(logs) - len(ended))

    def _recording_urls(self, since: datetime | None) -> dict[str, str]:
        """Call SID -> recording media URL for recordings created since `since` (all when None)."""
        filters: dict[str, Any] = {"page_size": self.page_size}
        if since is not None:
            filters["date_created_after"] = since  # a recording never starts before its call
        urls: dict[str, str] = {}
        for recordings, _ in self._pages("recordings", lambda: self._client.recordings.page(**filters)):
            for recording in recordings:
                if recording.call_sid and recording.media_url:
                    urls.setdefault(str(recording.call_sid), str(recording.media_url))
        return urls

    def _pages(self, resource: str, first: Callable[[], Any]) -> Iterator[tuple[list[Any], bool]]:
        """The records of every page of a list, with whether it is the last page."""
        page = self.call(f"{resource}.page", first)
        while page is not None:
            current = page
            following = self.call(f"{resource}.next_page", current.next_page)
            yield list(current), following is None
            page = following

    def _translate_all(self, kind: str, records: Sequence[Any], fields: Sequence[str], dates: Sequence[str],
                       translate: Callable[[Any, dict[str, Any]], Interaction]
                       ) -> tuple[list[Interaction], list[Malformed]]:
        good: list[Interaction] = []
        bad: list[Malformed] = []
        for record in records:
            raw = _raw(record, fields, dates)
            try:
                good.append(translate(record, raw))
            except InvalidIdentity as exc:
                bad.append(Malformed(self.name, str(record.sid), f"{kind} {record.sid}: {exc}", raw))
        return good, bad

    def _message(self, message: Any, raw: dict[str, Any]) -> Interaction:
        media_uri = (message.subresource_uris or {}).get("media")
        return message_interaction(
            sid=str(message.sid), sender=message.from_, recipient=message.to, direction=str(message.direction),
            body=message.body, num_media=int(message.num_media or 0),
            media_ref=str(media_uri) if media_uri else None,
            occurred_at=message.date_sent or message.date_created, raw=raw, region=self.default_region)

    def _call(self, call: Any, raw: dict[str, Any], recording_url: str | None) -> Interaction:
        # the SDK names the caller `_from` on calls (`from_` on messages)
        return call_interaction(
            sid=str(call.sid), sender=call._from, recipient=call.to, direction=str(call.direction),
            status=str(call.status), duration=int(call.duration or 0), recording_url=recording_url,
            started=call.start_time or call.date_created, raw=raw, region=self.default_region)


    # ---- sending -------------------------------------------------------------
    def send(self, message: OutboundMessage) -> SentMessage:
        """Send one reply from our number to the customer; never twice (see the module doc).

        Raises:
            PermanentError: Twilio refused it (e.g. `Rejected` for an invalid number, with the fix).
            TransientError: no answer or a 429/5xx after the retry layer's attempts.
        """
        whatsapp = message.channel is Channel.WHATSAPP
        prefix = WHATSAPP_PREFIX if whatsapp else ""
        to, from_ = prefix + message.recipient.value, prefix + message.sender.value
        fields: dict[str, Any] = {"to": to, "from_": from_, "body": message.text}
        text: str | None = message.text  # what a copy sent earlier reads (None: Twilio renders a template)
        if whatsapp and not window_open(message):
            chosen = fitting(self.whatsapp_templates, message, self.default_language) if not message.survey else None
            if chosen is None:  # nothing is sent: WhatsApp would refuse free text (63016)
                raise Rejected(closed_reason(self.whatsapp_templates, message), system=self.name,
                               code="whatsapp_window")
            template, variables = chosen
            fields = {"to": to, "from_": from_, "content_sid": template.content_sid, "content_variables": variables}
            text = None
            log.info("whatsapp window closed: sending a template", reply=message.key, template=template.name)
        if self.status_callback:
            fields["status_callback"] = self.status_callback

        def send() -> SentMessage:
            return self._sent(self._client.messages.create(**fields), found=False)

        def find_sent(floor: datetime) -> SentMessage | None:
            earlier = self._sent_since(from_, to, message, floor, text)
            return self._sent(earlier, found=True) if earlier is not None else None

        sent = self.send_checked("messages.create", message.uncertain_since, find_sent, send)
        # A template went instead of the text: the engine holds the reply until the customer writes back.
        return replace(sent, stood_in=True) if text is None else sent

    def _sent_since(self, from_: str, to: str, message: OutboundMessage, floor: datetime,
                    text: str | None) -> Any | None:
        """Our message to the customer created since `floor` with the reply's text (raw SDK: inside an attempt).

        `text` None: a template, whose words Twilio fills in; then any message of ours to the customer since
        `floor` that is no other reply's is this one (a conversation's replies are sent one after another).
        """
        page = self._client.messages.page(from_=from_, to=to, page_size=min(self.page_size, 50))
        for _ in range(CHECK_PAGES):
            recent = [m for m in page if m.date_created is None or m.date_created >= floor]
            for sent in recent:
                if ((text is None or sent.body == text) and str(sent.direction).startswith("outbound")
                        and str(sent.sid) not in message.already_sent):
                    return sent
            if not recent:
                return None
            page = page.next_page()
            if page is None:
                return None
        return None

    def _sent(self, sent: Any, *, found: bool) -> SentMessage:
        raw = _raw(sent, MESSAGE_FIELDS, MESSAGE_DATES)
        try:
            echo: Interaction | None = self._message(sent, raw)
        except InvalidIdentity:
            echo = None  # the poll dead-letters it if it cannot be read; the reply is sent all the same
        status = str(sent.status or "queued")
        return SentMessage(str(sent.sid), REPLY_STATUSES.get(status, ReplyStatus.SENT), echo=echo,
                           found_earlier=found)

    def delivery(self, message_id: str) -> Delivery:
        """A sent message's status now, with the reason and fix when it failed."""
        sent = self.call("messages.fetch", lambda: self._client.messages(message_id).fetch())
        status = str(sent.status or "")
        reply_status = REPLY_STATUSES.get(status, ReplyStatus.SENT)
        error = None
        if reply_status is ReplyStatus.FAILED:
            error = delivery_error(status, sent.error_code, sent.error_message)
        return Delivery(reply_status, status, error)


def delivery_error(status: str, code: int | None, message: str | None) -> str:
    """Why Twilio could not deliver a message, for people: the code, Twilio's words and the fix."""
    words = f"Twilio: message {status}"
    if code:
        words += f", error {code}" + (f" ({message})" if message else "")
        fix = ERROR_FIXES.get(int(code))
        if fix:
            words += f": {fix}"
    return words


def message_interaction(*, sid: str, sender: str | None, recipient: str | None, direction: str, body: str | None,
                        num_media: int, media_ref: str | None, occurred_at: datetime, raw: Mapping[str, Any],
                        region: str) -> Interaction:
    """The one translation of a Twilio message, for the poller and the webhook alike.

    Raises:
        InvalidIdentity: an address is not a phone number, or the message is empty.
    """
    channel = Channel.WHATSAPP if str(sender).startswith(WHATSAPP_PREFIX) else Channel.SMS
    item = _phone_interaction(channel, sid, sender, recipient, direction, text=body or "", occurred_at=occurred_at,
                              media=(media_ref,) * (1 if num_media and media_ref else 0), raw=raw, region=region)
    if not item.text.strip() and num_media == 0:
        raise InvalidIdentity("empty message: no body and no media")
    return item


def call_interaction(*, sid: str, sender: str | None, recipient: str | None, direction: str, status: str,
                     duration: int, recording_url: str | None, started: datetime, raw: Mapping[str, Any],
                     region: str) -> Interaction:
    """The one translation of an ended Twilio call into a call log, for the poller and the webhook alike.

    Raises:
        InvalidIdentity: an address is not a phone number.
    """
    info = CallInfo(duration_seconds=duration, status=status, recording_url=recording_url or None)
    return _phone_interaction(Channel.CALL, sid, sender, recipient, direction, text="", occurred_at=started,
                              call=info, raw=raw, region=region)


def media_list_uri(account_sid: str, message_sid: str) -> str:
    """The message's Media list, as Twilio names it in `subresource_uris.media`."""
    return f"{API_ROOT}/{account_sid}/Messages/{message_sid}/Media.json"


def _phone_interaction(channel: Channel, sid: str, sender: str | None, recipient: str | None, direction: str, *,
                       text: str, occurred_at: datetime, raw: Mapping[str, Any], region: str,
                       media: tuple[str, ...] = (), call: CallInfo | None = None) -> Interaction:
    """Addresses to identities, and the conversation key: (channel, our number, the customer's)."""
    way = DIRECTIONS.get(direction, Direction.OUTBOUND)
    customer_name = str(raw.get("profile_name") or raw.get("ProfileName") or "")
    source = _address(sender, "sender", region, channel, customer_name if way is Direction.INBOUND else "")
    target = _address(recipient, "recipient", region, channel, customer_name if way is Direction.OUTBOUND else "")
    ours, customer = (target, source) if way is Direction.INBOUND else (source, target)
    return Interaction(channel=channel, direction=way, external_id=sid,
                       conversation_key=conversation_key(channel, ours, customer), sender=source,
                       recipient=target, text=text, occurred_at=occurred_at, media=media, call=call, raw=raw,
                       customer_name=customer_name)


def conversation_key(channel: Channel, ours: Identity, customer: Identity) -> str:
    """A Twilio conversation: one per channel, our number or sender and the customer's."""
    return f"{channel}:{ours.value}:{customer.value}"


def _address(value: str | None, role: str, region: str, channel: Channel = Channel.SMS, name: str = "") -> Identity:
    """A phone number; on WhatsApp, a user known by username only (a BSUID, `whatsapp:US.1349...`) is its own
    identity kind, never read as a phone number."""
    if not value:
        raise InvalidIdentity(f"no {role} address")
    if channel is Channel.WHATSAPP and is_whatsapp_user(value):
        return whatsapp_user(value, display=name)
    try:
        return phone(value, region)
    except InvalidIdentity as exc:
        raise InvalidIdentity(f"{role} is not a phone number ({exc})") from exc


def _later(current: datetime | None, moment: datetime | None) -> datetime | None:
    return moment if moment is not None and (current is None or moment > current) else current


def _raw(record: Any, fields: Sequence[str], dates: Sequence[str]) -> dict[str, Any]:
    """The resource as Twilio described it, for the audit trail (never logged)."""
    raw: dict[str, Any] = {name.strip("_"): getattr(record, name, None) for name in fields}
    for name in dates:
        value = getattr(record, name, None)
        raw[name] = value.isoformat() if value else None
    return raw
