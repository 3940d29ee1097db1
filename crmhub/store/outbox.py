"""The outbox (one row per interaction and CRM), conversation threads and routing decisions.

Delivery claims due rows by pushing `next_attempt_at` a lease ahead, in a
short transaction (with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
daemons never claim the same row); it talks to the CRM outside any
transaction and records the outcome afterwards. A daemon killed mid-call
leaves its rows to come due again when the lease ends; the CRM write is an
upsert on crmhub's idempotency key, so the retry cannot double it.

Attempts and claims are counted apart (issue 13). `attempts` counts the
tries whose outcome was recorded: an answer (done, a refusal, a transient
error) or a timeout; it drives the backoff and `max_attempts`. `claims`
counts the claims since the last recorded outcome, the current one
included: a claim whose lease simply ran out (the daemon died holding it)
or that was given back (`release`) adds one and no attempt, so a crash loop
neither dead-letters rows nor pushes their retries out. Any claim but the
very first of a row (an earlier attempt or claim) is uncertain, and
delivery asks the CRM before writing again (`HistoryWrite.first_attempt`).
A row that stops the daemon every time it is written is bounded by
delivery's `max_claims`.

A conversation's case is opened by one write at a time: while a thread has
no case record yet and a write of its conversation is claimed (or waiting
to retry), the conversation's other writes are not claimed. Otherwise a
second daemon would claim a follow-up while the first still creates the
case, find no case by its key, and create another one, which Zendesk (whose
ticket external ids are not unique) keeps. Claims of one CRM take turns
across daemons (an advisory lock, `crmhub.store.locks`), so each sees the
claims and threads of the one before.

Each row has a `WritePriority`. Claims go by priority, then due time, and
take only rows ranked at or before the `max_priority` the CRM's API budget
allows; the others are held (still pending, not attempted, not failed).
`api_budgets` records what each CRM's budget allowed at its last delivery
run, so status and metrics can count the held rows.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Container, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Integer, Select, Table, and_, bindparam, func, literal, not_, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from crmhub.model import CaseState, OutboxStatus, QueueTarget, RouteDecision, WritePriority
from crmhub.store import cases as support_cases
from crmhub.store.ledger import INTERACTION_COLUMNS, insert_many, insert_many_ignoring_conflicts, upsert, upsert_many
from crmhub.store.locks import one_at_a_time
from crmhub.store.schema import JOB_REF_LENGTH, ApiBudgetRow, LedgerRow, OutboxRow, RouteDecisionRow, ThreadRow
from crmhub.store.sets import among, per_row

PENDING = OutboxStatus.PENDING.value
_OUTBOX, _THREADS = cast(Table, OutboxRow.__table__), cast(Table, ThreadRow.__table__)  # for Core statements


def enqueue(session: Session, interaction_id: int, crms: Sequence[str], key: str, *, now: datetime,
            priority: WritePriority | Mapping[str, WritePriority] = WritePriority.FOLLOW_UP) -> None:
    """One pending write per CRM; a second enqueue of the same key is a no-op.

    Args:
        priority: one for every CRM, or one per CRM (a new case in one, a follow-up in another).
    """
    enqueue_many(session, pending_writes(interaction_id, crms, key, now=now, priority=priority))


def pending_writes(interaction_id: int, crms: Sequence[str], key: str, *, now: datetime,
                   priority: WritePriority | Mapping[str, WritePriority] = WritePriority.FOLLOW_UP
                   ) -> list[dict[str, Any]]:
    """The outbox rows `enqueue` adds for one interaction, for `enqueue_many`."""
    def rank(crm: str) -> int:
        return int(priority.get(crm, WritePriority.FOLLOW_UP) if isinstance(priority, Mapping) else priority)

    return [{"idempotency_key": key, "interaction_id": interaction_id, "crm": crm, "status": PENDING,
             "priority": rank(crm), "attempts": 0, "claims": 0, "next_attempt_at": now, "created_at": now}
            for crm in crms]


def enqueue_many(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert pending writes in one executemany; a key already queued for its CRM is left as it is."""
    insert_many_ignoring_conflicts(session, OutboxRow, rows, ("crm", "idempotency_key"))


