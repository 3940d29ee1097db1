"""The support case history (`support_cases`): each case crmhub opened, with what support metrics need.

Threads (`crmhub.store.outbox`) keep a conversation's current case only. Each
function here is called by the thread function that learns a fact, with the
same batch, and costs one statement (an executemany) however big the batch:
a case opened (`opened`), its CRM record (`recorded`), a close or an agent's
reopen read back from the CRM (`states`), a reopen by a customer's message
(`reopened`). `crmhub.report` reads the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from crmhub.store.ledger import insert_many_ignoring_conflicts
from crmhub.store.schema import SupportCaseRow, ThreadRow
from crmhub.store.sets import PerRow, among, per_row

_CASES, _THREADS = cast(Table, SupportCaseRow.__table__), cast(Table, ThreadRow.__table__)
_RECORD_TYPES = {"conversation": ThreadRow.conversation_key.type, "new_record_id": ThreadRow.record_id.type}


def channel_of(conversation_key: str) -> str:
    """The channel a conversation is on: its key starts with it (`sms:…`, `x_dm:…`)."""
    return conversation_key.split(":", 1)[0]


@dataclass(frozen=True)
class Opened:
    """A case a write is about to open: its thread's key and number, queue and first message's time."""

    conversation_key: str
    seq: int
    queue: str
    first_message_at: datetime
    opened_at: datetime


def opened(session: Session, crm: str, cases: Sequence[Opened]) -> None:
    """New cases (a repeat of one already recorded, after a crash, is ignored)."""
    insert_many_ignoring_conflicts(session, SupportCaseRow, [
        {"crm": crm, "conversation_key": c.conversation_key, "seq": c.seq, "channel": channel_of(c.conversation_key),
         "queue": c.queue, "record_id": None, "first_message_at": c.first_message_at, "opened_at": c.opened_at,
         "closed_at": None, "reopens": 0} for c in cases], ("crm", "conversation_key", "seq"))


def recorded(session: Session, crm: str, records: Mapping[str, str]) -> None:
    """The CRM records of the conversations' current cases (by conversation), onto cases that had none."""
    if records:
        cases, threads = _CASES.c, _THREADS.c
        current = (select(threads.seq).where(threads.crm == crm, threads.conversation_key == cases.conversation_key)
                   .scalar_subquery())
        each, bound = by_conversation(session, cases.conversation_key, records)
        each.execute(session, update(_CASES).where(cases.crm == crm, *bound, cases.seq == current,
                                                   cases.record_id.is_(None))
                     .values(record_id=each.columns["new_record_id"]))


def by_conversation(session: Session, column: ColumnElement[str],
                    records: Mapping[str, str]) -> tuple[PerRow, list[ColumnElement[bool]]]:
    """Case records by conversation, as the per-row values of one UPDATE (`per_row`: over arrays on
    PostgreSQL), and the conditions that tie `column` to them.

    On PostgreSQL the conversations are also bound as one array (`among`), so the planner looks each up
    along the table's index instead of joining the arrays against the whole index.
    """
    each = per_row(session, [{"conversation": key, "new_record_id": record} for key, record in records.items()],
                   _RECORD_TYPES, key="conversation")
    bound = [column == each.columns["conversation"]]
    if each.params is None:
        bound.append(among(column, list(records)))
    return each, bound


@dataclass(frozen=True)
class StateChange:
    """A case's state as the CRM reported it, where it differs from what crmhub knew."""

    conversation_key: str
    seq: int
    closed_at: datetime | None
    reopened: bool  # it was closed and the CRM says it is open again (an agent reopened it)


@dataclass(frozen=True)
class Closed:
    """A case the CRM reported closed (its current state differed): where a satisfaction survey is asked."""

    conversation_key: str
    seq: int
    queue: str
    record_id: str | None
    closed_at: datetime


def states(session: Session, crm: str, changes: Sequence[StateChange]) -> None:
    """Closes and agents' reopens read back from the CRM."""
    if changes:
        table = _CASES.c
        session.connection().execute(
            update(_CASES).where(table.crm == crm, table.conversation_key == bindparam("conversation"),
                                 table.seq == bindparam("number"))
            .values(closed_at=bindparam("new_closed_at", type_=table.closed_at.type),
                    reopens=table.reopens + bindparam("more", type_=table.reopens.type)),
            [{"conversation": c.conversation_key, "number": c.seq, "new_closed_at": c.closed_at,
              "more": int(c.reopened)} for c in changes])


def reopened(session: Session, reopened_from: Mapping[int, datetime | None]) -> None:
    """Cases a customer's message reopened (threads by id, with the `state_at` the reopen was decided on).

    Runs before the threads themselves are marked open, with the same
    condition: a thread whose state the CRM changed since is left alone.
    Two statements: the threads by id, then the cases by their unique key.
    """
    if not reopened_from:
        return
    threads = _THREADS.c
    rows = session.execute(select(threads.id, threads.crm, threads.conversation_key, threads.seq, threads.closed_at,
                                  threads.state_at).where(among(threads.id, sorted(reopened_from))))
    keys = [{"which": crm, "conversation": key, "number": seq}
            for tid, crm, key, seq, closed_at, state_at in rows
            if closed_at is not None and _same(state_at, reopened_from[tid])]
    if keys:
        cases = _CASES.c
        session.connection().execute(
            update(_CASES).where(cases.crm == bindparam("which"), cases.conversation_key == bindparam("conversation"),
                                 cases.seq == bindparam("number"))
            .values(closed_at=None, reopens=cases.reopens + 1), keys)


def _same(stored: datetime | None, decided_on: datetime | None) -> bool:
    """`state_at` unchanged since the reopen was decided (IS NOT DISTINCT FROM, as the threads' own update)."""
    if stored is None or decided_on is None:
        return stored is decided_on
    return stored == decided_on
