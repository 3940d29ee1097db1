"""Deliver the outbox to one CRM: claim, batch, write, record.

Claiming and recording are short transactions; the CRM call happens between
them, outside any transaction. Per write: success -> done (and the contact
link and case recorded); a transient failure -> due again after a backoff;
a permanent one -> dead letter with the CRM's reason, and the rest of the
batch goes on. Only these outcomes count as attempts (`max_attempts`, the
backoff); a claim the daemon died holding counts only as a claim, and a row
claimed more than `max_claims` times in a row without an outcome (it stops
the daemon whenever it is written) is dead-lettered unwritten
(`crmhub.store.outbox`).

A write refused because its contact is gone from the CRM (`RecordGone`: an
admin deleted it, or merged it into another) is not a dead letter: the
record's fate is read back from the CRM (`FateReader.record_fates`: deleted,
or merged into a survivor), the mirror and the person's links follow it
(`IdentityGraph.absorb_records`), and the write is due again at once, to go
where the person's history now lives. One refused because its *case* is
gone (`CaseGone`: deleted, merged away, closed for good) is due again at
once too, its conversation's case forgotten (`outbox.forget_cases`), so it
opens the conversation's next case.

The writer's API budget decides how far down the priorities a run goes
(`max_priority`, asked before every batch): rows ranked after it are held,
neither attempted nor failed, until the allowance recovers. A `stop` event
set by the daemon ends the run between batches; a batch cut inside (its
waits raise `Interrupted`) is given back to be due at once.

While a batch is written its rows' lease is renewed every lease/3
(`crmhub.sync.renewal`), so another daemon on the same store does not claim
rows still in flight; a batch shorter than that renews nothing.

Asynchronous jobs (issue 13): with `settle_later`, a job-reporting writer
submits and returns without waiting for its jobs; a write it reports
`waiting` stays pending with the job's reference (no attempt, its claim
ended), the contact and case known so far recorded, and is due again after
the writer's `settle_after`; that later claim brings the reference back
(`HistoryWrite.job_ref`) and the writer settles it from the job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from crmhub.errors import CaseGone, Interrupted, RecordGone, TransientError, reason_of
from crmhub.model import (CaseSpec, HistoryWrite, Identity, Interaction, MirrorRecord, OutboxStatus, QueueTarget,
                          WriteOutcome, WritePriority)
from crmhub.store import StateStore, adoption, backlog, graph, ledger, outbox
from crmhub.store.locks import one_at_a_time
from crmhub.sync.blocklist import Blocklist
from crmhub.sync.contacts import ContactMatch, contacts_for
from crmhub.sync.identity import IdentityGraph, IdentityPolicy
from crmhub.sync.renewal import LeaseRenewal

log = structlog.get_logger("crmhub.deliver")
X_CONVERSATIONS = ("x_mention:", "x_dm:")  # conversation keys on X, whose items show the account's current handle


class HistoryWriter(Protocol):
    """A CRM connector that writes interactions onto contacts and cases."""

    name: str

    def write_history(self, writes: Sequence[HistoryWrite]) -> list[WriteOutcome]: ...


class JobReportingWriter(Protocol):
    """A writer whose writes land through asynchronous bulk jobs (`reports_jobs = True`).

    It calls `on_submitted(write keys, job reference)` as soon as a job is
    accepted, before waiting for it; the reference comes back on those
    writes' next attempt as `HistoryWrite.job_ref`.
    """

    reports_jobs: bool

    def write_history(self, writes: Sequence[HistoryWrite], *,
                      on_submitted: Callable[[Sequence[str], str], None] | None = None,
                      settle_later: bool = False, more_due: bool = False) -> list[WriteOutcome]: ...


class FateReader(Protocol):
    """A writer that can say what became of records a write found gone (deleted, merged into a survivor)."""

    def record_fates(self, object_type: str, record_ids: Sequence[str]) -> list[MirrorRecord]: ...


@dataclass(frozen=True)
class DeliveryPolicy:
    """How one CRM's writes are shaped: templates, contact creation, batching."""

    task_templates: Mapping[str, str] = field(default_factory=dict)
    case_templates: Mapping[str, str] = field(default_factory=dict)
    create_contact_as: str | None = None  # object to create when no contact matches
    contact_object: str = "Contact"
    batch_size: int = 50
    blocklist: Blocklist = Blocklist()
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 8
    max_claims: int = 10  # claims cut short in a row (the daemon stopped holding the row) before a dead letter
    retry_base: timedelta = timedelta(seconds=30)
    reopen_window: timedelta = outbox.DEFAULT_REOPEN_WINDOW  # a message this soon after its case closed reopens it