@dataclass(frozen=True)
class Claim:
    """A claimed outbox row with what delivery needs of its interaction and routing decision.

    `claims` includes this claim and `next_attempt_at` is the end of its lease.
    `item` holds the ledger columns `ledger.to_interaction` reads (not the raw
    payload, which no writer reads); `rule` and `targets` are the routing
    decision's (None: no decision recorded).
    """

    id: int
    idempotency_key: str
    interaction_id: int
    priority: int
    attempts: int
    claims: int
    relink: bool
    next_attempt_at: datetime
    person_id: int | None
    occurred_at: datetime
    conversation_key: str
    item: Any
    rule: str | None
    targets: Mapping[str, Any] | None
    job_ref: str | None = None  # a bulk job an earlier attempt submitted with this row (`save_job_ref`)
    detach_from: str | None = None  # a relink an undo queued: the wrong record the activity leaves


_OTHER, _OTHER_ITEM = aliased(OutboxRow), aliased(LedgerRow)  # the conversation's other writes (made once: costly)


def claim_due(session: Session, crm: str, limit: int, *, now: datetime, lease: timedelta,
              max_priority: WritePriority = WritePriority.BACKFILL, waiting_only: bool = False,
              new_only: bool = False, besides: Sequence[int] = ()) -> list[Claim]:
    """Claim up to `limit` due rows of `crm` ranked at or before `max_priority` for `lease`.

    `waiting_only`: just the rows an earlier attempt left in a CRM job (`job_ref` set); `new_only`: just
    the others. `besides`: rows this transaction claimed already, which open no case for this claim (a
    batch claimed in two parts, as of one moment).

    Highest priority first (lowest number), then the longest due, then the
    oldest row. A row whose conversation's case is being opened by a write
    not due now (claimed, or waiting to retry) is left for later. A claim
    counts in `claims`, not in `attempts`: it becomes an attempt when its
    outcome is recorded (`mark_done`, `mark_retry`, `mark_dead`). One SELECT
    (joined with the ledger and the decision) and one UPDATE, whatever the batch.
    """
    one_at_a_time(session, f"claim:{crm}")
    postgresql = session.get_bind().dialect.name == "postgresql"
    values = {"crm": crm, "max_priority": int(max_priority), "now": now, "limit": limit}
    if besides:
        values["besides"] = list(besides)
    rows = session.execute(_claim_query(waiting_only, new_only, bool(besides), postgresql), values).all()
    if not rows:
        return []
    until = now + lease
    session.execute(_CLAIM_UPDATE, {"ids": [row.id for row in rows], "until": until})
    return [Claim(row.id, row.idempotency_key, row.interaction_id, row.priority, row.attempts, row.claims + 1,
                  row.relink, until, row.person_id, row.occurred_at, row.conversation_key, row, row.rule,
                  row.targets, row.job_ref, row.detach_from) for row in rows]


@functools.cache
def _claim_query(waiting_only: bool, new_only: bool, besides: bool, postgresql: bool) -> Select[Any]:
    """`claim_due`'s SELECT for one shape, built once with its values bound at execution (`crm`,
    `max_priority`, `now`, `limit`, `besides`): building and compiling it anew was most of a claim's CPU."""
    crm, now = bindparam("crm", type_=OutboxRow.crm.type), bindparam("now", type_=OutboxRow.next_attempt_at.type)
    query = (select(OutboxRow.id, OutboxRow.idempotency_key, OutboxRow.interaction_id, OutboxRow.priority,
                    OutboxRow.attempts, OutboxRow.claims, OutboxRow.relink, OutboxRow.job_ref,
                    OutboxRow.detach_from, LedgerRow.person_id,
                    RouteDecisionRow.rule, RouteDecisionRow.targets, *INTERACTION_COLUMNS)
             .join(LedgerRow, LedgerRow.id == OutboxRow.interaction_id)
             .outerjoin(RouteDecisionRow, RouteDecisionRow.interaction_id == OutboxRow.interaction_id)
             .where(OutboxRow.crm == crm, OutboxRow.status == PENDING,
                    OutboxRow.priority <= bindparam("max_priority", type_=OutboxRow.priority.type),
                    OutboxRow.next_attempt_at <= now,
                    LedgerRow.conversation_key.not_in(_being_opened(crm, now, bindparam("besides") if besides
                                                                    else None)))
             .order_by(OutboxRow.priority, OutboxRow.next_attempt_at, OutboxRow.id)
             .limit(bindparam("limit", type_=Integer)))
    if waiting_only:
        query = query.where(OutboxRow.job_ref.is_not(None))
    elif new_only:
        query = query.where(OutboxRow.job_ref.is_(None))
    if postgresql:
        query = query.with_for_update(skip_locked=True, of=OutboxRow)
    return query


