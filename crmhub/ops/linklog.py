"""`crmhub links list PERSON|IDENTITY`, `links show ID`, `links undo ID`: the link log, read and undone.

Every join and split of customers is an event (`crmhub.store.linklog`);
these commands show a customer's events, one event with the rows it moved,
and undo a wrong join (`crmhub.sync.split`). Identities are shown as agents
read them; never a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmhub import identities
from crmhub.model import Identity, IdentityKind
from crmhub.ops import OpsError
from crmhub.store import graph, linklog
from crmhub.store.schema import CrmLinkRow, IdentityRow, LinkEventRow, PersonRow
from crmhub.sync.links import shown
from crmhub.sync.split import UndoRefused, undo_join

BY_CLI = "admin via CLI"


@dataclass(frozen=True)
class EventView:
    """One link event as `crmhub links list PERSON` and `links show` print it."""

    id: int
    at: datetime
    action: str
    kept: int | None
    absorbed: int | None
    concerning: str
    evidence: str
    actor: str
    undoes: int | None
    undone_by: int | None
    moved: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "at": self.at.isoformat(), "action": self.action, "kept": self.kept,
                "absorbed": self.absorbed, "concerning": self.concerning, "evidence": self.evidence,
                "actor": self.actor, "undoes": self.undoes, "undone_by": self.undone_by, "moved": self.moved}

    def line(self) -> str:
        """One line: `#7 2026-12-06 12:00 join person 3 into person 1 (statement, admin via CLI): email:...`."""
        who = (f"person {self.absorbed} into person {self.kept}" if self.action == "join"
               else f"person {self.absorbed} out of person {self.kept}" if self.action == "split"
               else f"person {self.kept}")
        extra = (f"; undoes #{self.undoes}" if self.undoes else "") + (
            f"; undone by #{self.undone_by}" if self.undone_by else "")
        return (f"#{self.id} {self.at:%Y-%m-%d %H:%M} {self.action} {who} ({self.evidence}, {self.actor}): "
                f"{self.concerning}{extra}")


def person_of(session: Session, what: str, *, default_region: str = "US") -> int:
    """The person `what` names: a person id, or an identity `phone:+1...`, `email:...`, `x:ID`, `x:@handle`."""
    if what.isdigit():
        if session.get(PersonRow, int(what)) is None:
            raise OpsError(f"no person {what}; name a customer by an identity, e.g. phone:+14155550123")
        return int(what)
    kind, _, value = what.partition(":")
    try:
        identity = _identity(kind.strip().lower(), value.strip(), default_region)
    except ValueError:
        raise OpsError(f"{what!r} is neither a person id nor an identity; use e.g. phone:+14155550123, "
                       "email:jane@example.com, x:1234567 or x:@handle") from None
    person = graph.holder_of(session, identity)
    if person is None:
        raise OpsError(f"crmhub knows no customer with {shown(identity)}")
    return person


def _identity(kind: str, value: str, region: str) -> Identity:
    if not value:
        raise ValueError(kind)
    if kind == "phone":
        return identities.phone(value, region)
    if kind == "email":
        return identities.email(value)
    if kind == "x" and value.startswith("@"):
        return Identity(IdentityKind.X_HANDLE, identities.normal_handle(value))
    if kind in ("x", "x_handle"):
        return Identity(IdentityKind(kind), identities.normal_handle(value) if kind == "x_handle" else value)
    raise ValueError(kind)


def list_events(session: Session, person: int) -> list[EventView]:
    """The events of `person` and of every person it joined or was joined into, oldest first."""
    persons = _related(session, person)
    return [_view(session, row) for row in linklog.events_of(session, persons)]


def _related(session: Session, person: int) -> set[int]:
    """`person` and the persons its events name, followed transitively (a history of joins and splits)."""
    seen, frontier = {person}, {person}
    while frontier:
        rows = linklog.events_of(session, frontier)
        found = {p for row in rows for p in (row.kept_person_id, row.absorbed_person_id) if p is not None}
        frontier = found - seen
        seen |= found
    return seen


def show(session: Session, event_id: int) -> tuple[EventView, list[str]]:
    """The event and, line by line, what it moved: identities and CRM records by name, ledger rows by count."""
    row = linklog.get(session, event_id)
    if row is None:
        raise OpsError(f"no link event {event_id}; `crmhub links list PERSON` shows a customer's events")
    view = _view(session, row)
    lines = []
    ids = select(IdentityRow.kind, IdentityRow.value, IdentityRow.display).where(
        IdentityRow.id.in_(linklog.moved_rows(session, event_id, "identities"))).order_by(IdentityRow.id)
    lines += [f"identity {shown(Identity(IdentityKind(k), v, d))}" for k, v, d in session.execute(ids)]
    records = select(CrmLinkRow.crm, CrmLinkRow.record_id).where(
        CrmLinkRow.id.in_(linklog.moved_rows(session, event_id, "crm_links"))).order_by(CrmLinkRow.id)
    lines += [f"{crm} record {record}" for crm, record in session.execute(records)]
    if view.moved.get("ledger"):
        lines.append(f"{view.moved['ledger']} messages (their history in every CRM)")
    return view, lines


def undo(session: Session, event_id: int, *, crms: Sequence[str], now: datetime, by: str = BY_CLI) -> list[str]:
    """Undo join `event_id`; the lines to print (what went back, what the next delivery moves)."""
    try:
        split = undo_join(session, event_id, crms=crms, by=by, now=now)
    except UndoRefused as exc:
        raise OpsError(str(exc)) from None
    moved = split.moved
    queued = ", ".join(f"{crm} {count}" for crm, count in sorted(split.requeued.items()) if count) or "none"
    return [f"Link event {event_id} undone (split event {split.split}): person {split.absorbed} is a customer of "
            f"their own again, apart from person {split.kept}.",
            f"Given back: {moved.get('identities', 0)} identities, {moved.get('crm_links', 0)} CRM records, "
            f"{moved.get('ledger', 0)} messages.",
            f"Writes due again to move their history back onto the right records: {queued} "
            "(the running daemon delivers them; `crmhub links show " f"{split.split}` shows the split)."]


def _view(session: Session, row: LinkEventRow) -> EventView:
    undone = linklog.undone_by(session, row.id)
    return EventView(row.id, row.at, row.action, row.kept_person_id, row.absorbed_person_id, row.concerning,
                     row.evidence, row.actor, row.undoes, undone.id if undone else None,
                     linklog.moved_counts(session, row.id))