@dataclass
class DeliveryReport:
    crm: str
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    held: int = 0  # pending rows ranked after what the budget allowed when the run ended
    cut_short: bool = False  # the daemon is stopping: the run ended before the outbox was drained
    noted: int = 0  # link suggestions noted on their case (`crmhub.sync.links`), after the writes
    retargeted: int = 0  # writes whose contact or case was gone from the CRM, due again for what is left
    latencies: list[float] = field(default_factory=list)
    """Seconds from each delivered item's channel time to the CRM's confirmation (relinks left out): metrics."""
    adopted: int = 0  # of `delivered`, writes found in the CRM as an earlier state store made them (issue 14)
    waiting: int = 0  # writes left in the CRM's asynchronous jobs, to be settled by a later run
    settle_in: float | None = None  # seconds until the soonest urgent one of them is due again
    ride_in: float | None = None  # ... the soonest of the others (`WriteOutcome.urgent` False)
    renewals: int = 0  # lease renewals of batches that outlived a third of their lease (`crmhub.sync.renewal`)
    leases_lost: int = 0  # rows a renewal found claimed by another daemon after their lease lapsed


def deliver(store: StateStore, writer: HistoryWriter, policy: DeliveryPolicy, *, now: datetime,
            max_priority: Callable[[], WritePriority] | None = None, stop: threading.Event | None = None,
            clock: Callable[[], datetime] | None = None, settle_later: bool = False,
            waiting_only: bool = False) -> DeliveryReport:
    """Deliver due outbox rows of `writer`'s CRM, batch after batch, until none is due.

    Args:
        max_priority: the lowest-ranked write the CRM's budget lets through, asked before
            each batch (None: every write).
        stop: when set, no further batch starts.
        clock: read before each claim and each record (pacing may make a batch take a while,
            and leases and retry times count from then); None: `now` throughout.
        settle_later: a job-reporting writer submits without waiting for its jobs (the daemon's
            workers); a later run settles them.
        waiting_only: only rows waiting on a job already submitted (a settling run: new rows wait
            for their batch to fill).
    """
    report = DeliveryReport(writer.name)
    allowed = _drain(store, writer, policy, report, clock=clock or (lambda: now), max_priority=max_priority,
                     stop=stop, settle_later=settle_later, waiting_only=waiting_only)
    if allowed < WritePriority.BACKFILL:
        with store.transaction() as session:
            report.held = outbox.count_held(session, writer.name, allowed)
        if report.held:
            log.info("writes held by the API budget", crm=writer.name, held=report.held,
                     allowed=allowed.name.lower())
    return report


@dataclass
class _Batch:
    """One claimed batch on its way: the writes by outbox row, and what recording their outcomes needs."""

    claims: dict[int, outbox.Claim] = field(default_factory=dict)  # the claims written, by outbox row
    writes: dict[int, HistoryWrite] = field(default_factory=dict)
    reopening: dict[int, datetime | None] = field(default_factory=dict)  # thread -> its state_at, reopened here
    reopened: dict[str, int] = field(default_factory=dict)  # conversation -> its thread, for the writes reopening it
    dead: list[tuple[outbox.Claim, str, bool]] = field(default_factory=list)  # (claim, reason, attempted)
    gone: dict[str, set[str]] = field(default_factory=dict)  # contact object -> records writes found gone