# Of the table: an ORM-enabled UPDATE is rebuilt (and its cache key computed) per execution.
_CLAIM_UPDATE = (update(_OUTBOX).where(among(_OUTBOX.c.id, bindparam("ids")))
                 .values(next_attempt_at=bindparam("until", type_=OutboxRow.next_attempt_at.type),
                         claims=_OUTBOX.c.claims + 1))


def renew(session: Session, held: Mapping[datetime, Collection[int]], until: datetime) -> set[int]:
    """Extend the lease of rows one claim still holds to `until`; returns the rows extended (one UPDATE).

    `held` maps each lease end this claim last set to its rows (a batch claimed in two parts has two). A
    row is extended only while it is pending with that very lease end: one whose lease ran out and that
    another daemon claimed since carries that daemon's lease end, and is never extended by this one.
    """
    return renew_claimed(session, _OUTBOX, _OUTBOX.c.status == PENDING, held, until)


def renew_claimed(session: Session, table: Table, claimed: ColumnElement[bool],
                  held: Mapping[datetime, Collection[int]], until: datetime) -> set[int]:
    """`renew` for any table leased through `id` and `next_attempt_at`, `claimed` saying a row is still claimed."""
    if not held:
        return set()
    column = table.c
    held_now = or_(*(and_(among(column.id, sorted(ids)), column.next_attempt_at == end) for end, ids in held.items()))
    statement = update(table).where(claimed, held_now).values(next_attempt_at=until).returning(column.id)
    return set(session.connection().scalars(statement))


def cases_being_opened(crm: str, now: datetime, besides: Sequence[int] = ()) -> Select[tuple[str]]:
    """The conversations whose case in `crm` a write not due at `now` (claimed, or waiting to retry) is opening;
    the rows `besides` (claimed in this transaction) do not count.

    Uncorrelated, so the database computes it once per claim, from the
    CRM's pending rows (`ix_outbox_claim`), instead of once per candidate
    row through the conversation's whole history: its cost follows the
    backlog once, never the history nor the square of the backlog.
    """
    return _being_opened(literal(crm, OutboxRow.crm.type), literal(now, OutboxRow.next_attempt_at.type),
                         besides or None)


def _being_opened(crm: ColumnElement[Any], now: ColumnElement[Any],
                  besides: Sequence[int] | BindParameter[Any] | None) -> Select[tuple[str]]:
    other, other_item = _OTHER, _OTHER_ITEM
    query = (select(other_item.conversation_key)
             .join(other, other.interaction_id == other_item.id)
             .join(ThreadRow, and_(ThreadRow.crm == crm, ThreadRow.conversation_key == other_item.conversation_key))
             .where(other.crm == crm, other.status == PENDING, other.next_attempt_at > now,
                    ThreadRow.record_id.is_(None)))
    return query.where(not_(among(other.id, besides))) if besides is not None else query


def release(session: Session, outbox_ids: Sequence[int], *, now: datetime) -> None:
    """End the lease of claimed rows (the daemon is stopping): due again at once, for the next start.

    No answer came back, so it is no attempt; it stays counted as a claim,
    like one whose lease ran out: part of the batch may have reached the
    CRM, and the next claim is uncertain and checks for it as any retry does.
    """
    if outbox_ids:
        session.execute(update(OutboxRow)
                        .where(OutboxRow.id.in_(list(outbox_ids)), OutboxRow.status == PENDING)
                        .values(next_attempt_at=now))


def save_job_ref(session: Session, crm: str, keys: Sequence[str], job_ref: str) -> None:
    """Store the bulk job just submitted with the pending writes it carries (one UPDATE per 500 keys).

    A later attempt of these rows gets it back (`HistoryWrite.job_ref`) and
    waits for that job instead of submitting them again.
    """
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 500):
        session.execute(update(OutboxRow)
                        .where(OutboxRow.crm == crm, OutboxRow.idempotency_key.in_(unique[start:start + 500]),
                               OutboxRow.status == PENDING)
                        .values(job_ref=job_ref[:JOB_REF_LENGTH]))


def case_pending(session: Session, crm: str, conversation_key: str) -> bool:
    """Whether a pending new-case write of `crm` already exists for the conversation (it will open the case)."""
    return conversation_key in cases_pending(session, crm, [conversation_key])


@dataclass(frozen=True)
class Outcome:
    """A claim's recorded outcome: done (`result_ref`, `contact_ref`), a retry (`retry_at`) or dead (`error`).

    `attempted`: the claim was tried (an answer or a timeout), so it counts as an attempt.
    """

    outbox_id: int
    status: OutboxStatus
    error: str | None = None
    result_ref: str | None = None
    contact_ref: str | None = None
    retry_at: datetime | None = None
    attempted: bool = True
    job_ref: str | None = None  # PENDING with a job: submitted, settled by a later claim (`WriteOutcome.waiting`)
    sent_before: bool = False  # waiting, and an earlier claim may have sent the write: the next claim checks first


