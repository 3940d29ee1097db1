"""The identity graph (persons and their identities), CRM links and the contact mirror.

The mirror is a local, incrementally refreshed copy of each CRM's contacts,
indexed by normalised identity, so matching a message to a contact costs no
API call however messy the CRM's phone formats are.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Integer, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from crmhub.model import Identity, IdentityKind, MirrorRecord, identity_person_key
from crmhub.store import linklog
from crmhub.store.ledger import insert_many, insert_returning, upsert
from crmhub.store.schema import (ConflictRow, CrmLinkRow, IdentityRow, LedgerRow, MirrorIdentityRow, MirrorRow,
                                 PersonRow)
from crmhub.store.sets import among, per_row


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


def follow_handle(session: Session, account: Identity, at: datetime) -> bool:
    """Whether `account`'s handle (an X identity's display) is its current one, renaming it if it is newer.

    X keeps an account's id when it is renamed: the identity stays, its
    display becomes the handle of the newest item seen (`display_at`), and
    the old handle stops being one of the person's identities (anyone may
    take it now). An older item showing the old handle changes nothing and
    is not current.
    """
    row = session.scalar(select(IdentityRow).where(IdentityRow.kind == account.kind.value,
                                                   IdentityRow.value == account.value))
    if row is None or not account.display or row.display == account.display:
        return True
    if row.display_at is not None and at < row.display_at:
        return False
    old, row.display, row.display_at = row.display, account.display, at
    if old:
        session.execute(delete(IdentityRow).where(IdentityRow.kind == IdentityKind.X_HANDLE.value,
                                                  IdentityRow.value == old, IdentityRow.person_id == row.person_id))
    session.flush()
    return True


def renamed_handles(session: Session, crm: str, records: Mapping[int, str]) -> dict[int, str]:
    """Persons (with their record in `crm`) whose record holds an X handle that is not their account's current one.

    After a rename (`follow_handle`) the CRM field still shows the old
    handle: person -> the current handle to write there. Only a record that
    holds a handle, of a person with one X account, is changed. Two queries.
    """
    if not records:
        return {}
    current: dict[int, list[str]] = {}
    for person, display in session.execute(select(IdentityRow.person_id, IdentityRow.display).where(
            IdentityRow.kind == IdentityKind.X.value, among(IdentityRow.person_id, sorted(records)))):
        current.setdefault(person, []).append(display)
    ids = {records[p] for p, shown in current.items() if len(shown) == 1 and shown[0]}
    if not ids:
        return {}
    held: dict[str, set[str]] = {}
    for record_id, value in session.execute(
            select(MirrorRow.record_id, MirrorIdentityRow.value).join(MirrorIdentityRow,
                                                                      MirrorIdentityRow.mirror_id == MirrorRow.id)
            .where(MirrorRow.crm == crm, among(MirrorRow.record_id, sorted(ids)),
                   MirrorIdentityRow.kind == IdentityKind.X_HANDLE.value)):
        held.setdefault(record_id, set()).add(value)
    return {person: shown[0] for person, shown in current.items()
            if len(shown) == 1 and held.get(records[person]) and shown[0] not in held[records[person]]}


def new_persons(session: Session, identities: Sequence[Identity], *, now: datetime) -> dict[tuple[str, str], int]:
    """One new person for each of `identities`, which nobody holds yet; three statements for the lot.

    Returns (kind, value) -> the new person. The caller holds the routing
    turn (`crmhub.store.locks`), so no other daemon adds these identities meanwhile.
    """
    unique = list({(i.kind.value, i.value): i for i in identities}.values())
    if not unique:
        return {}
    # The new persons are alike, so which id goes with which identity does not matter: no ordered
    # RETURNING, which SQLite could only give one row per statement.
    ids = session.scalars(*_new_persons(session, now, len(unique))).all()
    add_identities(session, list(zip(ids, unique, strict=True)))
    return {(i.kind.value, i.value): person for person, i in zip(ids, unique, strict=True)}


_PERSONS = cast(Table, PersonRow.__table__)
# `new_persons` on PostgreSQL: one row per `generate_series` value, two parameters whatever the count.
_NEW_PERSONS = (insert(_PERSONS).from_select(["created_at"], select(bindparam("at", type_=_PERSONS.c.created_at.type))
                                             .select_from(func.generate_series(1, bindparam("count", type_=Integer))))
                .returning(_PERSONS.c.id))


def _new_persons(session: Session, now: datetime, count: int) -> tuple[Any, Any]:
    """The INSERT of `count` persons created `now`, RETURNING their ids, and its parameters: on PostgreSQL
    `_NEW_PERSONS`, where SQLAlchemy's multi-row VALUES (its RETURNING for many rows) is a text psycopg
    parses anew for each batch size; elsewhere an executemany."""
    if session.get_bind().dialect.name == "postgresql":
        return _NEW_PERSONS, {"at": now, "count": count}
    return insert(_PERSONS).returning(_PERSONS.c.id), [{"created_at": now} for _ in range(count)]


def add_identities(session: Session, identities: Sequence[tuple[int, Identity]]) -> None:
    """`add_identity` for many (person, identity) at once: identities nobody holds yet."""
    insert_many(session, IdentityRow.__table__, [
        {"kind": i.kind.value, "value": i.value, "display": i.display or "", "person_id": person}
        for person, i in identities])


def holder_of(session: Session, identity: Identity) -> int | None:
    """The person holding `identity`, if any."""
    return session.scalar(select(IdentityRow.person_id).where(IdentityRow.kind == identity.kind.value,
                                                              IdentityRow.value == identity.value))


def add_identity(session: Session, person_id: int, identity: Identity) -> None:
    """Give an identity nobody holds yet to `person_id`."""
    session.add(IdentityRow(kind=identity.kind.value, value=identity.value, display=identity.display,
                            person_id=person_id))
    session.flush()


def count_of_kind(session: Session, person_id: int, kind: IdentityKind) -> int:
    return session.scalar(select(func.count()).select_from(IdentityRow)
                          .where(IdentityRow.person_id == person_id, IdentityRow.kind == kind.value)) or 0


def merge_persons(session: Session, keep: int, gone: int, *, evidence: str, actor: str, now: datetime,
                  concerning: str = "") -> int:
    """Move everything of person `gone` onto `keep`: identities, CRM links, interactions, conflicts.

    The join is logged first (`linklog.record_join`: the event with its
    evidence and actor, and the rows it moves), so it can be undone. Returns the event's id.
    """
    event = linklog.record_join(session, keep, gone, evidence=evidence, actor=actor, concerning=concerning, now=now)
    for table in (IdentityRow, CrmLinkRow, LedgerRow):
        session.execute(update(table).where(table.person_id == gone).values(person_id=keep))
    for conflict in session.scalars(select(ConflictRow).where(ConflictRow.person_id == gone)):
        session.delete(conflict)  # re-detected for the joined person by the caller
    gone_row = session.get(PersonRow, gone)
    if gone_row is not None:
        gone_row.merged_into = keep
    session.flush()
    return event


def identities_of(session: Session, person_id: int) -> list[Identity]:
    return identities_of_many(session, [person_id]).get(person_id, [])


# The batch look-ups of matching (`sync.contacts`), each run several times a cycle: built once, their values
# bound at execution, so no statement is built and its cache key computed anew each time (issue 13).
_IDENTITIES_OF = (select(IdentityRow.person_id, IdentityRow.kind, IdentityRow.value, IdentityRow.display)
                  .where(among(IdentityRow.person_id, bindparam("persons"))).order_by(IdentityRow.id))
_LINKS_OF = (select(CrmLinkRow.person_id, CrmLinkRow.record_id, CrmLinkRow.object_type)
             .outerjoin(MirrorRow, (MirrorRow.crm == CrmLinkRow.crm) & (MirrorRow.record_id == CrmLinkRow.record_id))
             .where(CrmLinkRow.crm == bindparam("crm", type_=CrmLinkRow.crm.type),
                    among(CrmLinkRow.person_id, bindparam("persons")))
             .order_by(CrmLinkRow.person_id, CrmLinkRow.preferred.desc(),
                       func.coalesce(MirrorRow.created_at, CrmLinkRow.created_at), CrmLinkRow.id))
_LINKED_PERSONS = select(CrmLinkRow.record_id, CrmLinkRow.person_id).where(
    CrmLinkRow.crm == bindparam("crm", type_=CrmLinkRow.crm.type), among(CrmLinkRow.record_id, bindparam("records")))
_MIRROR_ENTRIES = (select(MirrorIdentityRow.kind, MirrorIdentityRow.value, MirrorRow.record_id, MirrorRow.object_type)
                   .join(MirrorRow, MirrorIdentityRow.mirror_id == MirrorRow.id)
                   .where(MirrorIdentityRow.crm == bindparam("crm", type_=MirrorIdentityRow.crm.type),
                          among(MirrorIdentityRow.kind, bindparam("kinds")),
                          among(MirrorIdentityRow.value, bindparam("values")))
                   .order_by(MirrorRow.created_at, MirrorRow.id))
_MIRROR_FIELDS = select(MirrorRow.record_id, MirrorRow.fields).where(
    MirrorRow.crm == bindparam("crm", type_=MirrorRow.crm.type), among(MirrorRow.record_id, bindparam("records")))


def identities_of_many(session: Session, person_ids: Collection[int]) -> dict[int, list[Identity]]:
    """`identities_of` for many persons in one query."""
    found: dict[int, list[Identity]] = {}
    if person_ids:
        for person, kind, value, display in session.execute(_IDENTITIES_OF, {"persons": sorted(person_ids)}):
            found.setdefault(person, []).append(Identity(IdentityKind(kind), value, display))
    return found


def contact_keys(session: Session, identities: Mapping[int, Sequence[Identity]]) -> dict[int, str]:
    """crmhub's key of the contact to create for each person (`persons.key`), fixed on first need.

    A person without one yet gets the key of the identity it was first seen
    with (`identity_person_key`, its first identity by id), stored at once so
    every later attempt creates under the same key whatever joins the person
    meanwhile. Two statements for the lot.
    """
    if not identities:
        return {}
    keys = {person: key for person, key in session.execute(
        select(PersonRow.id, PersonRow.key).where(among(PersonRow.id, sorted(identities))))}
    fixed = {person: identity_person_key(held[0]) for person, held in identities.items()
             if not keys.get(person) and held}
    if fixed:  # one UPDATE over arrays on PostgreSQL, not a pipelined one per person (`per_row`)
        table = PersonRow.__table__
        each = per_row(session, [{"person": p, "new_key": k} for p, k in fixed.items()],
                       {"person": table.c.id.type, "new_key": table.c.key.type}, key="person")
        each.execute(session, update(table).where(table.c.id == each.columns["person"])
                     .values(key=each.columns["new_key"]))
    return {person: key for person, key in {**keys, **fixed}.items() if key}


# ---- CRM links ---------------------------------------------------------------
def link_of(session: Session, person_id: int, crm: str) -> Any | None:
    """The person's record in `crm` that crmhub writes to: the primary of `links_of`."""
    links = links_of(session, person_id, crm)
    return links[0] if links else None