def _drain(store: StateStore, writer: HistoryWriter, policy: DeliveryPolicy, report: DeliveryReport, *,
           clock: Callable[[], datetime], max_priority: Callable[[], WritePriority] | None,
           stop: threading.Event | None, settle_later: bool = False, waiting_only: bool = False) -> WritePriority:
    """The batches of one run; returns what the budget allowed last."""
    allowed = WritePriority.BACKFILL
    jobs = getattr(writer, "reports_jobs", False)
    while True:
        if stop is not None and stop.is_set():
            report.cut_short = True
            return allowed
        allowed = max_priority() if max_priority is not None else WritePriority.BACKFILL
        now = clock()
        with store.transaction() as session:
            # New rows fill the batch; rows waiting on CRM jobs come along (up to as many again) without taking
            # its places: settling them submits little or nothing. Both as of one moment: a follow-up and the
            # write opening its case, each in its own part, go together.
            claims = outbox.claim_due(session, writer.name, policy.batch_size, now=now, lease=policy.lease,
                                      max_priority=allowed, waiting_only=waiting_only,
                                      new_only=not waiting_only and jobs)
            fresh = len(claims)
            if not waiting_only and jobs:  # only a job-reporting writer leaves rows waiting (`save_job_ref`)
                # Rows whose jobs come due while this batch's own wait for its jobs runs (`settle_lookahead`) are
                # read with it: one status read, not a settling run of their own a moment later (50 msg/s).
                soon = now + timedelta(seconds=getattr(writer, "settle_lookahead", 0.0) if settle_later else 0.0)
                claims += outbox.claim_due(session, writer.name, policy.batch_size, now=soon, lease=policy.lease,
                                           max_priority=allowed, waiting_only=True,
                                           besides=[claim.id for claim in claims])
            # In the order the messages were sent (channels page newest first): threading decides in that order.
            claims.sort(key=lambda claim: (claim.occurred_at, claim.id))
            # A full batch with another full one due behind it: nothing in this call may wait (50 msg/s).
            more_due = (settle_later and fresh >= policy.batch_size
                        and backlog.due_count(session, writer.name, now=now, limit=policy.batch_size)
                        >= policy.batch_size)
            batch = _prepare(session, claims, writer.name, policy, now=now)
            _record_dead(session, batch.dead, writer.name, report, now=now)
        if not claims:
            return allowed
        writes = batch.writes
        renewal = LeaseRenewal(store, outbox.renew, {row: batch.claims[row].next_attempt_at for row in writes},
                               lease=policy.lease, clock=clock, crm=writer.name,
                               keys={row: write.key for row, write in writes.items()})
        try:
            with renewal:  # a batch outliving its lease keeps its rows: no other daemon writes them meanwhile
                outcomes = (_write(store, writer, list(writes.values()), settle_later, more_due, renewal)
                            if writes else [])
        except TransientError as exc:  # the whole batch failed; try again later
            outcomes = [WriteOutcome(w.key, error=exc) for w in writes.values()]
        except Interrupted:  # stopping mid-batch: due again at once for the next start
            with store.transaction() as session:
                outbox.release(session, list(writes), now=clock())
            report.cut_short = True
            return allowed
        finally:
            report.renewals += renewal.renewals
            report.leases_lost += len(renewal.lost)
        now = clock()
        with store.transaction() as session:
            _record(session, batch, outcomes, writer.name, policy, report, now=now)
        if batch.gone:
            _retarget(store, writer, batch.gone, policy, now=clock())
        if max(fresh, len(claims) - fresh) < policy.batch_size:
            return allowed
        if settle_later and not more_due:
            # A worker's run: the rows that came while this batch went are rung for and fill a batch of their
            # own (worth its calls) instead of going now as a few stragglers that cost a batch's jobs.
            return allowed


def _write(store: StateStore, writer: HistoryWriter, writes: list[HistoryWrite], settle_later: bool = False,
           more_due: bool = False, renewal: LeaseRenewal | None = None) -> list[WriteOutcome]:
    """The CRM call; each bulk job a job-reporting writer submits is stored at once with its rows.

    Stored in its own transaction, so it outlives a crash, a lease running
    out or a timeout: the next attempt waits for that job instead of sending
    the rows again (issue 13). It takes turns with the batch's lease
    renewals, which update the same rows (two UPDATEs locking them in
    different orders could deadlock on PostgreSQL).
    """
    if not getattr(writer, "reports_jobs", False):
        return writer.write_history(writes)

    def submitted(keys: Sequence[str], job_ref: str) -> None:
        with renewal.settling(()) if renewal is not None else nullcontext(), store.transaction() as session:
            outbox.save_job_ref(session, writer.name, keys, job_ref)

    job_writer = cast(JobReportingWriter, writer)
    if settle_later:
        return job_writer.write_history(writes, on_submitted=submitted, settle_later=True, more_due=more_due)
    return job_writer.write_history(writes, on_submitted=submitted)


