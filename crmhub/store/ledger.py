"""The ledger (every interaction once), source cursors and dead letters.

`ingest_page` is the heart of "nothing lost, nothing doubled": a page's new
interactions, its malformed items and the source's cursor are written in one
transaction, and repeats of an already-stored (channel, external id) are
dropped by the unique key, whatever the path they came by (poll or webhook).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy import Table, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crmhub.model import CallInfo, Channel, DeadLetter, Direction, Identity, IdentityKind, Interaction, Malformed
from crmhub.store.schema import CursorRow, DeadLetterRow, LedgerRow
from crmhub.store.sets import among, per_row, unnest
from crmhub.store.text import storable

T = TypeVar("T")
log = structlog.get_logger("crmhub.ledger")


@dataclass(frozen=True)
class IngestResult:
    """What one page did to the ledger."""

    stored: int
    repeats: int
    dead_lettered: int


def insert_ignoring_conflicts(session: Session, table: Any, rows: Sequence[dict[str, Any]],
                              conflict_columns: Sequence[str]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING, for SQLite and PostgreSQL alike."""
    return dialect_insert(session)(table).values(list(rows)).on_conflict_do_nothing(index_elements=list(conflict_columns))


def upsert(session: Session, table: type[T], values: Mapping[str, Any], key: Sequence[str], *,
           update: bool = True) -> T:
    """Insert a row, or on a conflict on `key` set its other values (`update=False`: leave it), in one statement.

    Daemons sharing a store may write the same new row at once; read-then-insert
    fails the slower one on the unique key, this waits for the other and then
    updates. Returns the row as stored, refreshed in the session.
    """
    statement = dialect_insert(session)(table).values(**values)
    if update:
        statement = statement.on_conflict_do_update(index_elements=list(key),
                                                    set_={k: v for k, v in values.items() if k not in key})
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(key))
    row = session.scalars(statement.returning(table), execution_options={"populate_existing": True}).one_or_none()
    if row is None:  # the row was there, left as it was
        row = session.scalars(select(table).filter_by(**{k: values[k] for k in key})).one()
    return row


def upsert_many(session: Session, table: Any, rows: Sequence[Mapping[str, Any]], key: Sequence[str]) -> None:
    """`upsert` for many rows in one statement (their other values set on a conflict on `key`)."""
    if not rows:
        return
    # Over arrays on PostgreSQL only when no key repeats: one statement may not update a row twice.
    unique = len({tuple(row[k] for k in key) for row in rows}) == len(rows)
    statement, params = bulk_insert(session, table.__table__, rows, arrays=unique)
    statement = statement.on_conflict_do_update(
        index_elements=list(key), set_={column: statement.excluded[column] for column in rows[0] if column not in key})
    session.execute(statement) if params is None else session.execute(statement, params)  # compiled once, cached


def insert_many_ignoring_conflicts(session: Session, table: Any, rows: Sequence[Mapping[str, Any]],
                                   conflict_columns: Sequence[str]) -> None:
    """`insert_ignoring_conflicts` as one executemany: one compiled statement however many rows (cached).

    On PostgreSQL, rows that all name the same columns are one `INSERT ... SELECT FROM unnest(arrays)`
    instead (`sets.unnest`): psycopg runs an executemany as a pipelined statement per row, whose Python
    costs several times that (issue 13). A key repeated among the rows keeps its first, as before.
    """
    if rows:
        statement, params = bulk_insert(session, table.__table__, rows)
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict_columns))
        session.execute(statement) if params is None else session.execute(statement, params)


