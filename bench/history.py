"""A state store holding N interactions of history, shaped like crmhub's own output.

For each interaction: a processed ledger row (an inbound SMS, Twilio's raw
payload), its routing decision and one done outbox row per CRM. Per
customer (one in five interactions): a person and phone identity, one
conversation with a thread per CRM (two in three closed, some on their
second or third case), a CRM link and a mirrored contact per CRM. Written
with crmhub's schema through SQLAlchemy Core executemany, in chunks.

The history's customers live in the 646 area code and its record ids in
ranges the emulators never hand out, so the warm cycle's traffic (415-555
numbers, records the emulators hold) never touches it: it only has to be
there, as it is in a store that has run for months.

SQLite stores are cached under `.bench-cache/`, keyed by size, the schema's
head revision and this generator's version; PostgreSQL ones are built into
a database the caller made (`--url`).

    .venv/bin/python bench/history.py --size 100000              # the cached SQLite file (built if missing)
    .venv/bin/python bench/history.py --size 10000 --url postgresql+psycopg://postgres@127.0.0.1/crmhub_bench_1
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, text

from crmhub.store import open_store
from crmhub.store.migrate import head_revision
from crmhub.store.schema import (CrmLinkRow, IdentityRow, LedgerRow, MirrorIdentityRow, MirrorRow, OutboxRow,
                                 PersonRow, RouteDecisionRow, ThreadRow)

VERSION = 1  # bump when the generated shape changes, so cached stores are rebuilt
CACHE = Path(__file__).resolve().parent.parent / ".bench-cache"
CHUNK = 5_000  # interactions per executemany round
PER_PERSON = 5  # interactions per customer
OURS = "+14155550100"
ACCOUNT = "ACcafe0000000000000000000000000001"
CRMS = ("salesforce", "zendesk", "hubspot")
CONTACT_OBJECT = {"salesforce": "Contact", "zendesk": "user", "hubspot": "contacts"}
DEFAULT_TARGETS = {"salesforce": {"queue": "support", "priority": None, "tags": []},
                   "zendesk": {"queue": "support", "priority": None, "tags": []},
                   "hubspot": {"queue": "support", "priority": None, "tags": []}}
TRIED = [["billing", "text does not match /(?i)\\b(refunds?|chargebacks?|invoices?|billing)\\b/"],
         ["vip-customers", "contact Tier__c is 'Standard', not 'Gold'"],
         ["x-mentions", "channel sms not in ['x_mention']"]]


def cached_path(size: int) -> Path:
    return CACHE / f"history-{size}-{head_revision()}-v{VERSION}.db"


def sqlite_history(size: int) -> Path:
    """The cached SQLite store of `size` interactions, built first when missing."""
    path = cached_path(size)
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        partial = path.with_suffix(".partial")
        for leftover in CACHE.glob(partial.name + "*"):
            leftover.unlink()
        build(f"sqlite:///{partial}", size)
        partial.rename(path)
    return path


def build(url: str, size: int) -> None:
    """Write `size` interactions of history into the (empty) store at `url`, migrating it first."""
    store = open_store(url)
    now = datetime.now(UTC)
    with store.engine.begin() as connection:
        if store.dialect == "sqlite":  # a throwaway file until it is complete: no journal, no syncs
            connection.exec_driver_sql("PRAGMA journal_mode=OFF")
            connection.exec_driver_sql("PRAGMA synchronous=OFF")
        for chunk in _chunks(size, now):
            for table, rows in chunk.items():
                if rows:
                    connection.execute(table.insert(), rows)
        if store.dialect == "postgresql":  # explicit ids leave the sequences behind
            for table in (PersonRow, IdentityRow, LedgerRow, OutboxRow, ThreadRow, CrmLinkRow, MirrorRow,
                          MirrorIdentityRow):
                name = table.__tablename__
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                        f"(SELECT max(id) FROM {name}))"))
    store.close()


def _chunks(size: int, now: datetime) -> Iterator[dict[Table, list[dict[str, Any]]]]:
    for start in range(0, size, CHUNK):
        yield _rows(range(start, min(size, start + CHUNK)), size, now)


def _table(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]  # every mapped class has its Table


def _rows(interactions: range, size: int, now: datetime) -> dict[Table, list[dict[str, Any]]]:
    """The rows of the interactions `interactions`, and of the customers whose first interaction is among them."""
    persons = max(1, size // PER_PERSON)
    since = now - timedelta(days=90)
    out: dict[Table, list[dict[str, Any]]] = {_table(m): [] for m in (
        PersonRow, IdentityRow, CrmLinkRow, MirrorRow, MirrorIdentityRow, ThreadRow, LedgerRow, RouteDecisionRow,
        OutboxRow)}
    for i in interactions:
        if i < persons:
            _customer(out, i + 1, since)
        _interaction(out, i + 1, (i % persons) + 1, since + timedelta(seconds=7 * i), now)
    return out


def _phone(person: int) -> str:
    return f"+1646{2_000_000 + person:07d}"


def _record(crm: str, kind: str, person: int) -> str:
    """A record id in a range the emulators never hand out (their ids count up from small numbers)."""
    if crm == "salesforce":
        return f"{'003' if kind == 'contact' else '500'}Hb{person:010d}AAA"
    base = {"contact": 9_000_000_000, "case": 8_000_000_000}[kind]
    return str(base + person)


def _customer(out: dict[Table, list[dict[str, Any]]], person: int, since: datetime) -> None:
    phone, created = _phone(person), since + timedelta(seconds=35 * (person - 1))
    out[_table(PersonRow)].append({"id": person, "created_at": created, "merged_into": None})
    out[_table(IdentityRow)].append({"id": person, "kind": "phone", "value": phone, "display": phone,
                                     "person_id": person})
    conversation = f"sms:{OURS}:{phone}"
    closed = person % 3 != 0
    for n, crm in enumerate(CRMS):
        row_id = 3 * (person - 1) + n + 1
        record = _record(crm, "contact", person)
        out[_table(CrmLinkRow)].append({"id": row_id, "person_id": person, "crm": crm,
                                        "object_type": CONTACT_OBJECT[crm], "record_id": record,
                                        "created_at": created, "preferred": False})
        fields = {"Tier__c": "Gold" if person % 7 == 0 else "Standard"} if crm == "salesforce" else {}
        out[_table(MirrorRow)].append({"id": row_id, "crm": crm, "object_type": CONTACT_OBJECT[crm],
                                       "record_id": record, "fields": fields, "created_at": created,
                                       "modified_at": created})
        out[_table(MirrorIdentityRow)].append({"id": row_id, "mirror_id": row_id, "crm": crm, "kind": "phone",
                                               "value": phone})
        out[_table(ThreadRow)].append({
            "id": row_id, "crm": crm, "conversation_key": conversation, "seq": 1 + person % 3,
            "record_id": _record(crm, "case", person), "queue": "support", "opened_at": created,
            "closed_at": created + timedelta(days=2) if closed else None, "closed_final": closed and person % 5 == 0,
            "state_at": created + timedelta(days=2) if closed else None})


def _interaction(out: dict[Table, list[dict[str, Any]]], row_id: int, person: int, at: datetime,
                 now: datetime) -> None:
    phone, sid = _phone(person), f"SM{uuid.UUID(int=row_id).hex}"
    stamp = at.isoformat(timespec="seconds")
    out[_table(LedgerRow)].append({
        "id": row_id, "channel": "sms", "external_id": sid, "direction": "inbound",
        "conversation_key": f"sms:{OURS}:{phone}", "sender_kind": "phone", "sender_value": phone,
        "sender_display": phone, "recipient_kind": "phone", "recipient_value": OURS, "recipient_display": OURS,
        "text": "Where is my order?", "media": [], "call": None, "occurred_at": at,
        "raw": {"sid": sid, "account_sid": ACCOUNT, "from": phone, "to": OURS, "body": "Where is my order?",
                "direction": "inbound", "status": "received", "num_media": "0", "num_segments": "1",
                "error_code": None, "messaging_service_sid": None, "date_sent": stamp, "date_created": stamp,
                "date_updated": stamp},
        "person_id": person, "ingested_at": at, "processed_at": at})
    out[_table(RouteDecisionRow)].append({"interaction_id": row_id, "rule": "default", "targets": DEFAULT_TARGETS,
                                          "tried": TRIED, "decided_at": at})
    for n, crm in enumerate(CRMS):
        out[_table(OutboxRow)].append({
            "id": 3 * (row_id - 1) + n + 1, "idempotency_key": f"sms:{sid}", "interaction_id": row_id, "crm": crm,
            "status": "done", "priority": 1 if row_id <= person else 2, "attempts": 1, "claims": 0,
            "next_attempt_at": at, "last_error": None, "result_ref": f"{row_id}", "contact_ref":
            _record(crm, "contact", person), "relink": False, "created_at": at, "done_at": at})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, required=True, help="interactions of history")
    parser.add_argument("--url", help="build into this (empty) store instead of the SQLite cache")
    args = parser.parse_args()
    began = time.perf_counter()
    where = args.url or str(sqlite_history(args.size))
    if args.url:
        build(args.url, args.size)
    print(f"history of {args.size} interactions in {where} ({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