def record_outcomes(session: Session, outcomes: Sequence[Outcome], *, now: datetime) -> None:
    """Record claims' outcomes: one executemany UPDATE per kind of outcome, whatever the batch.

    An attempted outcome is one more attempt and ends the claims cut short
    (`claims` back to 0); a done row forgets its relink, and keeps its
    `result_ref` when the CRM named no record (a relink may not name it again).
    A row waiting on a job (`job_ref`) is answered, so its claims end, but it
    is no attempt: it stays pending with the job, due again at `retry_at`.
    A waiting row that an earlier claim may have sent (`sent_before`: that
    claim was cut short after its submit landed, and the job it waits on now
    is not the one that carries it) keeps one claim counted, so its next
    claim is uncertain too and looks before it writes: forgetting that
    wrote a Zendesk ticket twice under kills (tests/test_several_daemons.py).
    """
    kinds: dict[tuple[OutboxStatus, bool, bool, bool], list[dict[str, Any]]] = {}
    for o in outcomes:
        waiting = o.status is OutboxStatus.PENDING and o.job_ref is not None
        attempted = not waiting and (o.attempted or o.status is not OutboxStatus.DEAD)
        kinds.setdefault((o.status, attempted, waiting, waiting and o.sent_before), []).append(
            {"oid": o.outbox_id, "new_error": o.error, "new_result_ref": o.result_ref,
             "new_contact_ref": o.contact_ref, "new_retry_at": o.retry_at,
             "new_job_ref": o.job_ref[:JOB_REF_LENGTH] if o.job_ref else None})
    for (status, attempted, waiting, sent_before), params in kinds.items():
        rows = per_row(session, params, _OUTCOME_TYPES, key="oid")
        rows.execute(session, _outcome_update(status, attempted, now, rows.columns, waiting=waiting,
                                              sent_before=sent_before))


_OUTCOME_TYPES = {"oid": _OUTBOX.c.id.type, "new_error": _OUTBOX.c.last_error.type,
                  "new_result_ref": _OUTBOX.c.result_ref.type, "new_contact_ref": _OUTBOX.c.contact_ref.type,
                  "new_retry_at": _OUTBOX.c.next_attempt_at.type, "new_job_ref": _OUTBOX.c.job_ref.type}


def _outcome_update(status: OutboxStatus, attempted: bool, now: datetime, row: Mapping[str, Any], *,
                    waiting: bool = False, sent_before: bool = False) -> Any:
    """The UPDATE recording one kind of outcome, by outbox row (`row["oid"]`, values of `sets.per_row`)."""
    table = _OUTBOX
    values: dict[str, Any] = {"attempts": table.c.attempts + 1, "claims": 0} if attempted else {}
    if waiting:
        values |= {"claims": 1 if sent_before else 0, "next_attempt_at": row["new_retry_at"],
                   "job_ref": row["new_job_ref"]}
    elif status is OutboxStatus.DONE:
        values |= {"status": status.value, "done_at": now, "last_error": None, "relink": False, "detach_from": None,
                   "result_ref": func.coalesce(row["new_result_ref"], table.c.result_ref),
                   "contact_ref": row["new_contact_ref"]}
    elif status is OutboxStatus.PENDING:
        values |= {"last_error": row["new_error"], "next_attempt_at": row["new_retry_at"]}
    else:
        values |= {"status": status.value, "last_error": row["new_error"], "done_at": now}
    return update(table).where(table.c.id == row["oid"]).values(**values)


def cases_pending(session: Session, crm: str, conversation_keys: Collection[str]) -> set[str]:
    """Which of the conversations already have a pending new-case write of `crm` (`case_pending` for a batch)."""
    if not conversation_keys:
        return set()
    query = (select(LedgerRow.conversation_key).join(OutboxRow, LedgerRow.id == OutboxRow.interaction_id)
             .where(among(LedgerRow.conversation_key, sorted(conversation_keys)), OutboxRow.crm == crm,
                    OutboxRow.status == PENDING, OutboxRow.priority == int(WritePriority.NEW_CASE)).distinct())
    return set(session.scalars(query))