def links_of(session: Session, person_id: int, crm: str) -> list[Any]:
    """The person's records in `crm` (record_id, object_type), primary first: an admin's pick, else the oldest.

    "Oldest" is the CRM's own creation time where the mirror knows it, else when crmhub linked it.
    """
    return links_of_many(session, [person_id], crm).get(person_id, [])


def links_of_many(session: Session, person_ids: Collection[int], crm: str) -> dict[int, list[Any]]:
    """`links_of` for many persons in one query: person -> its links, primary first."""
    found: dict[int, list[Any]] = {}
    if person_ids:
        for row in session.execute(_LINKS_OF, {"crm": crm, "persons": sorted(person_ids)}):
            found.setdefault(row.person_id, []).append(row)
    return found


def linked_persons(session: Session, crm: str, record_ids: Collection[str]) -> dict[str, int]:
    """Which of `crm`'s records are linked to a person already, and to whom: record id -> person."""
    if not record_ids:
        return {}
    return {record_id: person for record_id, person in session.execute(
        _LINKED_PERSONS, {"crm": crm, "records": sorted(set(record_ids))})}


def add_link(session: Session, person_id: int, crm: str, object_type: str, record_id: str,
             *, now: datetime) -> CrmLinkRow:
    """Link a CRM record to the person; a record linked already keeps its link (to whichever person)."""
    return upsert(session, CrmLinkRow, {"person_id": person_id, "crm": crm, "object_type": object_type,
                                        "record_id": record_id, "created_at": now}, ("crm", "record_id"),
                  update=False)