def _prepare(session: Session, claims: Sequence[outbox.Claim], crm: str, policy: DeliveryPolicy, *,
             now: datetime) -> _Batch:
    """The batch's writes, resolved together; a row that cannot be prepared is dead, and the others go on.

    Contacts, identities and threads of the whole batch are read in a few
    queries; threads are then decided in memory in the messages' order (a
    conversation's first message opens its case, the next ones follow it)
    and stored at once. A row that stopped the daemon too often is dead
    unwritten. E.g. a history template `{duration:d}` renders for calls and
    raises ValueError for messages: that is the row's failure, not the batch's.
    """
    batch = _Batch()
    live = []
    for claim in claims:
        if claim.claims > policy.max_claims:
            batch.dead.append((claim, _stopped_too_often(claim, crm), False))
        else:
            live.append(claim)
    resolved = _resolve_each(session, live, crm, policy, batch, now=now)
    contacts, identities, threads = resolved.contacts, resolved.identities, resolved.threads
    horizon = adoption.horizon(session, crm) if live else None
    opened: dict[str, outbox.Thread] = {}
    for claim in live:
        if claim.person_id is not None and claim.person_id not in contacts:
            continue  # its contact could not be resolved: dead already
        try:
            if claim.person_id is None:
                raise ValueError("its interaction was never routed to a person")
            contact = contacts[claim.person_id]
            new_contact = tuple(policy.blocklist.usable(identities.get(claim.person_id, []))) if (
                contact is None and policy.create_contact_as) else ()  # never a contact made of a shared number alone
            write, thread = _history_write(claim, claim.person_id, crm, policy, contact, new_contact,
                                           threads.get(claim.conversation_key), now=now, batch=batch,
                                           horizon=horizon, contact_key=resolved.keys.get(claim.person_id, ""),
                                           handle=resolved.handles.get(claim.person_id, ""))
        except Exception as exc:  # noqa: BLE001  # whatever one row raises, the batch goes on
            _not_prepared(batch, claim, crm, exc)
            continue
        batch.claims[claim.id], batch.writes[claim.id] = claim, write
        if thread is not threads.get(claim.conversation_key):
            threads[claim.conversation_key] = opened[claim.conversation_key] = thread
    outbox.save_threads(session, crm, list(opened.values()))
    return batch


@dataclass
class Resolved:
    """What a batch's writes need from the store, read together for the batch (by person, by conversation)."""

    contacts: dict[int, ContactMatch | None] = field(default_factory=dict)
    identities: dict[int, list[Identity]] = field(default_factory=dict)  # of persons without a contact
    keys: dict[int, str] = field(default_factory=dict)  # the key each such person's contact is created under
    handles: dict[int, str] = field(default_factory=dict)  # X handles renamed since their contact's field was set
    threads: dict[str, outbox.Thread] = field(default_factory=dict)

    def update(self, other: Resolved) -> None:
        for name in ("contacts", "identities", "keys", "handles", "threads"):
            getattr(self, name).update(getattr(other, name))


def _resolve(session: Session, claims: Sequence[outbox.Claim], crm: str, policy: DeliveryPolicy, *,
             now: datetime) -> Resolved:
    """The claims' contacts, the identities and contact keys of persons without one (to create it), renamed X
    handles of persons with one, and the claims' threads."""
    persons = [claim.person_id for claim in claims if claim.person_id is not None]
    relinker = IdentityGraph(session, [crm], IdentityPolicy(blocklist=policy.blocklist), now)
    held = graph.identities_of_many(session, persons)  # read once: for matching, and to create missing contacts
    contacts = contacts_for(session, persons, crm, now=now, blocklist=policy.blocklist, on_linked=relinker.relink_many,
                            identities=held)
    unknown = [person for person, contact in contacts.items() if contact is None] if policy.create_contact_as else []
    identities = {person: held[person] for person in unknown if person in held}  # linking changes no identity
    on_x = {claim.person_id for claim in claims if claim.conversation_key.startswith(X_CONVERSATIONS)}
    handles = graph.renamed_handles(session, crm, {person: contact.record_id for person, contact in contacts.items()
                                                   if contact is not None and person in on_x})
    return Resolved(contacts, identities, graph.contact_keys(session, identities), handles,
                    outbox.threads_of(session, crm, [claim.conversation_key for claim in claims]))


