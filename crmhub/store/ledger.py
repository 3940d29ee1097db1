"""The ledger (every interaction once), source cursors and dead letters.

`ingest_page` is the heart of "nothing lost, nothing doubled": a page's new
interactions, its malformed items and the source's cursor are written in one
transaction, and repeats of an already-stored (channel, external id) are
dropped by the unique key, whatever the path they came by (poll or webhook).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crmhub.model import CallInfo, Channel, DeadLetter, Direction, Identity, IdentityKind, Interaction, Malformed
from crmhub.store.schema import CursorRow, DeadLetterRow, LedgerRow

T = TypeVar("T")


@dataclass(frozen=True)
class IngestResult:
    """What one page did to the ledger."""

    stored: int
    repeats: int
    dead_lettered: int


def insert_ignoring_conflicts(session: Session, table: Any, rows: Sequence[dict[str, Any]],
                              conflict_columns: Sequence[str]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING, for SQLite and PostgreSQL alike."""
    return _insert(session)(table).values(list(rows)).on_conflict_do_nothing(index_elements=list(conflict_columns))


def upsert(session: Session, table: type[T], values: Mapping[str, Any], key: Sequence[str], *,
           update: bool = True) -> T:
    """Insert a row, or on a conflict on `key` set its other values (`update=False`: leave it), in one statement.

    Daemons sharing a store may write the same new row at once; read-then-insert
    fails the slower one on the unique key, this waits for the other and then
    updates. Returns the row as stored, refreshed in the session.
    """
    statement = _insert(session)(table).values(**values)
    if update:
        statement = statement.on_conflict_do_update(index_elements=list(key),
                                                    set_={k: v for k, v in values.items() if k not in key})
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(key))
    row = session.scalars(statement.returning(table), execution_options={"populate_existing": True}).one_or_none()
    if row is None:  # the row was there, left as it was
        row = session.scalars(select(table).filter_by(**{k: values[k] for k in key})).one()
    return row


def _insert(session: Session) -> Any:
    """The dialect's INSERT, which has ON CONFLICT."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def ingest_page(
    session: Session,
    interactions: Sequence[Interaction],
    malformed: Sequence[Malformed] = (),
    *,
    now: datetime,
    cursor: tuple[str, str, str, str] | None = None,
) -> IngestResult:
    """Store a page: new interactions, dead letters, and (optionally) the cursor.

    Args:
        cursor: (source, stream, partition, value) to save in the same transaction.
    """
    stored = 0
    if interactions:
        rows = _unique_rows(interactions, now)
        statement = insert_ignoring_conflicts(session, LedgerRow, rows, ("channel", "external_id"))
        stored = len(session.execute(statement.returning(LedgerRow.id)).all())
    dead_lettered = sum(add_dead_letter(session, item.source, item.ref, item.reason, dict(item.raw), now=now)
                        for item in malformed)
    if cursor is not None:
        save_cursor(session, *cursor, now=now)
    return IngestResult(stored=stored, repeats=len(interactions) - stored, dead_lettered=dead_lettered)


def _unique_rows(interactions: Iterable[Interaction], now: datetime) -> list[dict[str, Any]]:
    """Rows to insert, a repeat inside the page itself kept once."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for item in interactions:
        by_key.setdefault((item.channel.value, item.external_id), _to_row(item, now))
    return list(by_key.values())


def _storable(value: Any) -> Any:
    """PostgreSQL text and JSON cannot hold NUL; keep the item, with U+FFFD in its place."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def _to_row(item: Interaction, now: datetime) -> dict[str, Any]:
    return _storable({
        "channel": item.channel.value,
        "external_id": item.external_id,
        "direction": item.direction.value,
        "conversation_key": item.conversation_key,
        "sender_kind": item.sender.kind.value,
        "sender_value": item.sender.value,
        "sender_display": item.sender.display,
        "recipient_kind": item.recipient.kind.value,
        "recipient_value": item.recipient.value,
        "recipient_display": item.recipient.display,
        "text": item.text,
        "media": list(item.media),
        "call": None if item.call is None else {
            "duration_seconds": item.call.duration_seconds,
            "status": item.call.status,
            "recording_url": item.call.recording_url,
        },
        "occurred_at": item.occurred_at,
        "raw": dict(item.raw),
        "ingested_at": now,
    })


def to_interaction(row: LedgerRow) -> Interaction:
    """A ledger row back as the canonical Interaction."""
    return Interaction(
        channel=Channel(row.channel),
        direction=Direction(row.direction),
        external_id=row.external_id,
        conversation_key=row.conversation_key,
        sender=Identity(IdentityKind(row.sender_kind), row.sender_value, row.sender_display),
        recipient=Identity(IdentityKind(row.recipient_kind), row.recipient_value, row.recipient_display),
        text=row.text,
        occurred_at=row.occurred_at,
        media=tuple(row.media or ()),
        call=CallInfo(**row.call) if row.call else None,
        raw=row.raw or {},
    )


def unprocessed(session: Session, limit: int) -> list[LedgerRow]:
    """Ledger rows not yet through identity and routing, oldest first."""
    query = select(LedgerRow).where(LedgerRow.processed_at.is_(None)).order_by(LedgerRow.id).limit(limit)
    return list(session.scalars(query))


# ---- cursors -----------------------------------------------------------------
def load_cursor(session: Session, source: str, stream: str, partition: str = "") -> str | None:
    row = session.get(CursorRow, (source, stream, partition))
    return None if row is None else row.value


def save_cursor(session: Session, source: str, stream: str, partition: str, value: str, *, now: datetime) -> None:
    """Set a cursor (an upsert: daemons sharing a store may save a stream's first cursor at once)."""
    upsert(session, CursorRow, {"source": source, "stream": stream, "partition": partition, "value": value,
                                "updated_at": now}, ("source", "stream", "partition"))


def all_cursors(session: Session) -> list[CursorRow]:
    return list(session.scalars(select(CursorRow).order_by(CursorRow.source, CursorRow.stream, CursorRow.partition)))


# ---- dead letters ------------------------------------------------------------
def add_dead_letter(session: Session, source: str, ref: str, reason: str, payload: dict[str, Any],
                    *, now: datetime) -> bool:
    """Record a failed item once; False when it is already open (overlapping polls re-read it)."""
    ref = ref[:255]
    existing = session.scalar(select(DeadLetterRow.id).where(DeadLetterRow.source == source, DeadLetterRow.ref == ref,
                                                             DeadLetterRow.resolved_at.is_(None)))
    if existing is not None:
        return False
    session.add(DeadLetterRow(source=source, ref=_storable(ref), reason=_storable(reason), payload=_storable(payload),
                              created_at=now))
    session.flush()
    return True


def open_dead_letters(session: Session, limit: int = 100) -> list[DeadLetter]:
    query = (select(DeadLetterRow).where(DeadLetterRow.resolved_at.is_(None))
             .order_by(DeadLetterRow.id).limit(limit))
    return [DeadLetter(r.id, r.source, r.ref, r.reason, r.payload, r.created_at) for r in session.scalars(query)]


def ledger_counts(session: Session) -> dict[str, int]:
    """Interactions stored per channel."""
    query = select(LedgerRow.channel, func.count()).group_by(LedgerRow.channel)
    return {channel: count for channel, count in session.execute(query)}


def open_dead_letter_count(session: Session) -> int:
    return session.scalar(select(func.count()).where(DeadLetterRow.resolved_at.is_(None))) or 0
