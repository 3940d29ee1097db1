"""Routing is set-oriented: a batch costs the same number of SQL statements however many items it holds.

Issue 13: routing used to run some 30 statements per item (person, contacts,
threads and pending cases looked up one by one). Counted here with
SQLAlchemy's statement event, on both stores.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from crmhub.identities import phone
from crmhub.model import Channel, Direction, Interaction, QueueTarget, WritePriority
from crmhub.store import StateStore, ledger
from crmhub.store.schema import OutboxRow, PersonRow
from crmhub.sync.process import process_pending
from crmhub.sync.routing import Router

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
OURS = phone("+14155550100")
CRMS = ["salesforce", "zendesk", "hubspot"]
ROUTER = Router(rules=(), default={crm: QueueTarget("support") for crm in CRMS})


def sms(n: int, customer: int, text: str = "Where is my order?") -> Interaction:
    sender = phone(f"+1415555{customer:04d}")
    return Interaction(Channel.SMS, Direction.INBOUND, f"SM{n:032d}", f"sms:{sender.value}:{OURS.value}", sender,
                       OURS, text, NOW + timedelta(seconds=n))


def statements_to_route(store: StateStore, items: list[Interaction]) -> int:
    with store.transaction() as session:
        ledger.ingest_page(session, items, now=NOW)
    count = [0]

    def counted(*_: object) -> None:
        count[0] += 1

    event.listen(store.engine, "before_cursor_execute", counted)
    try:
        assert process_pending(store, ROUTER, CRMS, now=NOW) == len(items)
    finally:
        event.remove(store.engine, "before_cursor_execute", counted)
    return count[0]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_a_batch_costs_the_same_statements_for_20_items_as_for_200(store: StateStore) -> None:
    customers = range(200)
    first = statements_to_route(store, [sms(n, c) for n, c in enumerate(customers)])  # 200 new customers
    small = statements_to_route(store, [sms(1000 + n, c) for n, c in enumerate(customers[:20])])
    large = statements_to_route(store, [sms(2000 + n, c) for n, c in enumerate(customers)])
    assert small == large, (small, large)
    assert large <= 40 and first <= 40, (first, large)  # a few per table, not per item
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(PersonRow)) == 200  # one person per customer
        rows = session.execute(select(OutboxRow.crm, OutboxRow.priority, func.count())
                               .group_by(OutboxRow.crm, OutboxRow.priority)).all()
    # Each conversation's first message opens its case in each CRM; the 220 later ones follow it up.
    assert sorted(rows) == sorted([(crm, int(WritePriority.NEW_CASE), 200) for crm in CRMS]
                                  + [(crm, int(WritePriority.FOLLOW_UP), 220) for crm in CRMS])