def _resolve_each(session: Session, claims: Sequence[outbox.Claim], crm: str, policy: DeliveryPolicy,
                  batch: _Batch, *, now: datetime) -> Resolved:
    """`_resolve` for the batch; when the store refuses that, claim by claim, the refused ones dead.

    A failure of the store itself (connection, lock) is raised: the batch's
    claims are rolled back with it, never blamed on an item.
    """
    try:
        with ledger.isolated(session):
            return _resolve(session, claims, crm, policy, now=now)
    except Exception as exc:  # noqa: BLE001  # one item's data; found below
        if isinstance(exc, DBAPIError) and not ledger.item_fault(exc):
            raise
    resolved = Resolved()
    for claim in claims:
        try:
            with ledger.isolated(session):
                found = _resolve(session, [claim], crm, policy, now=now)
        except Exception as exc:  # noqa: BLE001  # whatever one row raises, the batch goes on
            if isinstance(exc, DBAPIError) and not ledger.item_fault(exc):
                raise
            _not_prepared(batch, claim, crm, exc)
            continue
        resolved.update(found)
    return resolved


def _not_prepared(batch: _Batch, claim: outbox.Claim, crm: str, exc: Exception) -> None:
    """The claim is dead: its write could not be prepared (the reason names the item and the CRM, not the text)."""
    reason = f"{claim.idempotency_key} -> {crm}: not written, its write could not be prepared: {reason_of(exc)}"
    batch.dead.append((claim, reason, True))
    log.error("write not prepared", crm=crm, item=claim.idempotency_key, error=type(exc).__name__,
              reason=reason_of(exc)[:200])


def _stopped_too_often(claim: outbox.Claim, crm: str) -> str:
    """Why a row whose every claim ended with the daemon gone (a poison row crashing it) is not tried again.

    Its earlier claims may have written it; a replay checks the CRM first, as any retry does.
    """
    stopped = claim.claims - 1  # the claims before this one, all cut short
    log.error("write dead-lettered: the daemon stopped while writing it too often", crm=crm,
              item=claim.idempotency_key, claims=stopped)
    return (f"{claim.idempotency_key} -> {crm}: not written again: the daemon stopped while writing it {stopped} "
            "times in a row (killed, crashed or shut down before the CRM answered); see its log for a crash "
            "while writing this item, then replay it")


def _record_dead(session: Session, dead: Sequence[tuple[outbox.Claim, str, bool]], crm: str,
                 report: DeliveryReport, *, now: datetime) -> None:
    """Outbox rows dead for good, with dead letters ops can replay once the cause is fixed (in bulk)."""
    if dead:
        outbox.record_outcomes(session, [outbox.Outcome(claim.id, OutboxStatus.DEAD, error=reason,
                                                        attempted=attempted) for claim, reason, attempted in dead],
                               now=now)
        ledger.add_dead_letters(session, f"deliver:{crm}", [(claim.idempotency_key, reason, {"outbox_id": claim.id})
                                                            for claim, reason, _ in dead], now=now)
        report.dead += len(dead)