def mark_done(session: Session, outbox_id: int, result_ref: str | None, *, now: datetime,
              contact_ref: str | None = None) -> None:
    """The CRM confirmed the write, onto `contact_ref` (the record it landed on, None for no contact)."""
    record_outcomes(session, [Outcome(outbox_id, OutboxStatus.DONE, result_ref=result_ref,
                                      contact_ref=contact_ref)], now=now)


def mark_retry(session: Session, outbox_id: int, error: str, *, retry_at: datetime) -> None:
    """The try failed in a way worth another (a transient error, a timeout): due again at `retry_at`."""
    record_outcomes(session, [Outcome(outbox_id, OutboxStatus.PENDING, error=error, retry_at=retry_at)],
                    now=retry_at)


def mark_dead(session: Session, outbox_id: int, error: str, *, now: datetime, attempted: bool = True) -> None:
    """Dead for good; `attempted`: False when no try of this claim was made (e.g. too many claims cut short)."""
    record_outcomes(session, [Outcome(outbox_id, OutboxStatus.DEAD, error=error, attempted=attempted)], now=now)


REPLY_SETTLED = "reply:"
"""`result_ref` prefix of a write settled by an agent's reply already in the CRM (its echo): never relinked."""


def settle_replies(session: Session, echoes: Sequence[tuple[str, str, str]], *, now: datetime) -> None:
    """Mark each (crm, key, reply ref) write done without writing it: the agent's own reply is already there.

    One statement for the batch; only still-pending rows change.
    """
    if not echoes:
        return
    table = _OUTBOX
    session.connection().execute(
        update(table)
        .where(table.c.crm == bindparam("b_crm"), table.c.idempotency_key == bindparam("b_key"),
               table.c.status == OutboxStatus.PENDING.value)
        .values(status=OutboxStatus.DONE.value, result_ref=bindparam("b_ref"), done_at=now, last_error=None),
        [{"b_crm": crm, "b_key": key, "b_ref": (REPLY_SETTLED + ref)[:64]} for crm, key, ref in echoes])


def settled_by_reply(result_ref: str | None) -> bool:
    """Whether a done write is an agent's reply crmhub never wrote (see `settle_replies`)."""
    return result_ref is not None and result_ref.startswith(REPLY_SETTLED)


def outbox_counts(session: Session) -> dict[tuple[str, str], int]:
    """Rows per (crm, status)."""
    query = select(OutboxRow.crm, OutboxRow.status, func.count()).group_by(OutboxRow.crm, OutboxRow.status)
    return {(crm, status): count for crm, status, count in session.execute(query)}


# ---- budgets -----------------------------------------------------------------
def save_allowance(session: Session, crm: str, max_priority: WritePriority, *, now: datetime,
                   daily_remaining: int | None = None, daily_limit: int | None = None,
                   reserve: int | None = None) -> None:
    """Record what `crm`'s API budget lets through (after each delivery run; an upsert, as daemons share it)."""
    upsert(session, ApiBudgetRow, {"crm": crm, "max_priority": int(max_priority), "daily_remaining": daily_remaining,
                                   "daily_limit": daily_limit, "reserve": reserve, "updated_at": now}, ("crm",))


def allowances(session: Session) -> list[ApiBudgetRow]:
    """The recorded budget of every CRM delivered to, by name."""
    return list(session.scalars(select(ApiBudgetRow).order_by(ApiBudgetRow.crm)))


def count_held(session: Session, crm: str, max_priority: WritePriority) -> int:
    """Pending rows of `crm` ranked after `max_priority`."""
    query = select(func.count()).select_from(OutboxRow).where(
        OutboxRow.crm == crm, OutboxRow.status == PENDING, OutboxRow.priority > int(max_priority))
    return int(session.scalar(query) or 0)


def held_counts(session: Session) -> dict[str, int]:
    """Pending rows per CRM ranked after what its budget last let through (held, not failed)."""
    query = (select(OutboxRow.crm, func.count())
             .join(ApiBudgetRow, ApiBudgetRow.crm == OutboxRow.crm)
             .where(OutboxRow.status == PENDING, OutboxRow.priority > ApiBudgetRow.max_priority)
             .group_by(OutboxRow.crm))
    return {crm: count for crm, count in session.execute(query)}


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
        row.closed_final, row.state_at = False, None
    return row


@dataclass
class Thread:
    """A conversation's thread as delivery plans it in memory (`id` None: not stored yet)."""

    id: int | None
    conversation_key: str
    seq: int
    record_id: str | None
    queue: str
    opened_at: datetime
    closed_at: datetime | None = None
    closed_final: bool = False
    state_at: datetime | None = None
    first_at: datetime | None = None  # a case opened now: the time of the message opening it (support metrics)


