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

The writer's API budget decides how far down the priorities a run goes
(`max_priority`, asked before every batch): rows ranked after it are held,
neither attempted nor failed, until the allowance recovers. A `stop` event
set by the daemon ends the run between batches; a batch cut inside (its
waits raise `Interrupted`) is given back to be due at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import structlog
from sqlalchemy.orm import Session

from crmhub.errors import Interrupted, TransientError, reason_of
from crmhub.model import CaseSpec, HistoryWrite, Interaction, QueueTarget, WriteOutcome, WritePriority
from crmhub.store import StateStore, graph, ledger, outbox
from crmhub.store.schema import LedgerRow, OutboxRow
from crmhub.sync.blocklist import Blocklist
from crmhub.sync.contacts import contact_for
from crmhub.sync.identity import IdentityGraph, IdentityPolicy

log = structlog.get_logger("crmhub.deliver")


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
                      on_submitted: Callable[[Sequence[str], str], None] | None = None) -> list[WriteOutcome]: ...


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


def deliver(store: StateStore, writer: HistoryWriter, policy: DeliveryPolicy, *, now: datetime,
            max_priority: Callable[[], WritePriority] | None = None, stop: threading.Event | None = None,
            clock: Callable[[], datetime] | None = None) -> DeliveryReport:
    """Deliver due outbox rows of `writer`'s CRM, batch after batch, until none is due.

    Args:
        max_priority: the lowest-ranked write the CRM's budget lets through, asked before
            each batch (None: every write).
        stop: when set, no further batch starts.
        clock: read before each claim and each record (pacing may make a batch take a while,
            and leases and retry times count from then); None: `now` throughout.
    """
    report = DeliveryReport(writer.name)
    allowed = _drain(store, writer, policy, report, clock=clock or (lambda: now), max_priority=max_priority,
                     stop=stop)
    if allowed < WritePriority.BACKFILL:
        with store.transaction() as session:
            report.held = outbox.count_held(session, writer.name, allowed)
        if report.held:
            log.info("writes held by the API budget", crm=writer.name, held=report.held,
                     allowed=allowed.name.lower())
    return report


def _drain(store: StateStore, writer: HistoryWriter, policy: DeliveryPolicy, report: DeliveryReport, *,
           clock: Callable[[], datetime], max_priority: Callable[[], WritePriority] | None,
           stop: threading.Event | None) -> WritePriority:
    """The batches of one run; returns what the budget allowed last."""
    allowed = WritePriority.BACKFILL
    while True:
        if stop is not None and stop.is_set():
            report.cut_short = True
            return allowed
        allowed = max_priority() if max_priority is not None else WritePriority.BACKFILL
        now = clock()
        with store.transaction() as session:
            rows = outbox.claim_due(session, writer.name, policy.batch_size, now=now, lease=policy.lease,
                                    max_priority=allowed)
            # In the order the messages were sent (channels page newest first): threading decides in that order.
            rows.sort(key=lambda row: (_sent_at(session, row), row.id))
            reopening: dict[int, datetime | None] = {}  # thread -> its state_at, for threads this batch reopens
            writes = _prepare(session, rows, writer.name, policy, report, now=now, reopening=reopening)
        if not rows:
            return allowed
        try:
            outcomes = _write(store, writer, list(writes.values())) if writes else []
        except TransientError as exc:  # the whole batch failed; try again later
            outcomes = [WriteOutcome(w.key, error=exc) for w in writes.values()]
        except Interrupted:  # stopping mid-batch: due again at once for the next start
            with store.transaction() as session:
                outbox.release(session, list(writes), now=clock())
            report.cut_short = True
            return allowed
        now = clock()
        with store.transaction() as session:
            for (outbox_id, write), outcome in zip(writes.items(), outcomes, strict=True):
                _record(session, outbox_id, write, outcome, writer.name, policy, report, now=now,
                        reopening=reopening)
        if len(rows) < policy.batch_size:
            return allowed