def _history_write(claim: outbox.Claim, person_id: int, crm: str, policy: DeliveryPolicy,
                   contact: ContactMatch | None, new_contact: tuple[Any, ...], earlier: outbox.Thread | None, *,
                   now: datetime, batch: _Batch, horizon: datetime | None = None,
                   contact_key: str = "", handle: str = "") -> tuple[HistoryWrite, outbox.Thread]:
    """The claim's write and the thread it goes onto (unsaved when it opens one); raises when it cannot be made.

    An interaction from before the CRM's adoption `horizon` may have been
    written by an earlier state store: its write is marked `adopt`.
    """
    item = ledger.to_interaction(claim.item, raw=False)
    targets = claim.targets or {}
    target = QueueTarget(**targets[crm]) if crm in targets else QueueTarget("")
    context = _template_context(item, claim.rule or "", target.queue)
    adopt = horizon is not None and item.occurred_at <= horizon and not claim.relink
    # an earlier write (of this store, or of an earlier one) may have opened its case
    tried_before = (earlier is not None and earlier.closed_at is None) or adopt
    # A closed case reopens for a message within the window (or one following such a message in this batch).
    reopen = earlier is not None and outbox.reopens(earlier, item.occurred_at, policy.reopen_window, batch.reopening)
    thread = earlier if reopen and earlier is not None else outbox.next_thread(
        earlier, item.conversation_key, target.queue, now=now, first_at=item.occurred_at)
    new_case = None if thread.record_id else CaseSpec(
        key=f"{item.conversation_key}#{thread.seq}", target=target, fields=_render(policy.case_templates, context),
        may_exist=tried_before)
    fields = _render(policy.task_templates, context)
    if reopen and thread.id is not None:
        batch.reopening.setdefault(thread.id, thread.state_at)
        batch.reopened[item.conversation_key] = thread.id
    # Only a row's very first claim is certain: an earlier attempt, or a claim cut short, may have written it.
    first_attempt = claim.attempts == 0 and claim.claims == 1 and not claim.relink and not adopt
    return HistoryWrite(
        key=claim.idempotency_key, person_id=person_id, interaction=item, fields=fields,
        contact_object=contact.object_type if contact else (policy.create_contact_as or policy.contact_object),
        contact_id=contact.record_id if contact else None, new_contact=new_contact,
        case_id=thread.record_id, new_case=new_case, first_attempt=first_attempt,
        relink=claim.relink, reopen=QueueTarget(thread.queue or target.queue) if reopen else None,
        job_ref=claim.job_ref, adopt=adopt, contact_key=contact_key if new_contact else "",
        contact_update={"x_handle": handle} if handle and contact else {},
        detach_from=claim.detach_from if claim.relink else None), thread


def _record(session: Session, batch: _Batch, outcomes: Sequence[WriteOutcome], crm: str, policy: DeliveryPolicy,
            report: DeliveryReport, *, now: datetime) -> None:
    """The batch's outcomes in bulk: outbox rows, new contact links, new case records, reopened cases."""
    recorded: list[outbox.Outcome] = []
    dead: list[tuple[outbox.Claim, str, bool]] = []
    links: list[tuple[int, str, str]] = []
    cases: dict[str, str] = {}
    reopened: dict[int, datetime | None] = {}
    adopted: dict[str, int] = {}
    gone_cases: dict[str, str] = {}  # conversation -> its case the CRM says is gone
    for (outbox_id, write), outcome in zip(batch.writes.items(), outcomes, strict=True):
        if outcome.waiting:  # in a job: what is known so far is recorded, the row waits to be settled
            recorded.append(outbox.Outcome(outbox_id, OutboxStatus.PENDING, job_ref=outcome.job_ref,
                                           retry_at=now + timedelta(seconds=outcome.settle_after),
                                           sent_before=not write.first_attempt))
            if outcome.contact_id and write.contact_id is None:
                links.append((write.person_id, write.contact_object, outcome.contact_id))
            if outcome.case_id and write.new_case is not None:
                cases.setdefault(write.interaction.conversation_key, outcome.case_id)
            report.waiting += 1
            if outcome.urgent:
                soonest = report.settle_in
                report.settle_in = outcome.settle_after if soonest is None else min(soonest, outcome.settle_after)
            else:  # it rides the next run that comes
                soonest = report.ride_in
                report.ride_in = outcome.settle_after if soonest is None else min(soonest, outcome.settle_after)
            continue
        if outcome.ok:
            recorded.append(outbox.Outcome(outbox_id, OutboxStatus.DONE, result_ref=outcome.record_id,
                                           contact_ref=write.contact_id or outcome.contact_id))
            if outcome.contact_id and write.contact_id is None:
                links.append((write.person_id, write.contact_object, outcome.contact_id))
            if outcome.case_id and write.new_case is not None and not outcome.adopted:  # adopted: on its old case
                cases.setdefault(write.interaction.conversation_key, outcome.case_id)
            if outcome.adopted:  # found as an earlier store wrote it: taken as it is, its case left as it is
                adopted[outcome.adopted] = adopted.get(outcome.adopted, 0) + 1
                report.adopted += 1
            elif write.reopen is not None:
                thread = batch.reopened[write.interaction.conversation_key]
                reopened[thread] = batch.reopening[thread]
            report.delivered += 1
            if not write.relink:
                report.latencies.append(max(0.0, (now - write.interaction.occurred_at).total_seconds()))
            continue
        error = outcome.error
        reason = f"{write.key} -> {crm}: {reason_of(error)}"
        attempt = batch.claims[outbox_id].attempts + 1  # this one, counted as its outcome is recorded
        if isinstance(error, CaseGone) and write.case_id and attempt < policy.max_attempts:
            # Due again at once: by then its conversation's case is forgotten, and it opens the next one.
            recorded.append(outbox.Outcome(outbox_id, OutboxStatus.PENDING, error=reason, retry_at=now))
            gone_cases[write.interaction.conversation_key] = write.case_id
            report.retargeted += 1
        elif isinstance(error, RecordGone) and write.contact_id and attempt < policy.max_attempts:
            # Due again at once: by then its person's links follow the record's fate (`_retarget`).
            recorded.append(outbox.Outcome(outbox_id, OutboxStatus.PENDING, error=reason, retry_at=now))
            batch.gone.setdefault(write.contact_object, set()).add(write.contact_id)
            report.retargeted += 1
        elif isinstance(error, TransientError) and attempt < policy.max_attempts:
            recorded.append(outbox.Outcome(outbox_id, OutboxStatus.PENDING, error=reason,
                                           retry_at=now + policy.retry_base * 2 ** (attempt - 1)))
            report.retrying += 1
        else:
            dead.append((batch.claims[outbox_id], reason, True))
        log.warning("write failed", crm=crm, item=write.key, error=type(error).__name__,
                    reason=reason_of(error)[:200])
    outbox.record_outcomes(session, recorded, now=now)
    _record_dead(session, dead, crm, report, now=now)
    graph.add_links(session, crm, links, now=now)
    outbox.record_cases(session, crm, cases)
    outbox.record_reopened(session, reopened)
    outbox.forget_cases(session, crm, gone_cases, now=now)
    adoption.add(session, crm, adopted, now=now)


