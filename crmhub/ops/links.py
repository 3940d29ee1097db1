"""`crmhub links list|confirm|reject`: identities customers claimed in messages, decided by a person.

A claim ("I'm @jane", "my email is ...") is no proof, so crmhub only suggests
the link (DESIGN.md: "Text a customer writes is a suggestion, never proof").
Confirming joins the two identities through the identity graph's usual path:
the persons merge, their history is backfilled onto each CRM's primary
record, and several records of one CRM are flagged as a conflict. Rejecting
keeps the pair from being suggested again. Both record who decided and when.
An agent decides the same way from inside the CRM (`decide_marks`, fed by
the case states each CRM's refresh reads back; `mark_authors` asks the CRM
who set the marks about to decide something, where the case state does not
say), and a one-time code answered
from the claimed channel confirms through `confirm` too
(`crmhub.sync.link_codes`): this module is the one path a claim joins by.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

from sqlalchemy.orm import Session

import structlog

from crmhub.errors import ConnectorError
from crmhub.model import CaseState, LinkMark
from crmhub.ops import OpsError
from crmhub.store import graph
from crmhub.store import links as store
from crmhub.store.links import LinkStatus
from crmhub.store.linklog import Evidence
from crmhub.store.schema import LedgerRow, LinkSuggestionRow
from crmhub.sync.identity import IdentityGraph, IdentityPolicy
from crmhub.sync.links import shown

BY_CLI = "admin via CLI"
log = structlog.get_logger("crmhub.links")
MarkKey = tuple[str, int]  # (case record id, suggestion id)


class MarkAuthorReader(Protocol):
    """A CRM connector that can say who set link marks its case states leave as "agent in <crm>"."""

    name: str

    def mark_authors(self, marks: Sequence[tuple[str, LinkMark]]) -> Mapping[MarkKey, str]: ...


@dataclass(frozen=True)
class LinkView:
    """One suggestion as `crmhub links list` shows it (never the message text)."""

    id: int
    stated_in: str  # channel:external_id, what `crmhub explain` takes
    sender: str
    claimed: str
    held_by: str
    status: str
    decided: str
    noted_in: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "stated_in": self.stated_in, "sender": self.sender, "claimed": self.claimed,
                "held_by": self.held_by, "status": self.status, "decided": self.decided, "noted_in": self.noted_in}


def list_links(session: Session, status: LinkStatus | None = None) -> list[LinkView]:
    views = []
    for row in store.listing(session, status):
        item = session.get(LedgerRow, row.interaction_id)
        holder = graph.holder_of(session, store.claimed_of(row))
        sender = graph.holder_of(session, store.sender_of(row))
        held_by = ("nobody yet" if holder is None else "the sender" if holder == sender
                   else f"another customer (person {holder})")
        decided = f"{row.decided_by}, {row.decided_at:%Y-%m-%d %H:%M}" if row.decided_at else ""
        views.append(LinkView(row.id, f"{item.channel}:{item.external_id}" if item else "", shown(store.sender_of(row)),
                              shown(store.claimed_of(row)), held_by, row.status, decided,
                              store.noted_in(session, row.id)))
    return views


def confirm(session: Session, suggestion_id: int, *, policy: IdentityPolicy, crms: Sequence[str], now: datetime,
            by: str = BY_CLI, evidence: Evidence = Evidence.ADMIN) -> str:
    """Join the claimed identity to the sender's person (merge and backfill as for any join); record who did.

    `by` is who decided (`admin via CLI`, `salesforce user 005…`, `agent in zendesk`, the code's channel);
    `evidence` what made the claim trustworthy: the link log records the join with it.
    """
    row = _get(session, suggestion_id)
    if row.status == LinkStatus.CONFIRMED:
        raise OpsError(f"link {suggestion_id} was confirmed already ({row.decided_by}, {row.decided_at:%Y-%m-%d})")
    sender, claimed = store.sender_of(row), store.claimed_of(row)
    if policy.blocklist.blocks(claimed):
        raise OpsError(f"{shown(claimed)} is blocked in identities.yaml (a shared value): it links nobody; "
                       f"reject the link (`crmhub links reject {suggestion_id}`)")
    person = IdentityGraph(session, list(crms), policy, now).confirm(sender, claimed, by=by, evidence=evidence)
    if graph.holder_of(session, claimed) != person:
        raise OpsError(f"link {suggestion_id} not joined: it would give one customer more than "
                       f"{policy.max_per_kind} identities of a kind; raise max_identities_per_kind in "
                       "identities.yaml, then confirm again")
    store.decide(session, row, LinkStatus.CONFIRMED, by=by, now=now)
    log.info("link confirmed", suggestion=suggestion_id, person=person, evidence=evidence.value)
    return (f"Link {suggestion_id} confirmed: {shown(claimed)} is now the same customer as {shown(sender)}. "
            "The next sync moves their history onto one record per CRM (`crmhub conflicts list` shows any CRM "
            "holding two records of them).")


def reject(session: Session, suggestion_id: int, *, now: datetime, by: str = BY_CLI) -> str:
    """Record that the claim is false: nothing joins, and the same claim is never suggested again."""
    row = _get(session, suggestion_id)
    if row.status != LinkStatus.PENDING:
        raise OpsError(f"link {suggestion_id} was {row.status} already ({row.decided_by}, "
                       f"{row.decided_at:%Y-%m-%d})" + (
                           f"; to split them, undo its join (`crmhub links list {store.sender_of(row).kind.value}:"
                           f"{store.sender_of(row).value}` shows the event)" if row.status == LinkStatus.CONFIRMED
                           else ""))
    store.decide(session, row, LinkStatus.REJECTED, by=by, now=now)
    return (f"Link {suggestion_id} rejected: {shown(store.claimed_of(row))} stays apart from "
            f"{shown(store.sender_of(row))}, and the claim will not be suggested again.")


def marks_to_decide(session: Session, crm: str, states: Sequence[CaseState]) -> list[tuple[str, LinkMark]]:
    """(case record id, mark) of each mark in `states` that would change a suggestion's status now.

    The only marks worth asking the CRM about (`mark_authors`): marks stay on cases for good and the
    same cases are read again and again, so their authors are looked up once, when they decide.
    """
    return [(case_id, mark) for case_id, mark, _ in _deciding(session, crm, states, warn=False)]


def reads_mark_authors(crm: object) -> bool:
    """Whether the CRM's connector is asked who set marks (its case states leave them to "agent in <crm>")."""
    return hasattr(crm, "mark_authors")


def mark_authors(crm: object, marks: Sequence[tuple[str, LinkMark]]) -> dict[MarkKey, str]:
    """Who set each of `marks`, as the CRM names them, for a CRM whose case states do not say; {} otherwise.

    One look-up per batch of marks. A failed one decides nothing by itself: the marks keep their
    actor ("agent in <crm>") and a warning says why.
    """
    if not marks or not reads_mark_authors(crm):
        return {}
    reader = cast(MarkAuthorReader, crm)
    try:
        return dict(reader.mark_authors(marks))
    except ConnectorError as exc:
        log.warning("who set the link marks is unknown: recorded as an agent in the CRM", crm=reader.name,
                    marks=len(marks), reason=str(exc)[:300])
        return {}


def decide_marks(session: Session, crm: str, states: Sequence[CaseState], *, policy: IdentityPolicy,
                 crms: Sequence[str], now: datetime, authors: Mapping[MarkKey, str] | None = None) -> int:
    """Apply what agents set on cases of `crm` about link suggestions; returns how many decisions it made.

    A mark counts only on the case whose note named that suggestion (`link_notes`): a number typed on
    another case, or one crmhub never noted, decides nothing. A decision already made is left alone, so
    reading the same case again changes nothing; a confirmed link is not split by a later reject (that is
    an undo). A confirmation crmhub refuses (a blocked value, too many identities) is logged and the
    suggestion stays pending. `authors` names who set a mark (`mark_authors`) where its actor does not.
    """
    decided = 0
    for case_id, mark, row in _deciding(session, crm, states, warn=True):
        by = (authors or {}).get((case_id, mark.suggestion_id), mark.actor)
        try:
            if mark.confirm:
                confirm(session, row.id, policy=policy, crms=crms, now=now, by=by, evidence=Evidence.AGENT)
            else:
                reject(session, row.id, now=now, by=by)
        except OpsError as exc:
            log.warning("link mark not applied", crm=crm, suggestion=row.id, reason=str(exc)[:300])
            continue
        decided += 1
    return decided


def _deciding(session: Session, crm: str, states: Sequence[CaseState], *,
              warn: bool) -> Iterator[tuple[str, LinkMark, LinkSuggestionRow]]:
    """(case id, mark, suggestion) of each mark that changes its suggestion, judged as it is reached."""
    marks = [(state.record_id, mark) for state in states for mark in state.link_marks]
    if not marks:
        return
    noted = store.noted_cases(session, crm, sorted({mark.suggestion_id for _, mark in marks}))
    rows = store.get_many(session, sorted(noted))
    for case_id, mark in marks:
        row = rows.get(mark.suggestion_id)
        if row is None or noted.get(mark.suggestion_id) != case_id:
            if warn:
                log.warning("link mark ignored: not on the case of its note", crm=crm, case=case_id,
                            suggestion=mark.suggestion_id)
            continue
        wanted = LinkStatus.CONFIRMED if mark.confirm else LinkStatus.REJECTED
        if row.status == wanted.value:
            continue
        if row.status == LinkStatus.CONFIRMED:
            if warn:
                log.warning("link mark ignored: the link was confirmed already", crm=crm, suggestion=row.id)
            continue
        yield case_id, mark, row


def _get(session: Session, suggestion_id: int) -> LinkSuggestionRow:
    row = store.get(session, suggestion_id)
    if row is None:
        raise OpsError(f"no link suggestion {suggestion_id}; `crmhub links list` shows them")
    return row
