"""From ledger to outbox: identity (joins and backfill), contact match, routing, one write per CRM.

Runs over ledger rows not yet processed, in batches, each batch in one
transaction: a crash leaves rows unprocessed, and re-processing them is
harmless (the outbox key is unique per CRM).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crmhub.store import StateStore, ledger, outbox
from crmhub.sync.contacts import contact_for
from crmhub.sync.identity import IdentityGraph, IdentityPolicy
from crmhub.sync.routing import Router


def process_pending(store: StateStore, router: Router, crms: Sequence[str], *, now: datetime,
                    batch_size: int = 500, identity: IdentityPolicy = IdentityPolicy()) -> int:
    """Process every unprocessed ledger row; returns how many were processed."""
    done = 0
    blocklist = identity.blocklist
    while True:
        with store.transaction() as session:
            rows = ledger.unprocessed(session, batch_size)
            people = IdentityGraph(session, crms, identity, now)
            for row in rows:
                item = ledger.to_interaction(row)
                person_id = people.person_of(item)
                row.person_id = person_id
                fields: dict[str, Any] = {}
                case_open = False
                for crm in crms:
                    match = contact_for(session, person_id, crm, now=now, blocklist=blocklist,
                                        on_linked=people.relink)
                    if match is not None:
                        fields = {**match.fields, **fields}
                    thread = outbox.thread_of(session, crm, item.conversation_key)
                    case_open = case_open or (thread is not None and thread.closed_at is None)
                decision = router.decide(item, fields, case_open=case_open)
                outbox.save_decision(session, row.id, decision, now=now)
                outbox.enqueue(session, row.id, list(crms), item.key, now=now)
                row.processed_at = now
        done += len(rows)
        if len(rows) < batch_size:
            return done
