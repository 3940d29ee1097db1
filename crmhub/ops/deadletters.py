"""`crmhub deadletters list|show|replay|discard`.

A dead letter is a delivery that a CRM refused for good (source
`deliver:<crm>`, payload `{"outbox_id": N}`), an agent's reply that could
not reach the customer (source `reply:<crm>`, payload `{"reply_id": N}`), or
a source item that could not be translated (source: the channel module, e.g. `twilio`, payload =
the raw item). Showing one never shows message text: values under body/text
keys are redacted, and a reason is printed without the item's text even if
it was stored with a vendor's raw message quoting it (by an older crmhub;
connectors now redact those, see `crmhub.connectors._redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from crmhub.channels import registry
from crmhub.model import Channel, OutboxStatus, ReplyStatus
from crmhub.ops import OpsError
from crmhub.store.schema import DeadLetterRow, LedgerRow, OutboxRow, ReplyRow

log = structlog.get_logger("crmhub.ops")

REDACTED = "[redacted]"
BODY_KEYS = frozenset({"body", "text", "full_text", "transcription", "transcriptiontext"})  # compared lower-cased


@dataclass(frozen=True)
class OpenDeadLetter:
    id: int
    source: str
    ref: str
    reason: str
    created_at: datetime

    def line(self, now: datetime) -> tuple[str, str, str, str, str]:
        """(id, source, item, reason, age) for a table row."""
        return str(self.id), self.source, self.ref, self.reason, age(now - self.created_at)


def list_open(session: Session, *, source: str | None = None, limit: int = 1000) -> list[OpenDeadLetter]:
    """Open dead letters, oldest first; `source` filters (`twilio`, `deliver:salesforce`, or `deliver`)."""
    query = select(DeadLetterRow).where(DeadLetterRow.resolved_at.is_(None))
    if source:
        query = query.where((DeadLetterRow.source == source) | DeadLetterRow.source.startswith(f"{source}:"))
    rows = session.scalars(query.order_by(DeadLetterRow.id).limit(limit))
    return [OpenDeadLetter(r.id, r.source, r.ref, shown_reason(session, r), r.created_at) for r in rows]


def show(session: Session, dead_letter_id: int) -> list[str]:
    """One dead letter, its state and its payload with every message text redacted."""
    row = _get(session, dead_letter_id)
    state = (f"resolved {row.resolution} at {row.resolved_at.isoformat()}" if row.resolved_at else "open")
    lines = [f"Dead letter {row.id}", f"  source: {row.source}", f"  item: {row.ref}", f"  reason: {shown_reason(session, row)}",
             f"  created: {row.created_at.isoformat()}", f"  state: {state}"]
    outbox_id = row.payload.get("outbox_id") if row.source.startswith("deliver:") else None
    if outbox_id is not None:
        box = session.get(OutboxRow, outbox_id)
        if box is None:
            lines.append(f"  outbox {outbox_id}: gone")
        else:
            lines.append(f"  outbox {box.id}: {box.crm} {box.idempotency_key}, {box.status}, "
                         f"{box.attempts} attempt(s), ledger id {box.interaction_id}")
    reply_id = row.payload.get("reply_id") if row.source.startswith("reply:") else None
    if reply_id is not None:
        reply = session.get(ReplyRow, reply_id)
        if reply is None:
            lines.append(f"  reply {reply_id}: gone")
        else:  # never the text: it is the customer's message
            lines.append(f"  reply {reply.id}: {reply.crm} {reply.reply_ref} on case {reply.case_id}, {reply.status}, "
                         f"{reply.attempts} attempt(s), {reply.channel} to {reply.to_address}, "
                         f"message {reply.channel_message_id or '-'}")
    lines.append(f"  payload keys: {', '.join(sorted(row.payload)) or '(none)'}")
    lines.extend(_payload_lines(redact(row.payload), "    "))
    return lines


@dataclass(frozen=True)
class Replay:
    """What `replay` did: `resolved` False when the dead letter stays open (with what to do in `message`)."""

    resolved: bool
    message: str


def replay(session: Session, dead_letter_id: int, *, now: datetime) -> Replay:
    """Replay a dead letter (see module doc); the caller's transaction commits it."""
    row = _open(session, dead_letter_id)
    if row.source.startswith("deliver:"):
        return _replay_delivery(session, row, now=now)
    if row.source.startswith("reply:"):
        return _replay_reply(session, row, now=now)
    return _replay_ingest(session, row, now=now)


