"""The outbox (one row per interaction and CRM), conversation threads and routing decisions.

Delivery claims due rows by pushing `next_attempt_at` a lease ahead, in a
short transaction (with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
daemons never claim the same row); it talks to the CRM outside any
transaction and records the outcome afterwards. A daemon killed mid-call
leaves its rows to come due again when the lease ends; the CRM write is an
upsert on crmhub's idempotency key, so the retry cannot double it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crmhub.model import OutboxStatus, RouteDecision
from crmhub.store.ledger import insert_ignoring_conflicts
from crmhub.store.schema import OutboxRow, RouteDecisionRow, ThreadRow


def enqueue(session: Session, interaction_id: int, crms: Sequence[str], key: str, *, now: datetime) -> None:
    """One pending write per CRM; a second enqueue of the same key is a no-op."""
    rows = [{"idempotency_key": key, "interaction_id": interaction_id, "crm": crm, "status": "pending",
             "attempts": 0, "next_attempt_at": now, "created_at": now} for crm in crms]
    if rows:
        session.execute(insert_ignoring_conflicts(session, OutboxRow, rows, ("crm", "idempotency_key")))


def claim_due(session: Session, crm: str, limit: int, *, now: datetime, lease: timedelta) -> list[OutboxRow]:
    """Claim up to `limit` due rows of `crm` for `lease`, oldest first."""
    query = (select(OutboxRow)
             .where(OutboxRow.crm == crm, OutboxRow.status == OutboxStatus.PENDING.value,
                    OutboxRow.next_attempt_at <= now)
             .order_by(OutboxRow.next_attempt_at, OutboxRow.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(session.scalars(query))
    for row in rows:
        row.next_attempt_at = now + lease
        row.attempts += 1
    return rows


def mark_done(session: Session, outbox_id: int, result_ref: str | None, *, now: datetime) -> None:
    row = session.get(OutboxRow, outbox_id)
    if row is not None:
        row.status, row.result_ref, row.done_at, row.last_error = OutboxStatus.DONE.value, result_ref, now, None


def mark_retry(session: Session, outbox_id: int, error: str, *, retry_at: datetime) -> None:
    row = session.get(OutboxRow, outbox_id)
    if row is not None:
        row.last_error, row.next_attempt_at = error, retry_at


def mark_dead(session: Session, outbox_id: int, error: str, *, now: datetime) -> None:
    row = session.get(OutboxRow, outbox_id)
    if row is not None:
        row.status, row.last_error, row.done_at = OutboxStatus.DEAD.value, error, now


def settle(session: Session, crm: str, key: str, result_ref: str, *, now: datetime) -> None:
    """Mark `crm`'s write of `key` done without writing it (it is already there, e.g. an agent's own reply)."""
    row = session.scalar(select(OutboxRow).where(OutboxRow.crm == crm, OutboxRow.idempotency_key == key))
    if row is not None and row.status == OutboxStatus.PENDING.value:
        row.status, row.result_ref, row.done_at, row.last_error = OutboxStatus.DONE.value, result_ref[:64], now, None


def outbox_counts(session: Session) -> dict[tuple[str, str], int]:
    """Rows per (crm, status)."""
    query = select(OutboxRow.crm, OutboxRow.status, func.count()).group_by(OutboxRow.crm, OutboxRow.status)
    return {(crm, status): count for crm, status, count in session.execute(query)}


# ---- threads -----------------------------------------------------------------
def thread_of(session: Session, crm: str, conversation_key: str) -> ThreadRow | None:
    return session.scalar(select(ThreadRow).where(ThreadRow.crm == crm,
                                                  ThreadRow.conversation_key == conversation_key))


def open_thread(session: Session, crm: str, conversation_key: str, queue: str, *, now: datetime) -> ThreadRow:
    """The conversation's thread in `crm`; a closed one is replaced by the next case (seq + 1)."""
    row = thread_of(session, crm, conversation_key)
    if row is None:
        row = ThreadRow(crm=crm, conversation_key=conversation_key, seq=1, queue=queue, opened_at=now)
        session.add(row)
        session.flush()
    elif row.closed_at is not None:
        row.seq, row.record_id, row.queue, row.opened_at, row.closed_at = row.seq + 1, None, queue, now, None
    return row


def set_thread_record(session: Session, thread_id: int, record_id: str) -> None:
    row = session.get(ThreadRow, thread_id)
    if row is not None and row.record_id is None:
        row.record_id = record_id


# ---- routing decisions -------------------------------------------------------
def save_decision(session: Session, interaction_id: int, decision: RouteDecision, *, now: datetime) -> None:
    targets: Mapping[str, Any] = {crm: asdict(target) for crm, target in decision.targets.items()}
    row = session.get(RouteDecisionRow, interaction_id)
    if row is None:
        session.add(RouteDecisionRow(interaction_id=interaction_id, rule=decision.rule, targets=dict(targets),
                                     tried=[list(t) for t in decision.tried], decided_at=now))
    else:
        row.rule, row.targets, row.tried, row.decided_at = (decision.rule, dict(targets),
                                                            [list(t) for t in decision.tried], now)


def decision_of(session: Session, interaction_id: int) -> RouteDecisionRow | None:
    return session.get(RouteDecisionRow, interaction_id)
