"""What an agent's panel shows, read from the state store: a person, their timeline, suggestions, conversations.

Each view is a handful of indexed queries whatever the history's size: the
timeline pages by (time, id) along `ix_ledger_person`, and reply statuses
join their echoes through `ix_replies_message`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, or_, select, tuple_
from sqlalchemy.orm import Session

from crmhub.model import ReplyStatus
from crmhub.store import graph
from crmhub.store.schema import (
    CrmLinkRow, LedgerRow, LinkSuggestionRow, PersonRow, ReplyRow, ThreadRow,
)

UNSENT = (ReplyStatus.PENDING.value, ReplyStatus.SENDING.value, ReplyStatus.FAILED.value, ReplyStatus.DEAD.value)
MAX_MERGES = 32  # a chain of joins longer than this is a loop, not history


@dataclass(frozen=True)
class Record:
    crm: str
    object_type: str
    record_id: str


@dataclass(frozen=True)
class Conversation:
    key: str
    channel: str
    crm: str
    case_id: str | None
    queue: str
    open: bool
    last_at: datetime | None


@dataclass(frozen=True)
class PersonView:
    id: int
    identities: list[dict[str, str]]
    records: list[Record]
    conversations: list[Conversation]


@dataclass(frozen=True)
class TimelineItem:
    kind: str  # message (a channel item in the ledger) or reply (an agent's reply not yet seen on the channel)
    id: str
    channel: str
    direction: str
    at: datetime
    text: str
    status: str  # received, or a reply's delivery status (pending, sending, sent, delivered, read, failed, dead)
    conversation: str
    author: str = ""
    error: str = ""


@dataclass(frozen=True)
class Page:
    items: list[TimelineItem]
    next: str | None  # pass as `before` for the next (older) page
    extra: dict[str, Any] = field(default_factory=dict)


def current_person(session: Session, person_id: int) -> int | None:
    """The person `person_id` is now: itself, or the one it was joined into."""
    seen = 0
    while seen < MAX_MERGES:
        row = session.get(PersonRow, person_id)
        if row is None:
            return None
        if row.merged_into is None:
            return person_id
        person_id, seen = row.merged_into, seen + 1
    return None


def person_of_record(session: Session, crm: str, record_id: str) -> int | None:
    """The person behind a CRM record: a contact crmhub linked, or a case crmhub opened for their conversation."""
    person = session.scalar(select(CrmLinkRow.person_id).where(CrmLinkRow.crm == crm, CrmLinkRow.record_id == record_id))
    if person is None:
        key = session.scalar(select(ThreadRow.conversation_key).where(ThreadRow.crm == crm,
                                                                      ThreadRow.record_id == record_id))
        if key is not None:
            person = session.scalar(select(LedgerRow.person_id).where(
                LedgerRow.conversation_key == key, LedgerRow.person_id.is_not(None))
                .order_by(LedgerRow.occurred_at.desc(), LedgerRow.id.desc()).limit(1))
    return current_person(session, person) if person is not None else None


def person_view(session: Session, person_id: int) -> PersonView:
    identities = [{"kind": i.kind.value, "value": i.value, "display": i.display}
                  for i in graph.identities_of(session, person_id)]
    records = [Record(r.crm, r.object_type, r.record_id) for r in session.scalars(
        select(CrmLinkRow).where(CrmLinkRow.person_id == person_id).order_by(CrmLinkRow.crm, CrmLinkRow.id))]
    return PersonView(person_id, identities, records, conversations(session, person_id))


def conversations(session: Session, person_id: int) -> list[Conversation]:
    """The person's conversations with their case in each CRM, newest first."""
    latest = (select(LedgerRow.conversation_key, LedgerRow.channel, LedgerRow.occurred_at)
              .where(LedgerRow.person_id == person_id).order_by(LedgerRow.occurred_at.desc(), LedgerRow.id.desc()))
    seen: dict[str, tuple[str, datetime]] = {}
    for key, channel, at in session.execute(latest):
        seen.setdefault(key, (channel, at))
    if not seen:
        return []
    threads = session.scalars(select(ThreadRow).where(ThreadRow.conversation_key.in_(list(seen)))
                              .order_by(ThreadRow.crm))
    out = [Conversation(t.conversation_key, seen[t.conversation_key][0], t.crm, t.record_id, t.queue,
                        t.closed_at is None, seen[t.conversation_key][1]) for t in threads]
    out.sort(key=lambda c: (c.last_at or datetime.min.replace(tzinfo=UTC), c.crm), reverse=True)
    return out


