"""The link log: an append-only record of every join and split of persons, and of the rows each moved.

A person is what the graph's `person_id` columns say now (read directly on
the hot path); the log says how it came to be: which fact joined whom, on
what evidence, by whom, and exactly which identities, CRM links and ledger
rows moved (`link_event_rows`, one INSERT ... SELECT per table). An undo
reads those rows back; nothing here is ever updated or deleted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, literal, or_, select
from sqlalchemy.orm import Session

from crmhub.store.schema import CrmLinkRow, IdentityRow, LedgerRow, LinkEventMoveRow, LinkEventRow
from crmhub.store.sets import among


class Action(StrEnum):
    JOIN = "join"
    SPLIT = "split"
    LINK_RECORD = "link_record"
    UNLINK_RECORD = "unlink_record"


class Evidence(StrEnum):
    """Why a link was made or undone (docs/identity.md, "The link log")."""

    CHANNEL = "channel"  # an identity the channel verified: the X account's own handle
    CRM_FIELD = "crm_field"  # a CRM record holding both identities
    STATEMENT = "statement"  # a claim in a message, confirmed (or `statements: join`)
    AGENT = "agent"  # an agent's decision: a claim confirmed in the CRM or the agents' panel
    ADMIN = "admin"  # an admin's command (`crmhub links confirm|undo`, `conflicts resolve`)
    CODE = "code"  # a claim confirmed by a one-time code answered from the claimed channel
    CRM_MERGE = "crm_merge"  # records merged in the CRM
    CRM_DELETE = "crm_delete"  # a record deleted in the CRM


# Evidence of a claim someone stated (joined unchecked, or confirmed): such a join is undone as a wrong claim.
CLAIM_EVIDENCE = frozenset({Evidence.STATEMENT, Evidence.ADMIN, Evidence.AGENT, Evidence.CODE})
DAEMON = "crmhub daemon"
MOVED_TABLES: Mapping[str, Any] = {"identities": IdentityRow, "crm_links": CrmLinkRow, "ledger": LedgerRow}


def record(session: Session, action: Action, *, evidence: Evidence | str, actor: str, now: datetime,
           kept: int | None = None, absorbed: int | None = None, concerning: str = "",
           undoes: int | None = None) -> int:
    """Append one event; returns its id."""
    return int(session.execute(insert(LinkEventRow).returning(LinkEventRow.id), {
        "at": now, "action": action.value, "kept_person_id": kept, "absorbed_person_id": absorbed,
        "concerning": concerning[:300], "evidence": str(Evidence(evidence)), "actor": actor[:255],
        "undoes": undoes}).scalar_one())


def record_join(session: Session, keep: int, gone: int, *, evidence: Evidence | str, actor: str,
                concerning: str, now: datetime) -> int:
    """A `join` event and the rows of `gone` it is about to move onto `keep` (call before moving them)."""
    event = record(session, Action.JOIN, evidence=evidence, actor=actor, now=now, kept=keep, absorbed=gone,
                   concerning=concerning)
    for name, table in MOVED_TABLES.items():
        note_moved(session, event, name, table.id, table.person_id == gone)
    return event


def note_moved(session: Session, event: int, table_name: str, row_id: Any, *where: Any) -> None:
    """Record, by one INSERT ... SELECT, the rows of `table_name` matching `where` as moved by `event`."""
    rows = select(literal(event), literal(table_name), row_id).where(*where)
    session.execute(insert(LinkEventMoveRow).from_select(["event_id", "table", "row_id"], rows))


def moved_rows(session: Session, event: int, table_name: str) -> Any:
    """A subquery of the ids of `table_name` rows `event` moved."""
    return select(LinkEventMoveRow.row_id).where(LinkEventMoveRow.event_id == event,
                                                 LinkEventMoveRow.table == table_name)


def moved_counts(session: Session, event: int) -> dict[str, int]:
    """How many rows of each table `event` moved."""
    query = (select(LinkEventMoveRow.table, func.count()).where(LinkEventMoveRow.event_id == event)
             .group_by(LinkEventMoveRow.table))
    return {name: int(count) for name, count in session.execute(query)}


def get(session: Session, event: int) -> LinkEventRow | None:
    return session.get(LinkEventRow, event)


def events_of(session: Session, persons: Collection[int]) -> list[LinkEventRow]:
    """Every event that names one of `persons`, oldest first."""
    if not persons:
        return []
    wanted = sorted(persons)
    return list(session.scalars(select(LinkEventRow)
                                .where(or_(among(LinkEventRow.kept_person_id, wanted),
                                           among(LinkEventRow.absorbed_person_id, wanted)))
                                .order_by(LinkEventRow.id)))


def undone_by(session: Session, event: int) -> LinkEventRow | None:
    """The split that undid `event`, if one did."""
    return session.scalar(select(LinkEventRow).where(LinkEventRow.undoes == event).limit(1))


def later_joins(session: Session, event: LinkEventRow) -> list[LinkEventRow]:
    """Joins after `event` that involve one of its persons and stand (not undone), newest first."""
    persons = [p for p in (event.kept_person_id, event.absorbed_person_id) if p is not None]
    undone = select(LinkEventRow.undoes).where(LinkEventRow.undoes.is_not(None))
    return list(session.scalars(select(LinkEventRow).where(
        LinkEventRow.id > event.id, LinkEventRow.action == Action.JOIN.value,
        or_(among(LinkEventRow.kept_person_id, persons), among(LinkEventRow.absorbed_person_id, persons)),
        LinkEventRow.id.not_in(undone)).order_by(LinkEventRow.id.desc())))