def _write(store: StateStore, writer: HistoryWriter, writes: list[HistoryWrite]) -> list[WriteOutcome]:
    """The CRM call; each bulk job a job-reporting writer submits is stored at once with its rows.

    Stored in its own transaction, so it outlives a crash, a lease running
    out or a timeout: the next attempt waits for that job instead of sending
    the rows again (issue 13).
    """
    if not getattr(writer, "reports_jobs", False):
        return writer.write_history(writes)

    def submitted(keys: Sequence[str], job_ref: str) -> None:
        with store.transaction() as session:
            outbox.save_job_ref(session, writer.name, keys, job_ref)

    return cast(JobReportingWriter, writer).write_history(writes, on_submitted=submitted)


def _prepare(session: Session, rows: Sequence[OutboxRow], crm: str, policy: DeliveryPolicy,
             report: DeliveryReport, *, now: datetime,
             reopening: dict[int, datetime | None]) -> dict[int, HistoryWrite]:
    """The batch's writes; a row that cannot even be prepared is dead-lettered, and the others go on.

    E.g. a history template `{duration:d}` renders for calls and raises
    ValueError for messages: that is the row's failure, not the batch's.
    """
    writes: dict[int, HistoryWrite] = {}
    for row in rows:
        if row.claims > policy.max_claims:
            _stopped_too_often(session, row, crm, report, now=now)
            continue
        try:
            with ledger.isolated(session):
                writes[row.id] = _history_write(session, row, crm, policy, now=now, reopening=reopening)
        except Exception as exc:  # noqa: BLE001  # whatever one row raises, the batch goes on
            reason = f"{row.idempotency_key} -> {crm}: not written, its write could not be prepared: {reason_of(exc)}"
            _dead(session, row.id, row.idempotency_key, crm, reason, report, now=now)
            log.error("write not prepared", crm=crm, item=row.idempotency_key, error=type(exc).__name__,
                      reason=reason_of(exc)[:200])
    return writes


def _stopped_too_often(session: Session, row: OutboxRow, crm: str, report: DeliveryReport, *,
                       now: datetime) -> None:
    """A row whose every claim ended with the daemon gone (a poison row crashing it): not tried again.

    Its earlier claims may have written it; a replay checks the CRM first, as any retry does.
    """
    stopped = row.claims - 1  # the claims before this one, all cut short
    reason = (f"{row.idempotency_key} -> {crm}: not written again: the daemon stopped while writing it {stopped} "
              "times in a row (killed, crashed or shut down before the CRM answered); see its log for a crash "
              "while writing this item, then replay it")
    _dead(session, row.id, row.idempotency_key, crm, reason, report, now=now, attempted=False)
    log.error("write dead-lettered: the daemon stopped while writing it too often", crm=crm,
              item=row.idempotency_key, claims=stopped)


def _dead(session: Session, outbox_id: int, key: str, crm: str, reason: str, report: DeliveryReport, *,
          now: datetime, attempted: bool = True) -> None:
    """The outbox row dead for good, with a dead letter ops can replay once the cause is fixed."""
    outbox.mark_dead(session, outbox_id, reason, now=now, attempted=attempted)
    ledger.add_dead_letter(session, f"deliver:{crm}", key, reason, {"outbox_id": outbox_id}, now=now)
    report.dead += 1


def _sent_at(session: Session, row: OutboxRow) -> datetime:
    ledger_row = session.get(LedgerRow, row.interaction_id)
    assert ledger_row is not None  # the outbox row's interaction
    return ledger_row.occurred_at


