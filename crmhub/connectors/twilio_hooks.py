"""Twilio webhooks: form parameters into the canonical types, exactly as the poller makes them.

Three webhooks (https://www.twilio.com/docs/usage/webhooks):

- inbound message (`MessageSid`, `From`, `To`, `Body`, `NumMedia`, ...) ->
  the same Interaction `TwilioChannel.message_pages` yields for that message
  (same channel, external id, conversation key, identities, text and media
  reference), so the ledger stores a message seen both ways once. Twilio
  sends no send time with it, so `occurred_at` is when it was received;
- message status callback (`MessageSid`, `MessageStatus`) -> (sid, status),
  with the order statuses move in (`status_advances`);
- call status callback (`CallSid`, `CallStatus`, `CallDuration`,
  `RecordingUrl`, `Timestamp`, ...) -> a call log once the call has ended,
  the same Interaction `TwilioChannel.call_pages` yields.

The signature is checked by the receiver before any of this runs; what is
signed but cannot be translated comes back as `Malformed` (dead letter).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from crmhub.connectors.twilio import FINAL_CALL_STATUSES, call_interaction, media_list_uri, message_interaction
from crmhub.model import Interaction, Malformed

SOURCE = "twilio"
SIDS = {  # Twilio SIDs: a two-letter prefix and 32 hex digits
    "message": re.compile(r"(SM|MM)[0-9a-fA-F]{32}"),
    "call": re.compile(r"CA[0-9a-fA-F]{32}"),
    "account": re.compile(r"AC[0-9a-fA-F]{32}"),
}
COUNT = re.compile(r"[0-9]{1,9}")  # ASCII digits only: int() would also take "١" or "1_0"
# Outbound message statuses in the order they happen
# (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values);
# an end status accepts nothing after it, so a late `sent` never undoes `delivered`.
STATUS_RANK = {"accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3,
               "delivered": 4, "undelivered": 4, "failed": 4, "canceled": 4, "read": 5}
END_STATUSES = frozenset({"undelivered", "failed", "canceled", "read"})


def message_from_params(params: Mapping[str, str], *, received_at: datetime,
                        default_region: str = "US") -> Interaction | Malformed:
    """An inbound message webhook as the poller's Interaction, or why it cannot be one."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    try:
        _check(params, sid, "message")
        account = params.get("AccountSid", "")
        if not SIDS["account"].fullmatch(account):
            raise ValueError("AccountSid is not an account SID")
        num_media = _count(params, "NumMedia")
        return message_interaction(
            sid=sid, sender=params.get("From"), recipient=params.get("To"), direction="inbound",
            body=params.get("Body"), num_media=num_media,
            media_ref=media_list_uri(account, sid) if num_media else None,
            occurred_at=received_at, raw=dict(params), region=default_region)
    except ValueError as exc:  # InvalidIdentity included
        return _malformed("message", sid, str(exc), params)


def call_from_params(params: Mapping[str, str], *, received_at: datetime,
                     default_region: str = "US") -> Interaction | Malformed | None:
    """A call status callback as the call-log Interaction the poller makes; None while the call goes on."""
    status = params.get("CallStatus", "")
    if status not in FINAL_CALL_STATUSES:
        return None
    sid = params.get("CallSid", "")
    try:
        _check(params, sid, "call")
        direction = params.get("Direction", "")
        if not direction:
            raise ValueError("no Direction")
        duration = _count(params, "CallDuration")
        # `Timestamp` is when this event happened: the end of the call; the call log is dated by its start.
        started = _timestamp(params.get("Timestamp"), received_at) - timedelta(seconds=duration)
        return call_interaction(
            sid=sid, sender=params.get("From"), recipient=params.get("To"), direction=direction, status=status,
            duration=duration, recording_url=params.get("RecordingUrl"), started=started, raw=dict(params),
            region=default_region)
    except (ValueError, OverflowError) as exc:  # OverflowError: a start before year 1
        return _malformed("call", sid, str(exc), params)


def status_from_params(params: Mapping[str, str]) -> tuple[str, str] | None:
    """(MessageSid, MessageStatus) of a status callback; None when either is not Twilio's."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    if not SIDS["message"].fullmatch(sid) or status not in STATUS_RANK:
        return None
    return sid, status


def status_advances(current: str | None, new: str) -> bool:
    """Whether a message at `current` (None: unknown yet) may move to `new`: forward only, never past an end."""
    if new not in STATUS_RANK:
        return False
    if current is None:
        return True
    return current not in END_STATUSES and STATUS_RANK[new] > STATUS_RANK.get(current, -1)


def _check(params: Mapping[str, str], sid: str, kind: str) -> None:
    if not SIDS[kind].fullmatch(sid):
        raise ValueError(f"no valid {kind} SID")


def _count(params: Mapping[str, str], name: str) -> int:
    value = params.get(name) or "0"
    if not COUNT.fullmatch(value):
        raise ValueError(f"{name} is not a count")
    return int(value)


def _timestamp(value: str | None, default: datetime) -> datetime:
    """An RFC 2822 date as Twilio sends it; `default` when absent or unreadable."""
    try:
        moment = parsedate_to_datetime(value or "")
    except (TypeError, ValueError, IndexError, OverflowError):
        return default
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=default.tzinfo)


def _malformed(kind: str, sid: str, reason: str, params: Mapping[str, str]) -> Malformed:
    """A dead letter keyed by the SID when there is one, else by a digest of the parameters."""
    raw = {name.replace("\x00", "\ufffd"): value.replace("\x00", "\ufffd") for name, value in params.items()}
    ref = sid if SIDS[kind].fullmatch(sid) else "webhook-" + hashlib.sha256(
        repr(sorted(raw.items())).encode("utf-8", "replace")).hexdigest()[:24]
    return Malformed(SOURCE, ref, f"{kind} webhook: {reason}", raw)