def discard(session: Session, dead_letter_id: int, *, now: datetime, reason: str | None = None) -> str:
    """Mark a dead letter resolved as 'discarded'; the reason, if any, is appended to its own."""
    row = _open(session, dead_letter_id)
    row.resolved_at, row.resolution = now, "discarded"
    if reason:
        row.reason = f"{row.reason} [discarded: {reason}]"
    log.info("dead letter discarded", dead_letter=row.id, source=row.source, item=row.ref)
    return f"dead letter {row.id} ({row.source} {row.ref}) discarded"


def _replay_delivery(session: Session, row: DeadLetterRow, *, now: datetime) -> Replay:
    outbox_id = row.payload.get("outbox_id")
    box = session.get(OutboxRow, outbox_id) if isinstance(outbox_id, int) else None
    if box is None:
        raise OpsError(f"dead letter {row.id}: its outbox row {outbox_id!r} is gone; nothing to replay "
                       f"(discard it with `crmhub deadletters discard {row.id}`)")
    if box.status == OutboxStatus.DONE.value:
        message = f"{box.idempotency_key} -> {box.crm} was delivered since; dead letter {row.id} marked replayed"
    else:
        box.status, box.next_attempt_at, box.attempts, box.done_at = OutboxStatus.PENDING.value, now, 0, None
        # A fresh set of attempts, yet not a first one: an earlier try may have landed, so the next one checks
        # the CRM first (a first attempt is a row's only claim ever); counted as one claim cut short.
        box.claims = 1
        message = (f"{box.idempotency_key} -> {box.crm} is pending again (outbox {box.id}); "
                   "the next delivery (`crmhub sync`, or the running daemon) writes it")
    row.resolved_at, row.resolution = now, "replayed"
    log.info("dead letter replayed", dead_letter=row.id, source=row.source, item=row.ref, outbox=box.id)
    return Replay(True, message)


def _replay_reply(session: Session, row: DeadLetterRow, *, now: datetime) -> Replay:
    reply_id = row.payload.get("reply_id")
    reply = session.get(ReplyRow, reply_id) if isinstance(reply_id, int) else None
    if reply is None:
        raise OpsError(f"dead letter {row.id}: its reply {reply_id!r} is gone; nothing to replay "
                       f"(discard it with `crmhub deadletters discard {row.id}`)")
    if reply.status in (ReplyStatus.SENT.value, ReplyStatus.DELIVERED.value):
        message = f"reply {reply.crm}:{reply.reply_ref} was sent since; dead letter {row.id} marked replayed"
    else:
        # A reply tried before is checked for on the channel before it is sent again (never twice).
        tried = reply.claimed_at is not None
        reply.status = (ReplyStatus.SENDING if tried else ReplyStatus.PENDING).value
        reply.next_attempt_at, reply.attempts, reply.status_at, reply.noted_at = now, 0, now, None
        reply.claims = 0  # its claims cut short were counted for the dead letter; `sending` keeps the doubt
        message = (f"reply {reply.crm}:{reply.reply_ref} is pending again; the next reply run (`crmhub sync`, or "
                   "the running daemon) sends it to the customer")
    row.resolved_at, row.resolution = now, "replayed"
    log.info("dead letter replayed", dead_letter=row.id, source=row.source, item=row.ref, reply=reply.id)
    return Replay(True, message)


def _replay_ingest(session: Session, row: DeadLetterRow, *, now: datetime) -> Replay:
    found = _ledger_match(session, row.source, row.ref)
    if found is not None:
        row.resolved_at, row.resolution = now, "replayed"
        log.info("dead letter replayed", dead_letter=row.id, source=row.source, item=row.ref, ledger=found.id)
        return Replay(True, f"{found.channel}:{found.external_id} is in the ledger now (ledger id {found.id}); "
                            f"dead letter {row.id} marked replayed")
    return Replay(False, (
        f"dead letter {row.id} ({row.source} {row.ref}) not replayed: crmhub cannot translate the stored item "
        f"again without the {row.source} connector, and {row.ref} is not in the ledger. Fix the cause "
        f"(reason: {shown_reason(session, row)}), let the next poll or webhook bring the item in (a poll re-reads its overlap "
        f"window), then run `crmhub deadletters replay {row.id}` again; or drop it with "
        f"`crmhub deadletters discard {row.id} --reason ...`"))


