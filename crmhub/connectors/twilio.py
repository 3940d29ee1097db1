"""Twilio: SMS and WhatsApp messages and call logs into canonical Interactions (twilio SDK).

Retries: the SDK's own are off (TwilioHttpClient without max_retries); the
shared layer in `_retry` retries. The SDK reaches the sandbox, or any other
base URL, through the `requests.Session` it accepts (`http_client.session`).

Polling: Twilio lists messages newest first and filters only by send date,
so each poll re-reads from `cursor - overlap` and the ledger drops repeats;
the cursor is the newest send time seen (ISO 8601), never moved backwards,
and saved by the ingest loop with the last page of a run. Calls work the
same way by start time, with one twist: a call still ringing or in progress
is not a call log yet, so the cursor stays close enough to its start for a
later poll to re-read it once it has ended.

The translations (`message_interaction`, `call_interaction`) are shared
with the webhook receiver (`twilio_hooks`), so a message or call seen both
ways is the same Interaction and the ledger stores it once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from crmhub.connectors._base import Connector, classify_status, retry_after_seconds
from crmhub.connectors._http import build_session
from crmhub.connectors._retry import Retrier
from crmhub.errors import ConnectorError
from crmhub.identities import WHATSAPP_PREFIX, InvalidIdentity, phone
from crmhub.model import CallInfo, Channel, Direction, Identity, Interaction, Malformed

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


@dataclass(frozen=True)
class MessagePage:
    """One page, translated; `cursor` is the newest send (or start) time seen so far in the run."""

    interactions: Sequence[Interaction]
    malformed: Sequence[Malformed]
    cursor: str | None
    last: bool


class TwilioChannel(Connector):
    """Reads an account's SMS and WhatsApp messages and its call logs."""

    name = "twilio"

    def __init__(self, *, account_sid: str, auth_token: str, base_url: str | None = None,
                 default_region: str = "US", page_size: int = 100, overlap: timedelta = timedelta(minutes=10),
                 timeout: float = 30.0, retrier: Retrier | None = None) -> None:
        super().__init__(retrier)
        http = TwilioHttpClient(timeout=timeout)
        http.session = build_session(base_url=base_url, observer=self.observe_http, before=self.before_http)
        self.account_sid = account_sid
        self.default_region = default_region
        self.page_size = page_size
        self.overlap = overlap
        self._client = Client(account_sid, auth_token, http_client=http)

    def translate(self, exc: Exception) -> ConnectorError | None:
        if isinstance(exc, TwilioRestException):
            message = f"HTTP {exc.status} code {exc.code}: {exc.msg}"
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
        """Every message sent since `cursor - overlap` (all when None), page by page."""
        filters: dict[str, Any] = {"page_size": self.page_size}
        newest = datetime.fromisoformat(cursor) if cursor else None
        if newest is not None:
            filters["date_sent_after"] = newest - self.overlap
        for messages, last in self._pages("messages", lambda: self._client.messages.page(**filters)):
            good, bad = self._translate_all("message", messages, MESSAGE_FIELDS, MESSAGE_DATES, self._message)
            for message in messages:
                newest = _later(newest, message.date_sent or message.date_created)
            yield MessagePage(good, bad, newest.isoformat() if newest else None, last=last)

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
            ended = [call for call in calls if str(call.status) in FINAL_CALL_STATUSES]
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
            yield MessagePage(good, bad, cursor_at.isoformat() if cursor_at else None, last=last)

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
    source, target = _address(sender, "sender", region), _address(recipient, "recipient", region)
    ours, customer = (target, source) if way is Direction.INBOUND else (source, target)
    return Interaction(channel=channel, direction=way, external_id=sid,
                       conversation_key=f"{channel}:{ours.value}:{customer.value}", sender=source,
                       recipient=target, text=text, occurred_at=occurred_at, media=media, call=call, raw=raw)


def _address(value: str | None, role: str, region: str) -> Identity:
    if not value:
        raise InvalidIdentity(f"no {role} address")
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