def timeline(session: Session, person_id: int, *, limit: int, before: str | None) -> Page:
    """The person's interactions on every channel, newest first, `limit` a page; replies not yet seen on top."""
    query = select(LedgerRow).where(LedgerRow.person_id == person_id)
    if before:
        at, row_id = _cursor(before)
        query = query.where(or_(LedgerRow.occurred_at < at, and_(LedgerRow.occurred_at == at, LedgerRow.id < row_id)))
    rows = list(session.scalars(query.order_by(LedgerRow.occurred_at.desc(), LedgerRow.id.desc()).limit(limit + 1)))
    more, rows = len(rows) > limit, rows[:limit]
    statuses = _reply_statuses(session, [(r.channel, r.external_id) for r in rows if r.direction == "outbound"])
    items = [_message(r, statuses.get((r.channel, r.external_id))) for r in rows]
    if before is None:
        items = _unechoed(session, person_id) + items
    next_cursor = _encode(rows[-1].occurred_at, rows[-1].id) if more and rows else None
    return Page(items, next_cursor)


def _message(row: LedgerRow, reply: ReplyRow | None) -> TimelineItem:
    status = "received" if row.direction == "inbound" else (reply.status if reply is not None else "sent")
    return TimelineItem("message", f"{row.channel}:{row.external_id}", row.channel, row.direction, row.occurred_at,
                        row.text or _call_text(row), status, row.conversation_key,
                        author=reply.author if reply is not None else "",
                        error=(reply.last_error or "") if reply is not None and reply.status in UNSENT else "")


def _call_text(row: LedgerRow) -> str:
    if row.call:
        return f"call, {row.call.get('status', '')} {row.call.get('duration', '')}s".strip()
    return ""


def _reply_statuses(session: Session, messages: Sequence[tuple[str, str]]) -> dict[tuple[str, str], ReplyRow]:
    if not messages:
        return {}
    query = select(ReplyRow).where(tuple_(ReplyRow.channel, ReplyRow.channel_message_id).in_(list(messages)))
    return {(r.channel, str(r.channel_message_id)): r for r in session.scalars(query)}


def _unechoed(session: Session, person_id: int) -> list[TimelineItem]:
    """Replies to the person whose sent copy the ledger does not hold yet (queued, sending, failed)."""
    keys = select(LedgerRow.conversation_key).where(LedgerRow.person_id == person_id).distinct()
    # Echoed: its sent copy is in the ledger with a person (an echo not routed yet has none, so is not listed).
    echoed = exists().where(LedgerRow.channel == ReplyRow.channel, LedgerRow.external_id == ReplyRow.channel_message_id,
                            LedgerRow.person_id.is_not(None))
    query = (select(ReplyRow).where(ReplyRow.conversation_key.in_(keys), ~echoed)
             .order_by(ReplyRow.written_at.desc(), ReplyRow.id.desc()).limit(50))
    return [TimelineItem("reply", f"{r.crm}:{r.reply_ref}", r.channel, "outbound", r.written_at, r.text, r.status,
                         r.conversation_key, author=r.author, error=r.last_error or "")
            for r in session.scalars(query)]


def suggestions(session: Session, person_id: int) -> list[dict[str, Any]]:
    """Pending identity suggestions where the person is the sender or holds the claimed identity."""
    held = [(i.kind.value, i.value) for i in graph.identities_of(session, person_id)]
    if not held:
        return []
    query = select(LinkSuggestionRow).where(LinkSuggestionRow.status == "pending", or_(
        tuple_(LinkSuggestionRow.sender_kind, LinkSuggestionRow.sender_value).in_(held),
        tuple_(LinkSuggestionRow.claimed_kind, LinkSuggestionRow.claimed_value).in_(held)))
    return [{"id": s.id, "sender": {"kind": s.sender_kind, "value": s.sender_value, "display": s.sender_display},
             "claimed": {"kind": s.claimed_kind, "value": s.claimed_value, "display": s.claimed_display},
             "stated_at": s.created_at} for s in session.scalars(query.order_by(LinkSuggestionRow.id))]


def as_json(value: Any) -> Any:
    """Dataclasses and datetimes as JSON values (ISO 8601 UTC)."""
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return as_json(asdict(value))
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _encode(at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


class BadCursor(ValueError):
    """A `before` cursor this API did not hand out."""


def _cursor(value: str) -> tuple[datetime, int]:
    try:
        at, _, row_id = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
        return datetime.fromisoformat(at), int(row_id)
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("before: not a cursor from this API's `next`") from None