def threads_of(session: Session, crm: str, conversation_keys: Collection[str]) -> dict[str, Thread]:
    """The threads of `conversation_keys` in `crm` that exist, by conversation, in one query (plain values, not
    ORM objects: routing reads them, delivery plans its cases on them)."""
    if not conversation_keys:
        return {}
    table = _THREADS.c
    query = (select(table.id, table.conversation_key, table.seq, table.record_id, table.queue, table.opened_at,
                    table.closed_at, table.closed_final, table.state_at)
             .where(table.crm == crm, among(table.conversation_key, sorted(set(conversation_keys)))))
    return {row.conversation_key: Thread(*row) for row in session.execute(query)}


def next_thread(thread: Thread | None, conversation_key: str, queue: str, *, now: datetime,
                first_at: datetime | None = None) -> Thread:
    """What `open_thread` makes of the thread: itself while open, else a first or next case (seq + 1), unsaved.

    `first_at` is the time of the message that opens the case (default `now`).
    """
    if thread is None:
        return Thread(None, conversation_key, 1, None, queue, now, first_at=first_at or now)
    if thread.closed_at is None:
        return thread
    return Thread(thread.id, conversation_key, thread.seq + 1, None, queue, now, first_at=first_at or now)


_RENEWED_TYPES = {"tid": ThreadRow.id.type, "new_seq": ThreadRow.seq.type, "new_queue": ThreadRow.queue.type,
                  "new_opened_at": ThreadRow.opened_at.type}


def save_threads(session: Session, crm: str, threads: Sequence[Thread]) -> None:
    """Store threads `next_thread` opened: new ones in one INSERT, the next cases of closed ones in one UPDATE."""
    table = _THREADS
    new = [{"crm": crm, "conversation_key": t.conversation_key, "seq": t.seq, "record_id": None, "queue": t.queue,
            "opened_at": t.opened_at, "closed_at": None, "closed_final": False, "state_at": None}
           for t in threads if t.id is None]
    insert_many(session, table, new)
    renewed = [{"tid": t.id, "new_seq": t.seq, "new_queue": t.queue, "new_opened_at": t.opened_at}
               for t in threads if t.id is not None]
    if renewed:
        each = per_row(session, renewed, _RENEWED_TYPES, key="tid")
        each.execute(session, update(table).where(table.c.id == each.columns["tid"]).values(
            seq=each.columns["new_seq"], record_id=None, queue=each.columns["new_queue"],
            opened_at=each.columns["new_opened_at"], closed_at=None, closed_final=False, state_at=None))
    support_cases.opened(session, crm, [support_cases.Opened(
        t.conversation_key, t.seq, t.queue, t.first_at or t.opened_at, t.opened_at) for t in threads])


def record_cases(session: Session, crm: str, cases: Mapping[str, str]) -> None:
    """The case records the CRM created, by conversation, onto threads that had none yet (one UPDATE)."""
    if cases:
        table = _THREADS
        each, bound = support_cases.by_conversation(session, table.c.conversation_key, cases)
        # A record already there stays (coalesce) rather than `record_id IS NULL` in the WHERE: with that,
        # PostgreSQL's planner walks ix_threads_record's slice of the CRM's threads without a case instead.
        each.execute(session, update(table).where(table.c.crm == crm, *bound)
                     .values(record_id=func.coalesce(table.c.record_id, each.columns["new_record_id"])))
        support_cases.recorded(session, crm, cases)


def forget_cases(session: Session, crm: str, gone: Mapping[str, str], *, now: datetime) -> None:
    """Cases the CRM says are gone (conversation -> case record), closed for good on their threads (one UPDATE).

    The conversation's next write opens its next case (`next_thread`), never
    this one again. A thread already on a later case is left as it is.
    """
    if gone:
        table = _THREADS
        session.connection().execute(
            update(table).where(table.c.crm == crm, table.c.conversation_key == bindparam("conversation"),
                                table.c.record_id == bindparam("gone_record"))
            .values(closed_at=func.coalesce(table.c.closed_at, bindparam("gone_at", type_=table.c.closed_at.type)),
                    closed_final=True),
            [{"conversation": key, "gone_record": record, "gone_at": now} for key, record in gone.items()])


