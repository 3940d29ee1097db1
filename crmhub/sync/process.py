"""From ledger to outbox: identity (joins and backfill), contact match, routing, one write per CRM.

Runs over ledger rows not yet processed, in batches, each batch in one
transaction: a crash leaves rows unprocessed, and re-processing them is
harmless (the outbox key is unique per CRM). Daemons sharing a PostgreSQL
store take turns (`crmhub.store.locks`): two processing the same new rows
at once would both create their persons and decisions, and all but one
would fail on the unique keys, and with it that daemon's delivery run.

Each write gets its priority per CRM: a new case where the conversation has
no open thread there (and no earlier write waiting to open one), else a
follow-up, so a low API budget holds follow-ups back before new cases.
An outbound item that is the sent copy of an agent's reply (its message id is
on a reply row) goes to every CRM except the one the reply came from, whose
write is marked done at once: the agent's comment is already on that case.
An outbound item of a conversation with a reply whose send is unsettled
waits (stays unprocessed) until the reply's message id is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from crmhub.model import Direction, WritePriority
from crmhub.store import StateStore, ledger, outbox, replies
from crmhub.store.locks import one_at_a_time
from crmhub.sync.contacts import contact_for
from crmhub.sync.identity import IdentityGraph, IdentityPolicy
from crmhub.sync.routing import Router


def process_pending(store: StateStore, router: Router, crms: Sequence[str], *, now: datetime,
                    batch_size: int = 500, identity: IdentityPolicy = IdentityPolicy(),
                    reopen_window: timedelta = outbox.DEFAULT_REOPEN_WINDOW) -> int:
    """Process every unprocessed ledger row; returns how many were processed.

    `reopen_window` is `threads.reopen_window`: a message that will reopen a
    case closed that recently counts, for routing, as one with a case open.
    """
    done = 0
    blocklist = identity.blocklist
    reopening: set[int] = set()  # threads an earlier message of this run reopens
    while True:
        with store.transaction() as session:
            one_at_a_time(session, "route")
            rows = ledger.unprocessed(session, batch_size)
            people = IdentityGraph(session, crms, identity, now)
            waiting = 0
            # In the order they happened (a poll may store newest first), so a
            # conversation's first message is the one that opens its case.
            for row in sorted(rows, key=lambda r: (r.occurred_at, r.id)):
                item = ledger.to_interaction(row)
                echo = None
                if item.direction is Direction.OUTBOUND:
                    echo = replies.echo_of(session, item.channel.value, item.external_id)
                    if echo is None and replies.unsettled(session, item.conversation_key):
                        waiting += 1  # it may be the sent copy of a reply not recorded yet: wait for it
                        continue
                person_id = people.person_of(item, interaction_id=row.id)
                row.person_id = person_id
                fields: dict[str, Any] = {}
                case_open = False
                priority: dict[str, WritePriority] = {}
                for crm in crms:
                    match = contact_for(session, person_id, crm, now=now, blocklist=blocklist,
                                        on_linked=people.relink)
                    if match is not None:
                        fields = {**match.fields, **fields}
                    thread = outbox.thread_of(session, crm, item.conversation_key)
                    reopens = outbox.reopens(thread, item.occurred_at, reopen_window, reopening)
                    if reopens and thread is not None:
                        reopening.add(thread.id)  # what follows it threads onto it too
                    is_open = reopens or (thread is not None and thread.closed_at is None)
                    case_open = case_open or is_open
                    opening = is_open or outbox.case_pending(session, crm, item.conversation_key)
                    priority[crm] = WritePriority.FOLLOW_UP if opening else WritePriority.NEW_CASE
                decision = router.decide(item, fields, case_open=case_open)
                outbox.save_decision(session, row.id, decision, now=now)
                outbox.enqueue(session, row.id, list(crms), item.key, now=now, priority=priority)
                if echo is not None:  # the agent's reply is on that CRM's case already
                    outbox.settle(session, echo.crm, item.key, f"reply:{echo.reply_ref}", now=now)
                row.processed_at = now
        done += len(rows) - waiting
        if len(rows) < batch_size or waiting == len(rows):
            return done
