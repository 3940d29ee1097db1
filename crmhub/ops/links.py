"""`crmhub links list|confirm|reject`: identities customers claimed in messages, decided by a person.

A claim ("I'm @jane", "my email is ...") is no proof, so crmhub only suggests
the link (DESIGN.md: "Text a customer writes is a suggestion, never proof").
Confirming joins the two identities through the identity graph's usual path:
the persons merge, their history is backfilled onto each CRM's primary
record, and several records of one CRM are flagged as a conflict. Rejecting
keeps the pair from being suggested again. Both record who decided and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from crmhub.ops import OpsError
from crmhub.store import graph
from crmhub.store import links as store
from crmhub.store.links import LinkStatus
from crmhub.store.schema import LedgerRow, LinkSuggestionRow
from crmhub.sync.identity import IdentityGraph, IdentityPolicy
from crmhub.sync.links import shown

BY_CLI = "admin via CLI"


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
            by: str = BY_CLI) -> str:
    """Join the claimed identity to the sender's person (merge and backfill as for any join); record who did."""
    row = _get(session, suggestion_id)
    if row.status == LinkStatus.CONFIRMED:
        raise OpsError(f"link {suggestion_id} was confirmed already ({row.decided_by}, {row.decided_at:%Y-%m-%d})")
    sender, claimed = store.sender_of(row), store.claimed_of(row)
    if policy.blocklist.blocks(claimed):
        raise OpsError(f"{shown(claimed)} is blocked in identities.yaml (a shared value): it links nobody; "
                       f"reject the link (`crmhub links reject {suggestion_id}`)")
    person = IdentityGraph(session, list(crms), policy, now).confirm(sender, claimed, by=by)
    if graph.holder_of(session, claimed) != person:
        raise OpsError(f"link {suggestion_id} not joined: it would give one customer more than "
                       f"{policy.max_per_kind} identities of a kind; raise max_identities_per_kind in "
                       "identities.yaml, then confirm again")
    store.decide(session, row, LinkStatus.CONFIRMED, by=by, now=now)
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


def _get(session: Session, suggestion_id: int) -> LinkSuggestionRow:
    row = store.get(session, suggestion_id)
    if row is None:
        raise OpsError(f"no link suggestion {suggestion_id}; `crmhub links list` shows them")
    return row