def record_reopened(session: Session, reopened_from: Mapping[int, datetime | None]) -> None:
    """`mark_reopened` for several threads (by id) in one UPDATE."""
    if reopened_from:
        support_cases.reopened(session, reopened_from)  # first: it reads the threads' state before this
        table = _THREADS
        each = per_row(session, [{"tid": tid, "was": state_at} for tid, state_at in reopened_from.items()],
                       {"tid": table.c.id.type, "was": table.c.state_at.type}, key="tid")
        each.execute(session, update(table).where(table.c.id == each.columns["tid"],
                                                  table.c.state_at.is_not_distinct_from(each.columns["was"]))
                     .values(closed_at=None, closed_final=False))


def case_key(row: ThreadRow) -> str:
    """crmhub's key of the thread's current case, as the CRM holds it."""
    return f"{row.conversation_key}#{row.seq}"


def may_reopen(row: ThreadRow | Thread, occurred_at: datetime, window: timedelta) -> bool:
    """Whether a message of `occurred_at` reopens the thread's closed case rather than opening the next.

    The message's own time counts, not when it is processed, so a backlog
    gets the answer it would have had on time. A case the CRM will not
    reopen, or one crmhub never learnt the record of, is never reopened.
    """
    return (row.closed_at is not None and not row.closed_final and row.record_id is not None
            and occurred_at <= row.closed_at + window)


DEFAULT_REOPEN_WINDOW = timedelta(days=3)  # `threads.reopen_window`'s default, for callers without settings


def reopens(thread: ThreadRow | Thread | None, occurred_at: datetime, window: timedelta,
            reopened: Container[int]) -> bool:
    """Whether a message of `occurred_at` goes onto the thread's closed case, reopening it.

    Within `window` of the close (`may_reopen`), or after an earlier message of
    the same run (`reopened`: ids of threads it reopened) reopened it. Routing
    and delivery both ask this, so a reopening message is routed as it is written.
    """
    return (thread is not None and thread.closed_at is not None
            and (thread.id in reopened or may_reopen(thread, occurred_at, window)))


def mark_reopened(session: Session, crm: str, conversation_key: str,
                  reopened_from: Mapping[int, datetime | None]) -> None:
    """crmhub reopened the thread's case: open from now on.

    `reopened_from` holds, per thread, the `state_at` it had when the reopen
    was decided; a thread whose state the CRM changed since (an agent closed
    the case again meanwhile) keeps that newer state. `state_at` itself stays,
    so the closed state crmhub reopened from is never applied again.
    """
    row = thread_of(session, crm, conversation_key)
    if row is not None and row.id in reopened_from and reopened_from[row.id] == row.state_at:
        row.closed_at, row.closed_final = None, False


def apply_case_states(session: Session, crm: str, states: Sequence[CaseState],
                      closes: list[support_cases.Closed] | None = None, *, now: datetime | None = None) -> CaseStates:
    """Record what the CRM says of crmhub's cases: how many threads changed state, how many cases were adopted.

    Only a state of a thread's current case counts (an older case of the
    conversation, `#1` when the thread is at `#2`, is history). A state no
    newer than the last one applied is skipped: a page read before crmhub
    reopened a case must not close it again. A case this store never opened
    (no thread for its conversation, or a later case than the thread's) was
    opened by an earlier store in front of the same org: it is **adopted**,
    the thread taking it as its current case (`adopt_threads`), so the next
    message threads into it instead of opening `#1` again (issue 14).
    `closes`, when given, receives the cases this batch saw close (where
    surveys are asked, in the same transaction); an adopted case's close is
    an earlier store's history, never a new close.
    """
    wanted: dict[str, list[tuple[int, CaseState]]] = {}
    for state in states:
        conversation, _, number = state.case_key.rpartition("#")
        if conversation and number.isdigit():
            wanted.setdefault(conversation, []).append((int(number), state))
    if not wanted:
        return CaseStates(0, 0)
    rows = list(session.scalars(select(ThreadRow).where(ThreadRow.crm == crm,
                                                        among(ThreadRow.conversation_key, list(wanted)))))
    known = {(row.conversation_key, row.seq) for row in rows}
    adopted = adopt_threads(session, crm, rows, wanted, now=now or max(s.modified_at for s in states))
    changed = 0
    history: list[support_cases.StateChange] = []
    applied: dict[int, ThreadRow] = {}
    for row in rows:
        for seq, state in sorted(wanted[row.conversation_key], key=lambda entry: entry[1].modified_at):
            if seq != row.seq or (row.state_at is not None and state.modified_at <= row.state_at):
                continue
            if (row.closed_at, row.closed_final) != (state.closed_at, state.final):
                changed += 1
            if row.closed_at != state.closed_at:
                history.append(support_cases.StateChange(row.conversation_key, seq, state.closed_at,
                                                         reopened=row.closed_at is not None
                                                         and state.closed_at is None))
                if closes is not None and state.closed_at is not None and (row.conversation_key, seq) in known:
                    closes.append(support_cases.Closed(row.conversation_key, seq, row.queue,
                                                       row.record_id or state.record_id, state.closed_at))
            # a case whose creation was never recorded (a crash in between) takes the CRM's record
            _set_state(row, closed_at=state.closed_at, closed_final=state.final, state_at=state.modified_at,
                       record_id=row.record_id if row.record_id is not None else state.record_id)
            applied[row.id] = row
    _save_states(session, list(applied.values()))
    support_cases.states(session, crm, history)
    return CaseStates(changed, adopted)


