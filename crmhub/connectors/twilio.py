"""Twilio: SMS and WhatsApp messages into canonical Interactions (twilio SDK).

Retries: the SDK's own are off (TwilioHttpClient without max_retries); the
shared layer in `_retry` retries. The SDK reaches the sandbox, or any other
base URL, through the `requests.Session` it accepts (`http_client.session`).

Polling: Twilio lists messages newest first and filters only by send date,
so each poll re-reads from `cursor - overlap` and the ledger drops repeats;
the cursor is the newest send time seen (ISO 8601), never moved backwards,
and saved by the ingest loop with the last page of a run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
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
from crmhub.model import Channel, Direction, Identity, Interaction, Malformed

DIRECTIONS = {"inbound": Direction.INBOUND}  # outbound-api, outbound-call, outbound-reply: outbound


@dataclass(frozen=True)
class MessagePage:
    """One page, translated; `cursor` is the newest send time seen so far in the run."""

    interactions: Sequence[Interaction]
    malformed: Sequence[Malformed]
    cursor: str | None
    last: bool


class TwilioChannel(Connector):
    """Reads an account's SMS and WhatsApp messages."""

    name = "twilio"

    def __init__(self, *, account_sid: str, auth_token: str, base_url: str | None = None,
                 default_region: str = "US", page_size: int = 100, overlap: timedelta = timedelta(minutes=10),
                 timeout: float = 30.0, retrier: Retrier | None = None) -> None:
        super().__init__(retrier)
        http = TwilioHttpClient(timeout=timeout)
        http.session = build_session(base_url=base_url)
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
        page = self.call("messages.page", lambda: self._client.messages.page(**filters))
        while page is not None:
            current = page
            following = self.call("messages.next_page", current.next_page)
            good, bad, newest = self._translate_page(list(current), newest)
            yield MessagePage(good, bad, newest.isoformat() if newest else None, last=following is None)
            page = following

    def _translate_page(self, messages: list[Any], newest: datetime | None
                        ) -> tuple[list[Interaction], list[Malformed], datetime | None]:
        good: list[Interaction] = []
        bad: list[Malformed] = []
        for message in messages:
            raw = _raw(message)
            try:
                good.append(self._interaction(message, raw))
            except InvalidIdentity as exc:
                bad.append(Malformed(self.name, str(message.sid), f"message {message.sid}: {exc}", raw))
            sent = message.date_sent or message.date_created
            if sent is not None and (newest is None or sent > newest):
                newest = sent
        return good, bad, newest

    def _interaction(self, message: Any, raw: dict[str, Any]) -> Interaction:
        direction = DIRECTIONS.get(str(message.direction), Direction.OUTBOUND)
        channel = Channel.WHATSAPP if str(message.from_).startswith(WHATSAPP_PREFIX) else Channel.SMS
        sender = self._address(message.from_, "sender")
        recipient = self._address(message.to, "recipient")
        media_count = int(message.num_media or 0)
        if not (message.body or "").strip() and media_count == 0:
            raise InvalidIdentity("empty message: no body and no media")
        ours, customer = (recipient, sender) if direction is Direction.INBOUND else (sender, recipient)
        media_uri = (message.subresource_uris or {}).get("media")
        return Interaction(
            channel=channel,
            direction=direction,
            external_id=str(message.sid),
            conversation_key=f"{channel}:{ours.value}:{customer.value}",
            sender=sender,
            recipient=recipient,
            text=message.body or "",
            occurred_at=message.date_sent or message.date_created,
            media=(str(media_uri),) * (1 if media_count and media_uri else 0),
            raw=raw,
        )

    def _address(self, value: str | None, role: str) -> Identity:
        if not value:
            raise InvalidIdentity(f"no {role} address")
        try:
            return phone(value, self.default_region)
        except InvalidIdentity as exc:
            raise InvalidIdentity(f"{role} is not a phone number ({exc})") from exc


def _raw(message: Any) -> dict[str, Any]:
    """The message as Twilio described it, for the audit trail (never logged)."""
    fields = ("sid", "account_sid", "from_", "to", "body", "direction", "status", "num_media",
              "num_segments", "error_code", "messaging_service_sid")
    raw: dict[str, Any] = {name.rstrip("_"): getattr(message, name, None) for name in fields}
    for name in ("date_sent", "date_created", "date_updated"):
        value = getattr(message, name, None)
        raw[name] = value.isoformat() if value else None
    return raw