def add_links(session: Session, crm: str, links: Sequence[tuple[int, str, str]], *, now: datetime) -> set[int]:
    """`add_link` for several (person, object type, record id) at once; returns the persons given a new link.

    A record linked already keeps its link, to whichever person; so does a
    record given twice here (the first person keeps it).
    """
    rows: dict[str, dict[str, Any]] = {}  # in the order given: link ids break ties of age (`links_of`)
    for person, object_type, record in links:
        rows.setdefault(record, {"person_id": person, "crm": crm, "object_type": object_type, "record_id": record,
                                 "created_at": now})
    if not rows:
        return set()
    table = CrmLinkRow.__table__
    return set(insert_returning(session, table, list(rows.values()), [table.c.person_id], ["crm", "record_id"])
               .scalars())


# ---- contact mirror ----------------------------------------------------------
def upsert_mirror(session: Session, records: Iterable[MirrorRecord]) -> int:
    """Write a page of refreshed contacts into the mirror (deleted ones leave it); returns how many were written.

    A few statements per page, however many records: existing rows are read
    in one query, new ones inserted, changed ones updated and their identity
    index rewritten in bulk. A record twice in the page counts as its last.
    """
    latest = {(record.crm, record.record_id): record for record in records}
    if not latest:
        return 0
    existing: dict[tuple[str, str], int] = {}
    for crm in sorted({crm for crm, _ in latest}):
        ids = sorted(record_id for c, record_id in latest if c == crm)
        query = select(MirrorRow.record_id, MirrorRow.id).where(MirrorRow.crm == crm, among(MirrorRow.record_id, ids))
        existing.update({(crm, record_id): row_id for record_id, row_id in session.execute(query)})
    gone = [existing[key] for key, record in latest.items() if record.deleted and key in existing]
    changed = {key: existing[key] for key, record in latest.items() if not record.deleted and key in existing}
    if gone or changed:
        session.execute(delete(MirrorIdentityRow).where(MirrorIdentityRow.mirror_id.in_([*gone, *changed.values()])))
    if gone:
        session.execute(delete(MirrorRow).where(MirrorRow.id.in_(gone)))
    if changed:
        table = MirrorRow.__table__
        each = per_row(session, [{"row_id": row_id, "new_fields": dict(latest[key].fields),
                                  "new_modified_at": latest[key].modified_at} for key, row_id in changed.items()],
                       {"row_id": table.c.id.type, "new_fields": table.c.fields.type,
                        "new_modified_at": table.c.modified_at.type}, key="row_id")
        each.execute(session, update(table).where(table.c.id == each.columns["row_id"])
                     .values(fields=each.columns["new_fields"], modified_at=each.columns["new_modified_at"]))
    new = [record for key, record in latest.items() if not record.deleted and key not in existing]
    ids = dict(changed)
    if new:
        table = MirrorRow.__table__
        inserted = insert_returning(session, table, [
            {"crm": r.crm, "object_type": r.object_type, "record_id": r.record_id, "fields": dict(r.fields),
             "created_at": r.created_at, "modified_at": r.modified_at} for r in new],
            [table.c.crm, table.c.record_id, table.c.id])
        ids.update({(crm, record_id): row_id for crm, record_id, row_id in inserted})
    entries = [{"mirror_id": row_id, "crm": crm, "kind": kind, "value": value}
               for (crm, record_id), row_id in ids.items()
               for kind, value in dict.fromkeys((i.kind.value, i.value) for i in latest[(crm, record_id)].identities)]
    insert_many(session, MirrorIdentityRow.__table__, entries)
    session.expire_all()  # rows loaded before (ORM objects) must not shadow what was just written
    return len(ids)