_STATE = ("closed_at", "closed_final", "state_at", "record_id")  # what a case state sets on its thread


def _set_state(row: ThreadRow, **values: Any) -> None:
    """Set a thread's state in memory as stored (`_save_states` stores it): the ORM has nothing to flush."""
    for name, value in values.items():
        set_committed_value(row, name, value)


def _save_states(session: Session, rows: Sequence[ThreadRow]) -> None:
    """Store the threads' case states in one UPDATE over arrays (`per_row`), not one pipelined UPDATE per
    thread as the ORM's flush of changed objects runs it on PostgreSQL (issue 13)."""
    if not rows:
        return
    table = _THREADS
    each = per_row(session, [{"thread": row.id, **{f"new_{name}": getattr(row, name) for name in _STATE}}
                             for row in rows],
                   {"thread": table.c.id.type, **{f"new_{name}": table.c[name].type for name in _STATE}}, key="thread")
    each.execute(session, update(table).where(table.c.id == each.columns["thread"])
                 .values({name: each.columns[f"new_{name}"] for name in _STATE}))


@dataclass(frozen=True)
class CaseStates:
    """What one page of case states did: threads whose case closed or reopened, cases adopted."""

    changed: int
    adopted: int


def adopt_threads(session: Session, crm: str, rows: list[ThreadRow], wanted: Mapping[str, list[tuple[int, CaseState]]],
                  *, now: datetime) -> int:
    """Threads take on the cases an earlier store opened (new threads added to `rows`); returns how many.

    A conversation without a thread gets one at the newest case the CRM
    holds; a thread behind the CRM (it is at `#1`, the CRM has `#2`) moves
    up to it. The state itself is applied by the caller, so an adopted case
    keeps the CRM's open or closed state. `opened_at` is now: this store
    took the case on now, and the first read of agents' replies starts there.
    """
    by_conversation = {row.conversation_key: row for row in rows}
    adopted = 0
    for conversation, numbered in wanted.items():
        seq, state = max(numbered, key=lambda entry: entry[0])
        row = by_conversation.get(conversation)
        if row is not None and seq <= row.seq:
            continue
        if row is None:
            row = ThreadRow(crm=crm, conversation_key=conversation, queue="", opened_at=now, closed_final=False)
            session.add(row)
            rows.append(row)
        row.seq, row.record_id, row.state_at = seq, state.record_id, None
        row.closed_at, row.closed_final = None, False
        adopted += 1
    if adopted:
        session.flush()
    return adopted


def set_thread_record(session: Session, thread_id: int, record_id: str) -> None:
    row = session.get(ThreadRow, thread_id)
    if row is not None and row.record_id is None:
        row.record_id = record_id


# ---- routing decisions -------------------------------------------------------
def save_decisions(session: Session, decisions: Sequence[tuple[int, RouteDecision]], *, now: datetime) -> None:
    """Each interaction's routing decision (the rule and its targets, the rules tried before it), in one statement;
    a decision saved before for the interaction is replaced."""
    upsert_many(session, RouteDecisionRow, [
        {"interaction_id": interaction_id, "rule": decision.rule,
         "targets": {crm: _fields(target) for crm, target in decision.targets.items()},
         "tried": [list(t) for t in decision.tried], "decided_at": now}
        for interaction_id, decision in decisions], ("interaction_id",))


def _fields(target: QueueTarget) -> dict[str, Any]:
    """A target's fields as stored (JSON): `asdict` without its deep copy, a tenth of routing's CPU (issue 13)."""
    return {f.name: getattr(target, f.name) for f in fields(target)}


def decision_of(session: Session, interaction_id: int) -> RouteDecisionRow | None:
    return session.get(RouteDecisionRow, interaction_id)
