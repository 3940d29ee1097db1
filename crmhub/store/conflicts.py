"""Conflicts: several records of one CRM that turned out to be one person.

crmhub never merges CRM records: it flags them here, keeps writing to the
primary one (the oldest, or the one an admin picked), and lists them in
`crmhub conflicts` until an admin resolves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmhub.store.schema import ConflictRow, CrmLinkRow


def flag(session: Session, crm: str, person_id: int, record_ids: Sequence[str], reason: str,
         *, now: datetime) -> ConflictRow:
    """Record (or update) the conflict of `person_id` in `crm`, primary first; a resolved one reopens on a new record."""
    row = of(session, crm, person_id)
    ids = list(record_ids)
    if row is None:
        row = ConflictRow(crm=crm, person_id=person_id, record_ids=ids, primary_id=ids[0], reason=reason,
                          detected_at=now)
        session.add(row)
    elif set(row.record_ids) != set(ids):  # a further record: the admin must look again
        row.record_ids, row.primary_id, row.reason = ids, ids[0], reason
        row.detected_at, row.resolved_at, row.resolution = now, None, None
    else:
        row.record_ids, row.primary_id = ids, ids[0]
    session.flush()
    return row


def of(session: Session, crm: str, person_id: int) -> ConflictRow | None:
    """The conflict of `person_id` in `crm`, open or resolved."""
    return session.scalar(select(ConflictRow).where(ConflictRow.crm == crm, ConflictRow.person_id == person_id))


def listing(session: Session, *, include_resolved: bool = False) -> list[ConflictRow]:
    query = select(ConflictRow).order_by(ConflictRow.id)
    if not include_resolved:
        query = query.where(ConflictRow.resolved_at.is_(None))
    return list(session.scalars(query))


def get(session: Session, conflict_id: int) -> ConflictRow | None:
    return session.get(ConflictRow, conflict_id)


def prefer(session: Session, conflict: ConflictRow, record_id: str, *, now: datetime) -> None:
    """An admin's decision: crmhub writes to `record_id` from now on; the conflict is resolved."""
    links = session.scalars(select(CrmLinkRow).where(CrmLinkRow.crm == conflict.crm,
                                                     CrmLinkRow.person_id == conflict.person_id))
    for link in links:
        link.preferred = link.record_id == record_id
    conflict.primary_id, conflict.resolved_at, conflict.resolution = record_id, now, f"keep {record_id}"
    session.flush()
