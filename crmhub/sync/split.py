"""Undoing a join: the absorbed person gets back what the join moved, and its history goes back in every CRM.

`undo_join` is one store transaction. It appends a `split` event, gives the
absorbed person back the identities, CRM links and ledger rows the join
moved (`link_event_rows`), and the ledger rows that came later from an
identity going back. Every delivered write of either person that now sits
on the other's record comes due again as a relink (the same idempotent
outbox as any backfill), carrying the wrong record (`detach_from`) so a CRM
that keeps old associations (HubSpot) removes it. So the CRM side is done
exactly once across kills by the outbox, however often the daemon restarts.

A join with a later join of one of its persons on top is refused: the
persons are no longer what this join made, so the later one goes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import and_, bindparam, exists, select, update
from sqlalchemy.orm import Session

from crmhub.errors import CrmhubError
from crmhub.model import Direction, OutboxStatus, WritePriority
from crmhub.store import conflicts, graph, linklog, outbox
from crmhub.store.linklog import Action, Evidence
from crmhub.store.links import LinkStatus
from crmhub.store.locks import one_at_a_time
from crmhub.store.schema import IdentityRow, LedgerRow, LinkSuggestionRow, OutboxRow, PersonRow
from crmhub.store.sets import among
from crmhub.sync.identity import IdentityGraph, IdentityPolicy

log = structlog.get_logger("crmhub.split")


class UndoRefused(CrmhubError):
    """The event cannot be undone (unknown, no join, undone already, or a later join on top)."""


@dataclass
class Split:
    """What an undo did: the split event, what went back, and the writes re-queued per CRM."""

    event: int
    split: int
    kept: int
    absorbed: int
    moved: dict[str, int] = field(default_factory=dict)  # table -> rows given back
    requeued: dict[str, int] = field(default_factory=dict)  # crm -> writes due again as relinks


def undo_join(session: Session, event_id: int, *, crms: Sequence[str], by: str, now: datetime) -> Split:
    """Split what join `event_id` joined; raises `UndoRefused` with what to do instead."""
    one_at_a_time(session, "route")  # routing moves persons too: never at the same time
    event = linklog.get(session, event_id)
    if event is None:
        raise UndoRefused(f"no link event {event_id}; `crmhub links list PERSON` shows a customer's events")
    if event.action != Action.JOIN.value or event.kept_person_id is None or event.absorbed_person_id is None:
        raise UndoRefused(f"link event {event_id} is a {event.action}: only a join can be undone")
    split = linklog.undone_by(session, event_id)
    if split is not None:
        raise UndoRefused(f"link event {event_id} was undone already by event {split.id} "
                          f"({split.actor}, {split.at:%Y-%m-%d %H:%M})")
    later = linklog.later_joins(session, event)
    if later:
        raise UndoRefused(f"link event {event_id} cannot be undone yet: later join event {later[0].id} changed "
                          f"person {event.kept_person_id} since; undo event {later[0].id} first "
                          f"(`crmhub links undo {later[0].id}`)")
    keep, gone = event.kept_person_id, event.absorbed_person_id
    done = Split(event_id, linklog.record(session, Action.SPLIT, evidence=Evidence.ADMIN, actor=by, now=now,
                                          kept=keep, absorbed=gone, concerning=event.concerning, undoes=event_id),
                 keep, gone)
    for name in ("identities", "crm_links"):
        table = linklog.MOVED_TABLES[name]
        where = (table.id.in_(linklog.moved_rows(session, event_id, name)), table.person_id == keep)
        done.moved[name] = _give_back(session, done.split, name, table, where, gone)
    done.moved["ledger"] = _give_back(session, done.split, "ledger", LedgerRow, (
        LedgerRow.person_id == keep,
        LedgerRow.id.in_(linklog.moved_rows(session, event_id, "ledger")) | _customer_of(gone)), gone)
    session.execute(update(PersonRow).where(PersonRow.id == gone).values(merged_into=None)
                    .execution_options(synchronize_session=False))
    # A claim joined it (unchecked or confirmed): rejected for good, if it was confirmed.
    if event.evidence in linklog.CLAIM_EVIDENCE:
        _reject_suggestion(session, event.concerning, by=by, event_id=event_id, now=now)
    relinker = IdentityGraph(session, list(crms), IdentityPolicy(), now)
    for crm in crms:
        done.requeued[crm] = _requeue(session, crm, keep, gone, now=now)
        _close_conflict(session, crm, keep, event_id, now=now)
        relinker.relink_many([keep, gone], crm)  # flags a person left with several records of one CRM
    session.expire_all()
    log.info("join undone", link_event=event_id, split=done.split, person=keep, returned_to=gone,
             requeued=sum(done.requeued.values()))
    return done


def _give_back(session: Session, split: int, name: str, table: type, where: tuple[object, ...], gone: int) -> int:
    """Log the rows matching `where` as moved by `split`, then give them to `gone`; one statement each."""
    linklog.note_moved(session, split, name, table.id, *where)  # type: ignore[attr-defined]  # all have id
    result = session.execute(update(table).where(*where).values(person_id=gone)
                             .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]  # an UPDATE's CursorResult


def _customer_of(person: int) -> object:
    """Ledger rows whose customer (the sender of an inbound item, the recipient of an outbound one) `person` holds."""
    def held(kind: object, value: object) -> object:
        return exists().where(IdentityRow.person_id == person, IdentityRow.kind == kind, IdentityRow.value == value)
    return ((LedgerRow.direction == Direction.INBOUND.value) & held(LedgerRow.sender_kind, LedgerRow.sender_value)
            | (LedgerRow.direction == Direction.OUTBOUND.value)
            & held(LedgerRow.recipient_kind, LedgerRow.recipient_value))


def _requeue(session: Session, crm: str, keep: int, gone: int, *, now: datetime) -> int:
    """Delivered writes of both persons now on the other's record in `crm`: due again as relinks, detaching it.

    A write of a person with no record in `crm` yet goes to the one delivery
    finds or creates for them. An agent's reply stays where the agent wrote it.
    """
    links = graph.links_of_many(session, [keep, gone], crm)
    records = {person: {link.record_id for link in links.get(person, [])} for person in (keep, gone)}
    primary = {person: found[0].record_id for person, found in links.items()}
    rows = session.execute(
        select(OutboxRow.id, LedgerRow.person_id, OutboxRow.contact_ref, OutboxRow.result_ref)
        .join(LedgerRow, LedgerRow.id == OutboxRow.interaction_id)
        .where(among(LedgerRow.person_id, [keep, gone]), OutboxRow.crm == crm,
               OutboxRow.status == OutboxStatus.DONE.value))
    moves = []
    for row_id, person, contact_ref, result_ref in rows:
        other = gone if person == keep else keep
        if outbox.settled_by_reply(result_ref) or contact_ref == primary.get(person):
            continue
        if person == keep and contact_ref not in records[gone]:
            continue  # keep's own history on one of its own records: not this undo's business
        moves.append({"oid": row_id, "wrong": contact_ref if contact_ref in records[other] else None})
    if moves:
        session.connection().execute(
            update(OutboxRow).where(OutboxRow.id == bindparam("oid"))
            .values(status=OutboxStatus.PENDING.value, relink=True, detach_from=bindparam("wrong"), attempts=0,
                    claims=0, next_attempt_at=now, done_at=None, priority=int(WritePriority.BACKFILL)), moves)
    return len(moves)


def _close_conflict(session: Session, crm: str, keep: int, event_id: int, *, now: datetime) -> None:
    """The conflict the join made (two records of one customer) closes once the kept person has one left."""
    conflict = conflicts.of(session, crm, keep)
    if conflict is not None and conflict.resolved_at is None and len(graph.links_of(session, keep, crm)) <= 1:
        conflict.resolved_at, conflict.resolution = now, f"split: link event {event_id} undone"


def _reject_suggestion(session: Session, concerning: str, *, by: str, event_id: int, now: datetime) -> None:
    """A confirmed claim whose join is undone was wrong: it is rejected, so it is never suggested again."""
    kind, _, value = concerning.partition(" in ")[0].partition(":")
    if not value:
        return
    session.execute(update(LinkSuggestionRow)
                    .where(and_(LinkSuggestionRow.claimed_kind == kind, LinkSuggestionRow.claimed_value == value,
                                LinkSuggestionRow.status == LinkStatus.CONFIRMED.value))
                    .values(status=LinkStatus.REJECTED.value, decided_by=f"{by} (undo of link event {event_id})"[:255],
                            decided_at=now)
                    .execution_options(synchronize_session=False))


__all__ = ["Split", "UndoRefused", "undo_join"]
