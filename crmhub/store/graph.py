"""The identity graph (persons and their identities), CRM links and the contact mirror.

The mirror is a local, incrementally refreshed copy of each CRM's contacts,
indexed by normalised identity, so matching a message to a contact costs no
API call however messy the CRM's phone formats are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from crmhub.model import Identity, IdentityKind, MirrorRecord
from crmhub.store.schema import CrmLinkRow, IdentityRow, MirrorIdentityRow, MirrorRow, PersonRow


def person_for(session: Session, identity: Identity, *, now: datetime) -> int:
    """The person holding `identity`, created on first sight."""
    row = session.scalar(select(IdentityRow).where(IdentityRow.kind == identity.kind.value,
                                                   IdentityRow.value == identity.value))
    if row is not None:
        if identity.display and not row.display:
            row.display = identity.display
        return row.person_id
    person = PersonRow(created_at=now)
    session.add(person)
    session.flush()
    session.add(IdentityRow(kind=identity.kind.value, value=identity.value, display=identity.display,
                            person_id=person.id))
    session.flush()
    return person.id


def identities_of(session: Session, person_id: int) -> list[Identity]:
    rows = session.scalars(select(IdentityRow).where(IdentityRow.person_id == person_id).order_by(IdentityRow.id))
    return [Identity(IdentityKind(r.kind), r.value, r.display) for r in rows]


# ---- CRM links ---------------------------------------------------------------
def link_of(session: Session, person_id: int, crm: str) -> CrmLinkRow | None:
    """The person's record in `crm` (the oldest link, if ever there are several)."""
    query = (select(CrmLinkRow).where(CrmLinkRow.person_id == person_id, CrmLinkRow.crm == crm)
             .order_by(CrmLinkRow.id).limit(1))
    return session.scalar(query)


def add_link(session: Session, person_id: int, crm: str, object_type: str, record_id: str,
             *, now: datetime) -> CrmLinkRow:
    existing = session.scalar(select(CrmLinkRow).where(CrmLinkRow.crm == crm, CrmLinkRow.record_id == record_id))
    if existing is not None:
        return existing
    row = CrmLinkRow(person_id=person_id, crm=crm, object_type=object_type, record_id=record_id, created_at=now)
    session.add(row)
    session.flush()
    return row


# ---- contact mirror ----------------------------------------------------------
def upsert_mirror(session: Session, records: Iterable[MirrorRecord]) -> int:
    """Write refreshed contacts into the mirror (deleted ones leave it)."""
    count = 0
    for record in records:
        row = session.scalar(select(MirrorRow).where(MirrorRow.crm == record.crm,
                                                     MirrorRow.record_id == record.record_id))
        if record.deleted:
            if row is not None:
                session.delete(row)
            continue
        if row is None:
            row = MirrorRow(crm=record.crm, object_type=record.object_type, record_id=record.record_id,
                            fields=dict(record.fields), created_at=record.created_at,
                            modified_at=record.modified_at)
            session.add(row)
            session.flush()
        else:
            row.fields, row.modified_at = dict(record.fields), record.modified_at
            session.execute(delete(MirrorIdentityRow).where(MirrorIdentityRow.mirror_id == row.id))
        for identity in set(record.identities):
            session.add(MirrorIdentityRow(mirror_id=row.id, crm=record.crm, kind=identity.kind.value,
                                          value=identity.value))
        count += 1
    session.flush()
    return count


def mirror_matches(session: Session, crm: str, identities: Sequence[Identity]) -> list[MirrorRow]:
    """Mirrored records of `crm` holding any of `identities`, oldest first."""
    if not identities:
        return []
    wanted = sorted({(i.kind.value, i.value) for i in identities})
    query = (select(MirrorRow).join(MirrorIdentityRow, MirrorIdentityRow.mirror_id == MirrorRow.id)
             .where(MirrorIdentityRow.crm == crm,
                    tuple_(MirrorIdentityRow.kind, MirrorIdentityRow.value).in_(wanted))
             .order_by(MirrorRow.created_at, MirrorRow.id))
    return list({row.id: row for row in session.scalars(query)}.values())  # a record may hold several


def mirror_record(session: Session, crm: str, record_id: str) -> MirrorRow | None:
    return session.scalar(select(MirrorRow).where(MirrorRow.crm == crm, MirrorRow.record_id == record_id))
