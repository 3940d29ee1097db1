"""A state store that already holds a contact centre's history, written in bulk.

Query plans and per-cycle cost only show their faults on a store with
history: a scan of a table of twenty rows costs nothing. `seed_history`
writes `interactions` delivered SMS of `interactions // per_conversation`
customers, as crmhub would have left them after routing and delivering them
to `crms`: persons and phone identities, CRM links and mirrored contacts,
one thread (case) per conversation and CRM, decisions, done outbox rows, and
a delivered agent reply on every conversation. SQLAlchemy Core, a few
executemany statements per table, so 100k interactions take seconds. Its
numbers (`+1212...`) and record ids (`hist-...`) never meet the emulators'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from crmhub.store.schema import (CrmLinkRow, IdentityRow, LedgerRow, MirrorIdentityRow, MirrorRow, OutboxRow,
                                 PersonRow, ReplyRow, RouteDecisionRow, ThreadRow)

OURS = "+14155550100"
CHUNK = 5_000  # rows per executemany


def seed_history(engine: Engine, interactions: int, crms: Sequence[str], *, per_conversation: int = 5,
                 end: datetime | None = None) -> None:
    """Write `interactions` delivered interactions of history (see the module docstring) into an empty store."""
    end = end or datetime.now(UTC) - timedelta(days=1)
    customers = max(1, interactions // per_conversation)
    start = end - timedelta(seconds=60 * interactions)
    with engine.begin() as connection:
        base = {table: int(connection.scalar(select(func.coalesce(func.max(table.id), 0))) or 0)
                for table in (PersonRow, IdentityRow, CrmLinkRow, MirrorRow, LedgerRow, ThreadRow, OutboxRow)}
        person = base[PersonRow]
        phones = [f"+1212{person + i:07d}" for i in range(1, customers + 1)]

        def write(table: Any, rows: Iterator[dict[str, Any]]) -> None:
            batch: list[dict[str, Any]] = []
            for row in rows:
                batch.append(row)
                if len(batch) == CHUNK:
                    connection.execute(insert(table), batch)
                    batch = []
            if batch:
                connection.execute(insert(table), batch)

        write(PersonRow, ({"id": person + i, "created_at": start} for i in range(1, customers + 1)))
        write(IdentityRow, ({"kind": "phone", "value": phones[i - 1], "display": "", "person_id": person + i}
                            for i in range(1, customers + 1)))
        mirror_ids = {crm: base[MirrorRow] + n * customers for n, crm in enumerate(crms)}
        for crm in crms:
            record = _record_ids(crm, person)
            write(CrmLinkRow, ({"person_id": person + i, "crm": crm, "object_type": "Contact", "record_id": record(i),
                                "created_at": start, "preferred": False} for i in range(1, customers + 1)))
            write(MirrorRow, ({"id": mirror_ids[crm] + i, "crm": crm, "object_type": "Contact",
                               "record_id": record(i), "fields": {}, "created_at": start, "modified_at": start}
                              for i in range(1, customers + 1)))
            write(MirrorIdentityRow, ({"mirror_id": mirror_ids[crm] + i, "crm": crm, "kind": "phone",
                                       "value": phones[i - 1]} for i in range(1, customers + 1)))
            write(ThreadRow, ({"crm": crm, "conversation_key": _conversation(phones[i - 1]), "seq": 1,
                               "record_id": f"hist-case-{crm}-{person + i}", "queue": "support",
                               "opened_at": start, "closed_at": start if i % 3 == 0 else None,
                               "closed_final": False, "state_at": start} for i in range(1, customers + 1)))
        ledger = base[LedgerRow]
        at = [start + timedelta(seconds=60 * n) for n in range(interactions)]
        customer_of = [n % customers + 1 for n in range(interactions)]
        write(LedgerRow, (_ledger_row(ledger + n + 1, phones[customer_of[n] - 1], person + customer_of[n], at[n])
                          for n in range(interactions)))
        write(RouteDecisionRow, ({"interaction_id": ledger + n + 1, "rule": "default",
                                  "targets": {crm: {"queue": "support"} for crm in crms}, "tried": [],
                                  "decided_at": at[n]} for n in range(interactions)))
        for crm in crms:
            record = _record_ids(crm, person)
            write(OutboxRow, ({"idempotency_key": f"sms:SMhist{ledger + n + 1}", "interaction_id": ledger + n + 1,
                               "crm": crm, "status": "done", "priority": 2, "attempts": 1, "claims": 0,
                               "next_attempt_at": at[n], "result_ref": f"hist-task-{crm}-{ledger + n + 1}",
                               "contact_ref": record(customer_of[n]), "relink": False, "created_at": at[n],
                               "done_at": at[n]} for n in range(interactions)))
        write(ReplyRow, (_reply_row(crms[i % len(crms)], person + i, phones[i - 1], start)
                         for i in range(1, customers + 1)))
        if connection.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in (PersonRow, IdentityRow, CrmLinkRow, MirrorRow, MirrorIdentityRow, LedgerRow, ThreadRow,
                          OutboxRow, ReplyRow):
                name = table.__tablename__
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                        f"(SELECT max(id) FROM {name}))"))


def _record_ids(crm: str, person: int) -> Callable[[int], str]:
    """The record id in `crm` of the i-th seeded customer."""
    return lambda i: f"hist-{crm}-{person + i}"


def _conversation(phone: str) -> str:
    return f"sms:{OURS}:{phone}"


def _ledger_row(row_id: int, phone: str, person_id: int, at: datetime) -> dict[str, Any]:
    return {"id": row_id, "channel": "sms", "external_id": f"SMhist{row_id}", "direction": "inbound",
            "conversation_key": _conversation(phone), "sender_kind": "phone", "sender_value": phone,
            "sender_display": "", "recipient_kind": "phone", "recipient_value": OURS, "recipient_display": "",
            "text": "Where is my order?", "media": [], "call": None, "occurred_at": at, "raw": {},
            "person_id": person_id, "ingested_at": at, "processed_at": at}


def _reply_row(crm: str, person_id: int, phone: str, at: datetime) -> dict[str, Any]:
    return {"crm": crm, "reply_ref": f"hist-reply-{person_id}", "case_id": f"hist-case-{crm}-{person_id}",
            "conversation_key": _conversation(phone), "channel": "sms", "to_kind": "phone", "to_address": phone,
            "from_kind": "phone", "from_address": OURS, "in_reply_to": None, "text": "On its way",
            "author": "agent", "status": "delivered", "channel_status": "delivered", "attempts": 1, "claims": 0,
            "next_attempt_at": at, "claimed_at": at, "channel_message_id": f"SMhistreply{person_id}",
            "last_error": None, "written_at": at, "created_at": at, "sent_at": at, "status_at": at, "noted_at": None}