def mirror_matches(session: Session, crm: str, identities: Sequence[Identity]) -> list[MirrorRow]:
    """Mirrored records of `crm` holding any of `identities`, oldest first."""
    return _mirror_holding(session, [crm], identities, order=(MirrorRow.created_at, MirrorRow.id))


def mirror_entries(session: Session, crm: str, identities: Collection[Identity]) -> list[Any]:
    """`mirror_matches` for a batch: (kind, value, record_id, object_type) of each record of `crm` holding one of
    `identities`, the oldest record first; one query."""
    wanted = {(i.kind.value, i.value) for i in identities}
    if not wanted:
        return []
    kinds, values = _lookup_lists(wanted)  # `_identity_lookup`'s index terms, the lists bound at execution
    rows = session.execute(_MIRROR_ENTRIES, {"crm": crm, "kinds": kinds, "values": values})
    return [row for row in rows if (row.kind, row.value) in wanted]


def mirror_fields(session: Session, crm: str, record_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """The mirrored fields of these records of `crm`, by record id."""
    if not record_ids:
        return {}
    return {record_id: dict(fields or {}) for record_id, fields in session.execute(
        _MIRROR_FIELDS, {"crm": crm, "records": sorted(record_ids)})}


def mirror_holding(session: Session, crms: Sequence[str], identities: Sequence[Identity]) -> list[MirrorRow]:
    """Mirrored records of any of `crms` holding any of `identities`."""
    return _mirror_holding(session, crms, identities, order=(MirrorRow.id,))


def _mirror_holding(session: Session, crms: Sequence[str], identities: Sequence[Identity],
                    order: Sequence[Any]) -> list[MirrorRow]:
    """Records of `crms` holding any of `identities`, in `order`, each once (`_identity_lookup`)."""
    wanted = {(i.kind.value, i.value) for i in identities}
    if not wanted or not crms:
        return []
    query = (select(MirrorRow, MirrorIdentityRow.kind, MirrorIdentityRow.value)
             .join(MirrorIdentityRow, MirrorIdentityRow.mirror_id == MirrorRow.id)
             .where(*_identity_lookup(crms, wanted))
             .order_by(*order))
    found = {row.id: row for row, kind, value in session.execute(query) if (kind, value) in wanted}
    return list(found.values())  # a record may hold several


def mirror_records_holding(session: Session, crms: Collection[str],
                           identities: Collection[Identity]) -> list[tuple[int, str, str]]:
    """(mirror row id, kind, value) of each record of `crms` holding one of `identities`; one query."""
    wanted = {(i.kind.value, i.value) for i in identities}
    if not wanted or not crms:
        return []
    query = select(MirrorIdentityRow.mirror_id, MirrorIdentityRow.kind, MirrorIdentityRow.value).where(
        *_identity_lookup(crms, wanted))
    return [(row_id, kind, value) for row_id, kind, value in session.execute(query) if (kind, value) in wanted]


def mirror_identities_many(session: Session, mirror_ids: Collection[int]) -> dict[int, list[Identity]]:
    """`mirror_identities` of many records in one query, by mirror row id."""
    found: dict[int, list[Identity]] = {}
    if mirror_ids:
        query = (select(MirrorIdentityRow.mirror_id, MirrorIdentityRow.kind, MirrorIdentityRow.value)
                 .where(among(MirrorIdentityRow.mirror_id, sorted(mirror_ids))).order_by(MirrorIdentityRow.id))
        for row_id, kind, value in session.execute(query):
            found.setdefault(row_id, []).append(Identity(IdentityKind(kind), value))
    return found


def held_by_mirror(session: Session, crms: Collection[str], identities: Collection[Identity]) -> set[tuple[str, str]]:
    """Which of `identities` ((kind, value)) a mirrored record of one of `crms` holds."""
    return {(kind, value) for _, kind, value in mirror_records_holding(session, crms, identities)}


def _identity_lookup(crms: Collection[str], wanted: Collection[tuple[str, str]]) -> tuple[Any, ...]:
    """WHERE terms binding every column of `ix_mirror_identities_lookup` (crm, kind, value) by an IN list.

    A row-value IN of (kind, value) pairs uses no index on SQLite, which then
    reads every mirrored record; the IN lists admit pairs nobody asked for (one
    identity's kind with another's value), which the caller drops.
    """
    kinds, values = _lookup_lists(wanted)
    return (among(MirrorIdentityRow.crm, sorted(set(crms))), among(MirrorIdentityRow.kind, kinds),
            among(MirrorIdentityRow.value, values))


def _lookup_lists(wanted: Collection[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The kind and the value IN lists for (kind, value) pairs, each sorted (a stable statement)."""
    return sorted({k for k, _ in wanted}), sorted({v for _, v in wanted})


def mirror_identities(session: Session, mirror_id: int) -> list[Identity]:
    return mirror_identities_many(session, [mirror_id]).get(mirror_id, [])


def known_values(session: Session, kind: IdentityKind, values: Sequence[str], crms: Sequence[str]) -> set[str]:
    """Which of `values` crmhub knows as identities of `kind`, in the graph or the mirror of one of `crms`."""
    if not values:
        return set()
    graph = select(IdentityRow.value).where(IdentityRow.kind == kind.value, among(IdentityRow.value, values))
    mirror = select(MirrorIdentityRow.value).where(among(MirrorIdentityRow.crm, sorted(set(crms))),
                                                   MirrorIdentityRow.kind == kind.value,
                                                   among(MirrorIdentityRow.value, values))
    return set(session.scalars(graph)) | set(session.scalars(mirror))


def mirror_record(session: Session, crm: str, record_id: str) -> MirrorRow | None:
    return session.scalar(select(MirrorRow).where(MirrorRow.crm == crm, MirrorRow.record_id == record_id))
