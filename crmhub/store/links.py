"""Link suggestions: identities customers claimed in messages, waiting for an agent's or admin's decision.

A claim is stored once per (sender identity, claimed identity) and never
joins anyone by itself; `crmhub links confirm` turns it into a join,
`crmhub links reject` keeps it from being suggested again. The note telling
agents about it is recorded per CRM in `link_notes`, so it is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from crmhub.model import Identity, IdentityKind, OutboxStatus
from crmhub.store.ledger import upsert
from crmhub.store.schema import LedgerRow, LinkNoteRow, LinkSuggestionRow, OutboxRow, ThreadRow
from crmhub.store.sets import among


class LinkStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


def suggest(session: Session, *, interaction_id: int, sender: Identity, sender_person: int, claimed: Identity,
            holder: int | None, now: datetime) -> LinkSuggestionRow:
    """Record that `sender` claimed `claimed`; the same claim again (in any status) leaves the first as it is."""
    return upsert(session, LinkSuggestionRow, {
        "interaction_id": interaction_id, "sender_kind": sender.kind.value, "sender_value": sender.value,
        "sender_display": sender.display[:255], "sender_person_id": sender_person,
        "claimed_kind": claimed.kind.value, "claimed_value": claimed.value, "claimed_display": claimed.display[:255],
        "holder_person_id": holder, "status": LinkStatus.PENDING.value, "created_at": now,
    }, ("sender_kind", "sender_value", "claimed_kind", "claimed_value"), update=False)


def get(session: Session, suggestion_id: int) -> LinkSuggestionRow | None:
    return session.get(LinkSuggestionRow, suggestion_id)


def get_many(session: Session, suggestion_ids: list[int]) -> dict[int, LinkSuggestionRow]:
    """id -> suggestion of those of `suggestion_ids` that exist (one query)."""
    if not suggestion_ids:
        return {}
    query = select(LinkSuggestionRow).where(among(LinkSuggestionRow.id, suggestion_ids))
    return {row.id: row for row in session.scalars(query)}


def listing(session: Session, status: LinkStatus | None = None) -> list[LinkSuggestionRow]:
    query = select(LinkSuggestionRow).order_by(LinkSuggestionRow.id)
    if status is not None:
        query = query.where(LinkSuggestionRow.status == status.value)
    return list(session.scalars(query))


def decide(session: Session, row: LinkSuggestionRow, status: LinkStatus, *, by: str, now: datetime) -> None:
    row.status, row.decided_by, row.decided_at = status.value, by[:255], now
    session.flush()


def sender_of(row: LinkSuggestionRow) -> Identity:
    return Identity(IdentityKind(row.sender_kind), row.sender_value, row.sender_display)


def claimed_of(row: LinkSuggestionRow) -> Identity:
    return Identity(IdentityKind(row.claimed_kind), row.claimed_value, row.claimed_display)


@dataclass(frozen=True)
class NoteDue:
    """A pending suggestion whose message is on a case of the CRM, and no note about it there yet."""

    suggestion: LinkSuggestionRow
    case_id: str
    interaction_key: str


def notes_due(session: Session, crm: str, limit: int) -> list[NoteDue]:
    """Pending suggestions to note in `crm`: their message delivered there, onto a case, not noted yet."""
    noted = exists().where(LinkNoteRow.suggestion_id == LinkSuggestionRow.id, LinkNoteRow.crm == crm)
    query = (select(LinkSuggestionRow, ThreadRow.record_id, LedgerRow.channel, LedgerRow.external_id)
             .join(LedgerRow, LedgerRow.id == LinkSuggestionRow.interaction_id)
             .join(OutboxRow, (OutboxRow.interaction_id == LinkSuggestionRow.interaction_id) & (OutboxRow.crm == crm))
             .join(ThreadRow, (ThreadRow.crm == crm) & (ThreadRow.conversation_key == LedgerRow.conversation_key))
             .where(LinkSuggestionRow.status == LinkStatus.PENDING.value,
                    OutboxRow.status == OutboxStatus.DONE.value, ThreadRow.record_id.is_not(None), ~noted)
             .order_by(LinkSuggestionRow.id).limit(limit))
    return [NoteDue(row, str(case_id), f"{channel}:{external_id}")
            for row, case_id, channel, external_id in session.execute(query)]


def mark_noted(session: Session, suggestion_id: int, crm: str, case_id: str, outcome: str, *, now: datetime) -> None:
    upsert(session, LinkNoteRow, {"suggestion_id": suggestion_id, "crm": crm, "case_id": case_id[:64],
                                  "outcome": outcome, "noted_at": now}, ("suggestion_id", "crm"), update=False)


def noted_in(session: Session, suggestion_id: int) -> list[str]:
    """The CRMs whose case holds the note about this suggestion."""
    return list(session.scalars(select(LinkNoteRow.crm).where(LinkNoteRow.suggestion_id == suggestion_id,
                                                              LinkNoteRow.outcome == "written")
                                .order_by(LinkNoteRow.crm)))


def noted_cases(session: Session, crm: str, suggestion_ids: list[int]) -> dict[int, str]:
    """The case of `crm` each suggestion's note was written on (one query)."""
    if not suggestion_ids:
        return {}
    rows = session.execute(select(LinkNoteRow.suggestion_id, LinkNoteRow.case_id)
                           .where(LinkNoteRow.crm == crm, LinkNoteRow.outcome == "written",
                                  among(LinkNoteRow.suggestion_id, suggestion_ids)))
    return {suggestion_id: case_id for suggestion_id, case_id in rows}