def _retarget(store: StateStore, writer: HistoryWriter, gone: Mapping[str, set[str]], policy: DeliveryPolicy, *,
              now: datetime) -> None:
    """Records writes found gone: read their fate from the CRM, and let the mirror and the links follow it.

    A writer that cannot say (no `record_fates`) has them taken as deleted;
    a record the CRM still shows alive changes nothing (the write's next
    failure counts towards `max_attempts` as any other).
    """
    fates: list[MirrorRecord] = []
    reader = cast(FateReader, writer) if hasattr(writer, "record_fates") else None
    for object_type, record_ids in sorted(gone.items()):
        ids = sorted(record_ids)
        found = {r.record_id: r for r in reader.record_fates(object_type, ids)} if reader is not None else {}
        # A CRM may answer for more than was asked (the other records one merge absorbed, gone as well).
        fates += [*found.values(), *(MirrorRecord(crm=writer.name, object_type=object_type, record_id=i, identities=(),
                                                  fields={}, modified_at=now, deleted=True)
                                     for i in ids if i not in found)]
    with store.transaction() as session:
        one_at_a_time(session, f"mirror:{writer.name}")
        graph.upsert_mirror(session, fates)
        IdentityGraph(session, [writer.name], IdentityPolicy(blocklist=policy.blocklist), now).absorb_records(fates)
    log.info("writes re-targeted: their contact is gone from the CRM", crm=writer.name,
             records=sum(len(ids) for ids in gone.values()),
             merged=sum(1 for r in fates if r.deleted and r.merged_into), deleted=sum(1 for r in fates if r.deleted))


def _template_context(item: Interaction, rule: str, queue: str) -> dict[str, Any]:
    return {
        "channel": item.channel.value, "channel_label": item.channel.label, "direction": item.direction.value,
        "sender": item.sender.display or item.sender.value, "recipient": item.recipient.display or item.recipient.value,
        "text": item.text, "occurred_at": item.occurred_at.isoformat(),
        "duration": item.call.duration_seconds if item.call else "", "media_count": len(item.media),
        "conversation": item.conversation_key, "rule": rule, "queue": queue, "language": item.language or "",
    }


def _render(templates: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
    return {name: template.format_map(context) for name, template in templates.items()}