def _history_write(session: Session, row: OutboxRow, crm: str, policy: DeliveryPolicy,
                   *, now: datetime, reopening: dict[int, datetime | None]) -> HistoryWrite:
    ledger_row = session.get(LedgerRow, row.interaction_id)
    assert ledger_row is not None and ledger_row.person_id is not None  # processed before enqueued
    item = ledger.to_interaction(ledger_row)
    decision = outbox.decision_of(session, row.interaction_id)
    target = QueueTarget(**decision.targets[crm]) if decision and crm in decision.targets else QueueTarget("")
    context = _template_context(item, decision.rule if decision else "", target.queue)
    relinker = IdentityGraph(session, [crm], IdentityPolicy(blocklist=policy.blocklist), now)
    contact = contact_for(session, ledger_row.person_id, crm, now=now, blocklist=policy.blocklist,
                          on_linked=relinker.relink)
    new_contact: tuple[Any, ...] = ()
    if contact is None and policy.create_contact_as:  # never a contact made of a shared number alone
        new_contact = tuple(policy.blocklist.usable(graph.identities_of(session, ledger_row.person_id)))
    earlier = outbox.thread_of(session, crm, item.conversation_key)
    tried_before = earlier is not None and earlier.closed_at is None  # an earlier write may have opened its case
    # A closed case reopens for a message within the window (or one following such a message in this batch).
    if earlier is not None and outbox.reopens(earlier, item.occurred_at, policy.reopen_window, reopening):
        thread, reopen = earlier, True
        reopening.setdefault(thread.id, thread.state_at)
    else:
        thread, reopen = outbox.open_thread(session, crm, item.conversation_key, target.queue, now=now), False
    new_case = None if thread.record_id else CaseSpec(
        key=f"{item.conversation_key}#{thread.seq}", target=target, fields=_render(policy.case_templates, context),
        may_exist=tried_before)
    # Only a row's very first claim is certain: an earlier attempt, or a claim cut short, may have written it.
    first_attempt = row.attempts == 0 and row.claims == 1 and not row.relink
    return HistoryWrite(
        key=row.idempotency_key, person_id=ledger_row.person_id, interaction=item,
        fields=_render(policy.task_templates, context),
        contact_object=contact.object_type if contact else (policy.create_contact_as or policy.contact_object),
        contact_id=contact.record_id if contact else None, new_contact=new_contact,
        case_id=thread.record_id, new_case=new_case, first_attempt=first_attempt,
        relink=row.relink, reopen=QueueTarget(thread.queue) if reopen else None, job_ref=row.job_ref)


def _record(session: Session, outbox_id: int, write: HistoryWrite, outcome: WriteOutcome, crm: str,
            policy: DeliveryPolicy, report: DeliveryReport, *, now: datetime,
            reopening: Mapping[int, datetime | None]) -> None:
    if outcome.ok:
        outbox.mark_done(session, outbox_id, outcome.record_id, now=now,
                         contact_ref=write.contact_id or outcome.contact_id)
        if outcome.contact_id and write.contact_id is None:
            graph.add_link(session, write.person_id, crm, write.contact_object, outcome.contact_id, now=now)
        if outcome.case_id and write.new_case is not None:
            thread = outbox.thread_of(session, crm, write.interaction.conversation_key)
            if thread is not None:
                outbox.set_thread_record(session, thread.id, outcome.case_id)
        if write.reopen is not None:
            outbox.mark_reopened(session, crm, write.interaction.conversation_key, reopening)
        report.delivered += 1
        return
    error = outcome.error
    reason = f"{write.key} -> {crm}: {reason_of(error)}"
    row = session.get(OutboxRow, outbox_id)
    attempt = row.attempts + 1 if row else policy.max_attempts  # this one, counted as its outcome is recorded
    if isinstance(error, TransientError) and attempt < policy.max_attempts:
        outbox.mark_retry(session, outbox_id, reason, retry_at=now + policy.retry_base * 2 ** (attempt - 1))
        report.retrying += 1
    else:
        _dead(session, outbox_id, write.key, crm, reason, report, now=now)
    log.warning("write failed", crm=crm, item=write.key, error=type(error).__name__, reason=reason_of(error)[:200])


def _template_context(item: Interaction, rule: str, queue: str) -> dict[str, Any]:
    return {
        "channel": item.channel.value, "channel_label": item.channel.label, "direction": item.direction.value,
        "sender": item.sender.display or item.sender.value, "recipient": item.recipient.display or item.recipient.value,
        "text": item.text, "occurred_at": item.occurred_at.isoformat(),
        "duration": item.call.duration_seconds if item.call else "", "media_count": len(item.media),
        "conversation": item.conversation_key, "rule": rule, "queue": queue,
    }


def _render(templates: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
    return {name: template.format_map(context) for name, template in templates.items()}