def insert_many(session: Session, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Plain INSERT of `rows` into `table` (a Table): one statement over arrays on PostgreSQL (`bulk_insert`),
    an executemany elsewhere."""
    if rows:
        statement, params = bulk_insert(session, table, rows)
        session.execute(statement) if params is None else session.execute(statement, params)


def bulk_insert(session: Session, table: Any, rows: Sequence[Mapping[str, Any]],
                *, arrays: bool = True) -> tuple[Any, list[dict[str, Any]] | None]:
    """The dialect's INSERT of `rows` and its executemany parameters; on PostgreSQL, when every row names
    the same columns, an `INSERT ... SELECT FROM unnest(arrays)` holding them, with no parameters (None).

    psycopg runs an executemany as a pipelined statement per row, and parses a multi-row INSERT's text
    anew each time (SQLAlchemy's insertmanyvalues, for RETURNING): either costs several times the arrays
    in Python (issue 13). `arrays=False`: the executemany everywhere.
    """
    insert_ = dialect_insert(session)
    names = list(rows[0])
    if arrays and session.get_bind().dialect.name == "postgresql" and all(row.keys() == rows[0].keys()
                                                                          for row in rows):
        source = unnest(rows, {name: table.c[name].type for name in names})
        return insert_(table).from_select(names, select(*source.values())), None
    return insert_(table), [dict(row) for row in rows]


def insert_returning(session: Session, table: Any, rows: Sequence[Mapping[str, Any]], returning: Sequence[Any],
                     conflict_columns: Sequence[str] | None = None) -> Any:
    """INSERT `rows` (ON CONFLICT DO NOTHING on `conflict_columns`, if given) RETURNING `returning` of the rows
    inserted: the result, in no particular order. One statement on PostgreSQL (`bulk_insert`)."""
    statement, params = bulk_insert(session, table, rows)
    if conflict_columns is not None:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict_columns))
    statement = statement.returning(*returning)
    connection = session.connection()
    return connection.execute(statement) if params is None else connection.execute(statement, params)


def dialect_insert(session: Session) -> Any:
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

    One item never keeps its page out: text the store cannot hold is stored
    with U+FFFD in its place (`crmhub.store.text.storable`), and an item the store still
    refuses becomes a dead letter naming it, while the others are stored and
    the cursor moves on.

    Args:
        cursor: (source, stream, partition, value) to save in the same transaction.
    """
    rows = _unique_rows(interactions, now)
    stored, refused = _insert_each(session, rows, lambda batch: _insert_ledger(session, batch))
    dead_lettered = sum(_dead_letter_refused(session, row, error, now=now) for row, error in refused)
    dead_lettered += sum(add_dead_letter(session, item.source, item.ref, item.reason, dict(item.raw), now=now)
                         for item in malformed)
    if cursor is not None:
        save_cursor(session, *cursor, now=now)
    return IngestResult(stored=stored, repeats=len(interactions) - stored - len(refused),
                        dead_lettered=dead_lettered)


def _insert_ledger(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert ledger rows, repeats dropped by the unique key; returns how many were new."""
    table = LedgerRow.__table__
    # one statement compiled once (and cached) however many rows; only new rows come back
    return len(insert_returning(session, table, rows, [table.c.id], ["channel", "external_id"]).all())


def _insert_each(session: Session, rows: Sequence[dict[str, Any]],
                 write: Callable[[Sequence[dict[str, Any]]], int]) -> tuple[int, list[tuple[dict[str, Any], Exception]]]:
    """`write` the rows at once; if the store refuses that, row by row, so one bad row keeps none of the others out.

    Returns (rows written, [(row, why) for each row the store refused]).
    A failure of the store itself (connection, lock) is raised, never blamed on an item.
    """
    if not rows:
        return 0, []
    try:
        with isolated(session):
            return write(rows), []
    except Exception as exc:
        if not item_fault(exc):
            raise
        if len(rows) == 1:
            return 0, [(rows[0], exc)]
    written, refused = 0, []
    for row in rows:
        try:
            with isolated(session):
                written += write([row])
        except Exception as exc:
            if not item_fault(exc):
                raise
            refused.append((row, exc))
    return written, refused


@contextmanager
def isolated(session: Session) -> Iterator[None]:
    """Keep the transaction usable after one failed statement (one item's, whose failure is handled).

    PostgreSQL aborts a transaction at its first failed statement, so the
    statement runs in a SAVEPOINT. SQLite undoes only the failed statement;
    and pysqlite would end the outer transaction at the RELEASE of a
    SAVEPOINT opened as its first statement, so none is used there.
    """
    if session.get_bind().dialect.name == "postgresql":
        with session.begin_nested():
            yield
    else:
        yield


def item_fault(exc: Exception) -> bool:
    """Whether the store refused these values (too long, not encodable, a constraint), not failed as a whole."""
    if isinstance(exc, sa_exc.DBAPIError):
        return isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError)
    return isinstance(exc, sa_exc.StatementError | ValueError | TypeError)


def _error_name(error: Exception) -> str:
    """The type name of what the store (or its driver) refused a row with; never its message, which holds values."""
    cause = error.orig if isinstance(error, sa_exc.StatementError) and error.orig is not None else error
    return type(cause).__name__


def _dead_letter_refused(session: Session, row: Mapping[str, Any], error: Exception, *, now: datetime) -> bool:
    """A dead letter for an interaction the store refused: its key and the error's type, never its values."""
    channel = Channel(row["channel"])
    key = f"{channel.value}:{row['external_id']}"
    why = _error_name(error)
    log.error("item not stored", item=key[:255], error=why)
    reason = (f"interaction {key[:255]} could not be stored ({why}); the rest of its page was. "
              "The next poll or webhook brings it again once the cause is fixed")
    return add_dead_letter(session, channel.source, key, reason,
                           {"channel": channel.value, "external_id": row["external_id"]}, now=now)


def _unique_rows(interactions: Iterable[Interaction], now: datetime) -> list[dict[str, Any]]:
    """Rows to insert, a repeat inside the page itself kept once."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for item in interactions:
        row = _to_row(item, now)
        by_key.setdefault((row["channel"], row["external_id"]), row)
    return list(by_key.values())


def _to_row(item: Interaction, now: datetime) -> dict[str, Any]:
    return storable({
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
        "customer_name": item.customer_name[:255],
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


def to_interaction(row: Any, *, raw: bool = True) -> Interaction:
    """A ledger row (an ORM row or a selected row with its columns) back as the canonical Interaction."""
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
        raw=(row.raw or {}) if raw else {},
        language=getattr(row, "language", None),
        customer_name=getattr(row, "customer_name", "") or "",
    )


INTERACTION_COLUMNS = (LedgerRow.channel, LedgerRow.direction, LedgerRow.external_id, LedgerRow.conversation_key,
                       LedgerRow.sender_kind, LedgerRow.sender_value, LedgerRow.sender_display,
                       LedgerRow.recipient_kind, LedgerRow.recipient_value, LedgerRow.recipient_display,
                       LedgerRow.text, LedgerRow.occurred_at, LedgerRow.media, LedgerRow.call, LedgerRow.language,
                       LedgerRow.customer_name)
"""The ledger columns `to_interaction(row, raw=False)` reads: select them beside others, not whole ORM rows."""


def latest_inbound(session: Session, conversations: Iterable[str]) -> dict[str, Any]:
    """Each conversation's newest message from the customer (ledger columns and `person_id`), in one query."""
    keys = sorted(set(conversations))
    if not keys:
        return {}
    newest = (select(LedgerRow.conversation_key, func.max(LedgerRow.occurred_at).label("at"))
              .where(among(LedgerRow.conversation_key, keys), LedgerRow.direction == Direction.INBOUND.value)
              .group_by(LedgerRow.conversation_key).subquery())
    query = (select(LedgerRow.id, LedgerRow.person_id, *INTERACTION_COLUMNS)
             .join(newest, and_(LedgerRow.conversation_key == newest.c.conversation_key,
                                LedgerRow.occurred_at == newest.c.at))
             .where(LedgerRow.direction == Direction.INBOUND.value).order_by(LedgerRow.id))
    return {row.conversation_key: row for row in session.execute(query)}  # a tie: the last stored wins


def unprocessed_items(session: Session, limit: int) -> list[tuple[int, Interaction]]:
    """(ledger id, interaction) of rows not yet through identity and routing, oldest first, in one query.

    Columns only, no ORM objects, and without `raw` (the payload as the
    channel sent it), which routing never reads and which costs most to load.
    """
    query = (select(LedgerRow.id, *INTERACTION_COLUMNS).where(LedgerRow.processed_at.is_(None)).order_by(LedgerRow.id).limit(limit))
    return [(row.id, to_interaction(row, raw=False)) for row in session.execute(query)]


def mark_processed(session: Session, persons: Mapping[int, int], *, now: datetime,
                   languages: Mapping[int, str | None] | None = None) -> None:
    """Ledger rows through routing, each with its person and, when detection is on, its language (one
    executemany UPDATE)."""
    if persons:
        rows: list[dict[str, Any]] = [{"row_id": row_id, "person": person} for row_id, person in persons.items()]
        types = {"row_id": LedgerRow.id.type, "person": LedgerRow.person_id.type}
        if languages is not None:
            types["new_language"] = LedgerRow.language.type
            for row in rows:
                row["new_language"] = languages.get(row["row_id"])
        table = LedgerRow.__table__
        session.flush()  # as the ORM statement this was did: the persons named here are in the store first
        each = per_row(session, rows, types, key="row_id")
        values = {"person_id": each.columns["person"], "processed_at": now}
        if languages is not None:
            values["language"] = each.columns["new_language"]
        each.execute(session, update(table).where(table.c.id == each.columns["row_id"]).values(**values))


def conversation_languages(session: Session, conversations: Iterable[str]) -> dict[str, str]:
    """The language of each conversation's latest message with a known one (one query: a tie-breaker).

    Latest by the time it happened, not by ledger id: a poll may store a page newest first.
    """
    keys = sorted(set(conversations))
    if not keys:
        return {}
    latest = (select(LedgerRow.conversation_key, func.max(LedgerRow.occurred_at).label("at"))
              .where(among(LedgerRow.conversation_key, keys), LedgerRow.language.is_not(None))
              .group_by(LedgerRow.conversation_key).subquery())
    query = (select(LedgerRow.conversation_key, LedgerRow.language)
             .join(latest, (LedgerRow.conversation_key == latest.c.conversation_key)
                   & (LedgerRow.occurred_at == latest.c.at))
             .where(LedgerRow.language.is_not(None)).order_by(LedgerRow.id))
    return {key: language for key, language in session.execute(query) if language is not None}


def known_external_ids(session: Session, channels: Sequence[Channel], ids: Sequence[str]) -> set[str]:
    """Which of `ids` the ledger already holds on one of `channels`: one indexed query for a polled page,
    whose known items a source then skips before translating them (a reconcile poll re-reads its overlap)."""
    if not ids:
        return set()
    query = select(LedgerRow.external_id).where(LedgerRow.channel.in_([str(c) for c in channels]),
                                                LedgerRow.external_id.in_(list(ids)))
    return set(session.scalars(query))


def unprocessed(session: Session, limit: int) -> list[LedgerRow]:
    """Ledger rows not yet through identity and routing, oldest first."""
    query = select(LedgerRow).where(LedgerRow.processed_at.is_(None)).order_by(LedgerRow.id).limit(limit)
    return list(session.scalars(query))


# ---- cursors -----------------------------------------------------------------
# Built once and bound at execution: a cycle reads, saves and touches cursors dozens of times, and building an
# ORM upsert with RETURNING (or a `session.get`) anew cost five times executing a prepared one (issue 13).
_CURSORS = cast(Table, CursorRow.__table__)
_LOAD_CURSOR = select(CursorRow.value).where(CursorRow.source == bindparam("at_source", type_=CursorRow.source.type),
                                             CursorRow.stream == bindparam("at_stream", type_=CursorRow.stream.type),
                                             CursorRow.partition == bindparam("at_partition",
                                                                              type_=CursorRow.partition.type))
# Of the table, not the ORM class: an ORM-enabled UPDATE is rebuilt (and its cache key computed) per execution.
# (An UPDATE's own bound names may not be its columns' names.)
_TOUCH_CURSORS = (update(_CURSORS).where(_CURSORS.c.source == bindparam("at_source", type_=CursorRow.source.type),
                                         among(_CURSORS.c.stream, bindparam("at_streams")),
                                         _CURSORS.c.partition == bindparam("at_partition",
                                                                           type_=CursorRow.partition.type))
                  .values(updated_at=bindparam("now", type_=CursorRow.updated_at.type)))


def load_cursor(session: Session, source: str, stream: str, partition: str = "") -> str | None:
    return session.scalar(_LOAD_CURSOR, {"at_source": source, "at_stream": stream, "at_partition": partition})


def save_cursor(session: Session, source: str, stream: str, partition: str, value: str, *, now: datetime) -> None:
    """Set a cursor (an upsert: daemons sharing a store may save a stream's first cursor at once)."""
    session.execute(_save_cursor(session.get_bind().dialect.name),
                    {"source": source, "stream": stream, "partition": partition, "value": value, "updated_at": now})


@functools.cache
def _save_cursor(dialect: str) -> Any:
    """`save_cursor`'s upsert for one dialect, its values bound at execution."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_(_CURSORS).values({name: bindparam(name, type_=_CURSORS.c[name].type)
                                          for name in ("source", "stream", "partition", "value", "updated_at")})
    return statement.on_conflict_do_update(index_elements=["source", "stream", "partition"],
                                           set_={"value": statement.excluded.value,
                                                 "updated_at": statement.excluded.updated_at})


def touch_cursors(session: Session, source: str, streams: Sequence[str], partition: str = "", *,
                  now: datetime) -> None:
    """The streams were read to their end just now, whether or not they moved (a quiet stream is healthy).

    Only `updated_at` changes, which `crmhub_lag_seconds` reads; a stream without a cursor yet has nothing to touch.
    """
    session.execute(_TOUCH_CURSORS, {"at_source": source, "at_streams": list(streams), "at_partition": partition,
                                     "now": now})


def all_cursors(session: Session) -> list[CursorRow]:
    return list(session.scalars(select(CursorRow).order_by(CursorRow.source, CursorRow.stream, CursorRow.partition)))


# ---- dead letters ------------------------------------------------------------
def add_dead_letter(session: Session, source: str, ref: str, reason: str, payload: dict[str, Any],
                    *, now: datetime) -> bool:
    """Record a failed item once; False when it is already open (overlapping polls re-read it).

    A payload the store refuses (see `ingest_page`) is replaced by a note of why, so the dead letter is kept.
    """
    return bool(add_dead_letters(session, source, [(ref, reason, payload)], now=now))


def add_dead_letters(session: Session, source: str, items: Sequence[tuple[str, str, dict[str, Any]]],
                     *, now: datetime) -> int:
    """`add_dead_letter` for several (ref, reason, payload) of one source; returns how many were recorded.

    One query and one INSERT in the common case; an item already open, or given twice, is recorded once.
    """
    wanted: dict[str, tuple[str, dict[str, Any]]] = {}
    for ref, reason, payload in items:
        wanted.setdefault(ref[:255], (reason, payload))
    if not wanted:
        return 0
    table = DeadLetterRow.__table__.c
    already = set(session.scalars(select(table.ref).where(table.source == source, among(table.ref, sorted(wanted)),
                                                          table.resolved_at.is_(None))))
    rows = [storable({"source": source, "ref": ref, "reason": reason, "payload": payload, "created_at": now})
            for ref, (reason, payload) in wanted.items() if ref not in already]

    def write(batch: Sequence[dict[str, Any]]) -> int:
        session.execute(insert(DeadLetterRow), list(batch))
        return len(batch)

    written, refused = _insert_each(session, rows, write)
    for row, error in refused:
        write([row | {"payload": {"not_stored": f"the store refused the payload ({_error_name(error)})"}}])
    return written + len(refused)


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
