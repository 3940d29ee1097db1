"""`crmhub route --dry-run`: what the current rules would change, written nowhere.

Recent ledger items that have a stored decision are routed again with the
rules of the mappings as they are now (`build_router(config)`), against the
contact fields of the person's linked records in the local mirror. Each item
whose rule or queue would change is listed, old -> new. Nothing is written:
the work happens in a transaction that is rolled back.

What the replay cannot know exactly: whether a case was open when the item
was first routed. It is rebuilt from the threads (a thread of the
conversation opened before the item was routed and not closed by then),
which is right unless a conversation's case was closed and reopened since.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmhub.model import RouteDecision
from crmhub.ops.explain import describe_target
from crmhub.store import StateStore, graph
from crmhub.store.ledger import to_interaction
from crmhub.store.schema import LedgerRow, RouteDecisionRow, ThreadRow
from crmhub.sync.routing import Router


@dataclass(frozen=True)
class Change:
    """One item whose routing would change under the current rules."""

    interaction_id: int
    key: str
    old_rule: str
    new_rule: str
    queues: dict[str, tuple[str, str]]  # crm -> (old target, new target), only those that differ

    def line(self) -> str:
        rule = (f"rule {self.old_rule} -> {self.new_rule}" if self.old_rule != self.new_rule
                else f"rule {self.old_rule} (same)")
        queues = "; ".join(f"{crm} {old} -> {new}" for crm, (old, new) in sorted(self.queues.items()))
        return f"{self.interaction_id} {self.key}: {rule}" + (f"; {queues}" if queues else "")


@dataclass
class DryRun:
    """What replaying the routing of recent items would change."""

    since: datetime
    replayed: int = 0
    not_routed: int = 0
    changes: list[Change] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [change.line() for change in self.changes]
        out.append(f"{self.replayed} item(s) since {self.since.isoformat()} replayed against the current rules: "
                   f"{len(self.changes)} would change, {self.replayed - len(self.changes)} unchanged"
                   + (f"; {self.not_routed} not routed yet (skipped)" if self.not_routed else "")
                   + ". Nothing was written.")
        return out


def dry_run(store: StateStore, router: Router, crms: Sequence[str], *, since: timedelta,
            now: datetime) -> DryRun:
    """Replay the routing of items that occurred in the last `since`; the store is left untouched."""
    start = now - since
    result = DryRun(since=start)
    with store.sessions() as session:  # not store.transaction(): rolled back, never committed
        try:
            query = select(LedgerRow).where(LedgerRow.occurred_at >= start).order_by(LedgerRow.id)
            for row in session.scalars(query):
                stored = session.get(RouteDecisionRow, row.id)
                if stored is None or row.person_id is None:
                    result.not_routed += 1
                    continue
                result.replayed += 1
                decision = router.decide(to_interaction(row), contact_fields(session, row.person_id, crms),
                                         case_open=_case_open(session, row, crms))
                change = compare(row, stored, decision, crms)
                if change is not None:
                    result.changes.append(change)
        finally:
            session.rollback()
    return result


def contact_fields(session: Session, person_id: int, crms: Sequence[str]) -> dict[str, Any]:
    """The mirrored fields of the person's linked records; the first CRM wins, as in processing."""
    fields: dict[str, Any] = {}
    for crm in crms:
        link = graph.link_of(session, person_id, crm)
        if link is None:
            continue
        mirrored = graph.mirror_record(session, crm, link.record_id)
        if mirrored is not None:
            fields = {**mirrored.fields, **fields}
    return fields


def _case_open(session: Session, row: LedgerRow, crms: Sequence[str]) -> bool:
    routed_at = row.processed_at
    if routed_at is None:
        return False
    threads = session.scalars(select(ThreadRow).where(ThreadRow.conversation_key == row.conversation_key,
                                                      ThreadRow.crm.in_(list(crms))))
    return any(t.opened_at < routed_at and (t.closed_at is None or t.closed_at > routed_at) for t in threads)


def compare(row: LedgerRow, stored: RouteDecisionRow, decision: RouteDecision,
            crms: Sequence[str]) -> Change | None:
    """The change, in the enabled `crms`, from the stored decision to the replayed one; None when they agree."""
    new_targets = {crm: describe_target({"queue": t.queue, "priority": t.priority, "tags": list(t.tags)})
                   for crm, t in decision.targets.items() if crm in crms}
    old_targets = {crm: describe_target(t) for crm, t in stored.targets.items() if crm in crms}
    queues = {crm: (old_targets.get(crm, "none"), new_targets.get(crm, "none"))
              for crm in sorted(set(old_targets) | set(new_targets))
              if old_targets.get(crm) != new_targets.get(crm)}
    if stored.rule == decision.rule and not queues:
        return None
    return Change(row.id, f"{row.channel}:{row.external_id}", stored.rule, decision.rule, queues)


def replay_routing(config: Any, store: StateStore, *, since: timedelta, now: datetime) -> DryRun:
    """`dry_run` with the router and the CRMs of `config` (the mappings as they are on disk now)."""
    from crmhub.app import build_router

    crms = list(config.settings.crms.enabled_names())
    return dry_run(store, build_router(config), crms, since=since, now=now)