def _ledger_match(session: Session, source: str, ref: str) -> LedgerRow | None:
    """The ledger row of an ingest dead letter's item: `channel:id` refs, else the source's channels."""
    channel, _, external_id = ref.partition(":")
    if external_id and channel in {c.value for c in Channel}:
        pairs = [(channel, external_id)]
    else:
        channels = registry.channels_of(source) if source in registry.ENTRIES else tuple(c.value for c in Channel)
        pairs = [(c, ref) for c in channels]
    for chan, ext in pairs:
        found = session.scalar(select(LedgerRow).where(LedgerRow.channel == chan, LedgerRow.external_id == ext))
        if found is not None:
            return found
    return None


def shown_reason(session: Session, row: DeadLetterRow) -> str:
    """A dead letter's reason as printed: without any part of the customer's text it is about."""
    return without_text(row.reason, *_texts_of(session, row))


def _texts_of(session: Session, row: DeadLetterRow) -> list[str]:
    """The customer's (or agent's) text a dead letter is about: the interaction's, the reply's, the payload's."""
    if row.source.startswith("deliver:"):
        box = session.get(OutboxRow, row.payload.get("outbox_id")) if isinstance(row.payload.get("outbox_id"),
                                                                                  int) else None
        item = session.get(LedgerRow, box.interaction_id) if box is not None else None
        return [item.text] if item is not None else []
    if row.source.startswith("reply:"):
        reply_id = row.payload.get("reply_id")
        reply = session.get(ReplyRow, reply_id) if isinstance(reply_id, int) else None
        return [reply.text] if reply is not None else []
    return list(_body_values(row.payload))


def _body_values(value: Any) -> Iterator[str]:
    """Every string under a body/text key of a payload, at any depth."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lower() in BODY_KEYS and isinstance(item, str):
                yield item
            else:
                yield from _body_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _body_values(item)


MIN_PIECE = 8  # shorter pieces of a text are too common to cut out of a reason ("Hi", "ok")


def without_text(message: str, *texts: str) -> str:
    """`message` with every part of `texts` it quotes replaced by "[redacted]".

    Defence in depth for what is printed: a vendor echoes the value it
    refused from its start, often cut short, so the longest prefix of each
    text found in the message goes, then each sentence or line of the text.
    """
    for text in texts:
        whole = text.strip()
        if not whole:
            continue
        low, high = 0, len(whole)  # the longest prefix quoted (quoting a prefix means quoting the shorter ones)
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if whole[:middle] in message else (low, middle - 1)
        pieces = {whole[:low]} if low >= min(MIN_PIECE, len(whole)) else set()
        pieces |= {p.strip() for p in re.split(r"(?<=[.!?\n])", whole) if len(p.strip()) >= MIN_PIECE}
        for piece in sorted(pieces, key=len, reverse=True):
            message = message.replace(piece, REDACTED)
    return message


def redact(value: Any) -> Any:
    """`value` with every body/text value (at any depth) replaced by "[redacted]"."""
    if isinstance(value, Mapping):
        return {k: REDACTED if str(k).lower() in BODY_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _payload_lines(value: Mapping[str, Any], indent: str) -> list[str]:
    lines = []
    for key in sorted(value, key=str):
        item = value[key]
        if isinstance(item, Mapping) and item:
            lines.append(f"{indent}{key}:")
            lines.extend(_payload_lines(item, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {item!r}" if not isinstance(item, str) else f"{indent}{key}: {item}")
    return lines


def _get(session: Session, dead_letter_id: int) -> DeadLetterRow:
    row = session.get(DeadLetterRow, dead_letter_id)
    if row is None:
        raise OpsError(f"no dead letter {dead_letter_id}; `crmhub deadletters list` shows the open ones")
    return row


def _open(session: Session, dead_letter_id: int) -> DeadLetterRow:
    row = _get(session, dead_letter_id)
    if row.resolved_at is not None:
        raise OpsError(f"dead letter {row.id} is already resolved ({row.resolution} at "
                       f"{row.resolved_at.isoformat()})")
    return row


def age(delta: timedelta) -> str:
    """`3d4h`, `2h5m`, `40s`: the two largest units."""
    seconds = max(0, int(delta.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2]) or "0s"
