"""Every statement of a sync cycle reaches the hot tables through an index, never by scanning them.

A cycle's cost must not grow with the history the store holds (DESIGN.md,
"Cost is flat in history"), so no statement of the hot path may read a
whole hot table. The statements are not listed here: the test seeds a store
with a few thousand interactions of history, runs real cycles against the
emulators (poll, mirror refresh, routing, delivery to all three CRMs, an
agent's reply collected and sent), records every statement the engine
executed, and asks the database for each one's plan. Whatever the engine
executes tomorrow is checked the same way.

SQLite: an `EXPLAIN QUERY PLAN` row `SCAN <hot table>` fails, with or
without `USING [COVERING] INDEX` (a walk of a whole index costs as much),
unless the index is partial (it holds only the rows the query wants).
PostgreSQL: the same statements under `SET enable_seqscan = off` must show
no `Seq Scan` on a hot table (only a missing index leaves one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.history import seed_history
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store import open_store

HOT = frozenset({"ledger", "outbox", "threads", "identities", "crm_links", "mirror", "mirror_identities",
                 "route_decisions", "replies", "persons"})
CRMS = ("salesforce", "zendesk", "hubspot")
OURS = "+14155550100"
HISTORY = 3_000
# Columns with a handful of values: an index lookup bound on these alone reads a slice that grows with
# history (every done row of a CRM), as costly as a scan. A partial index (e.g. pending rows only) is fine.
COARSE = frozenset({"crm", "status", "kind", "channel", "direction", "priority", "object_type"})
# ...unless the status it binds is an open one: pending and in-flight rows are the backlog, not the history.
OPEN_STATES = frozenset({"pending", "sending"})
CLOSED_STATES = frozenset({"done", "dead", "sent", "delivered", "failed", "read", "undelivered"})

# Statements allowed to read a whole hot table, because they are not per-item work of the hot path.
# Each entry: a pattern of the statement's SQL, and why.
ALLOWED: tuple[tuple[str, str], ...] = (
    # Metrics and `crmhub status`: counts per status, run once per cycle, never per item.
    (r"^SELECT outbox\.crm, outbox\.status, count\(\*\)", "outbox counts per CRM and status, for metrics"),
    (r"^SELECT ledger\.channel, count\(\*\)", "ledger counts per channel, for metrics"),
    (r"^SELECT replies\.crm, replies\.channel, replies\.status, count\(\*\)", "reply counts, for metrics"),
    # Where a CRM's first reply read starts: min() along ix_threads_opened (crm, opened_at) reads one entry,
    # and it runs only until that CRM's reply cursor exists.
    (r"^SELECT min\(threads\.opened_at\)", "first reply read only; one index entry"),
)


@dataclass(frozen=True)
class Executed:
    """A statement as the driver received it, with its parameters (to EXPLAIN it the same way)."""

    sql: str
    parameters: Any


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new store: a SQLite file, then a PostgreSQL database of the test's own (skipped when absent)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return str(request.getfixturevalue("fresh_postgres_url"))


def test_no_hot_path_statement_scans_a_hot_table(state_url: str, salesforce_sandbox: EmulatorServer,
                                                  zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
                                                  twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    hs: Any = hubspot_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.insert("Contact", LastName="Known", Phone="(415) 555-0123")
    zd.add_user(name="Known", phone="+1 415 555 0123")
    alice = zd.add_agent("alice@acme.test", "Alice")  # an agent other than crmhub's API user
    hs.add("contacts", lastname="Known", mobilephone="415.555.0123")
    zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute's changes
    tw.add_number(OURS)
    start = datetime.now(UTC) - timedelta(hours=1)
    for n, customer in enumerate(("+14155550123", "+14155550124", "+14155550125")):
        tw.receive_message(customer, OURS, "My parcel is late", at=start + timedelta(minutes=n))
        tw.receive_message(customer, OURS, "Any news?", at=start + timedelta(minutes=10 + n))

    seeded = open_store(state_url)
    seed_history(seeded.engine, HISTORY, CRMS)
    seeded.close()
    urls = {api: server.url for api, server in (("salesforce", salesforce_sandbox), ("zendesk", zendesk_sandbox),
                                                ("hubspot", hubspot_sandbox), ("twilio", twilio_sandbox))}
    settings = write_sandbox_settings(tmp_path, urls, state_url=state_url, enabled=(*CRMS, "twilio"))
    with build_hub(load_config(settings)) as hub:
        with recorded(hub.store.engine) as executed:
            first = hub.sync_once()
            [ticket] = [t for t in zd.tickets() if "+14155550123" in str(t.get("external_id"))] or zd.tickets()[:1]
            zd.add_agent_comment(ticket["id"], "We are on it", author_id=alice)
            # One Salesforce contact holding two customers' phones: their persons merge (and backfill).
            sf.insert("Contact", LastName="Both", Phone="+14155550124", MobilePhone="+14155550125")
            zd.clock.advance(120)
            tw.receive_message("+14155550123", OURS, "Thanks, my email is jane@example.com",
                               at=start + timedelta(minutes=30))  # a claim: statements are read too
            hub.sync_once()
            last = hub.sync_once()
        assert not first.failures and not last.failures, (first.failures, last.failures)
        assert len(sf.records("Task")) >= 6  # the cycles did deliver: their statements are the hot path
        assert len(zd.tickets()) >= 3 and hs.objects("tickets")
        assert any(m["body"] == "We are on it" and m["direction"] == "outbound-api"
                   for m in tw.snapshot()["messages"].values()), "the agent's reply was not sent"

        statements = _distinct(executed)
        touched = {table for s in statements for table in HOT if re.search(rf"\b{table}\b", s.sql)}
        assert touched == HOT, f"the cycles never touched {sorted(HOT - touched)}: the test would miss their scans"
        with hub.store.engine.connect() as connection:
            plan = _sqlite_scans if connection.dialect.name == "sqlite" else _postgres_scans
            partial = _partial_indexes(connection)
            scans = [f"{s.sql}\n    parameters {s.parameters!r}\n    -> {'; '.join(found)}"
                     for s in statements if not _allowed(s.sql)
                     for found in [plan(connection, s, partial)] if found]
    assert not scans, f"{len(scans)} statements scan a hot table:\n\n" + "\n\n".join(scans)


@contextmanager
def recorded(engine: Engine) -> Iterator[list[Executed]]:
    """Every single-row SELECT, UPDATE and DELETE `engine` executes in the block, with its parameters."""
    executed: list[Executed] = []

    def record(connection: Connection, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        if not executemany and statement.lstrip().split(" ", 1)[0].upper() in ("SELECT", "UPDATE", "DELETE", "WITH"):
            executed.append(Executed(statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _distinct(executed: list[Executed]) -> list[Executed]:
    """One of each statement text (its first parameters), in order of first execution."""
    return list({e.sql: e for e in reversed(executed)}.values())[::-1]


def _allowed(sql: str) -> bool:
    return any(re.search(pattern, sql.strip()) for pattern, _why in ALLOWED)


def _partial_indexes(connection: Connection) -> set[str]:
    """Indexes holding only some rows (a WHERE clause): walking one reads only what the query wants."""
    if connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexdef LIKE '%% WHERE %%'"
    return set(connection.exec_driver_sql(query).scalars())


SQLITE_SCAN = re.compile(r"^SCAN (\w+)(?: AS \w+)?(?: USING (?:COVERING )?INDEX (\w+))?")
SQLITE_SEARCH = re.compile(r"^SEARCH (\w+)(?: AS \w+)? USING (?:COVERING )?INDEX (\w+) \((.*)\)$")


def _sqlite_scans(connection: Connection, statement: Executed, partial: set[str]) -> list[str]:
    """The plan lines of `statement` reading a whole hot table (or a whole index of one, or building one)."""
    rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement.sql}", statement.parameters).all()
    found = []
    for row in rows:
        detail = str(row[-1])
        scan = SQLITE_SCAN.match(detail)
        automatic = re.match(r"^SEARCH (\w+).*AUTOMATIC", detail)
        search = SQLITE_SEARCH.match(detail)
        if scan and scan.group(1) in HOT and scan.group(2) not in partial:
            found.append(detail)
        elif (search and search.group(1) in HOT and search.group(2) not in partial
              and set(re.findall(r"(\w+)[=<>]", search.group(3))) <= COARSE and not _backlog(statement)):
            found.append(f"{detail} (bound on coarse columns only: a slice as wide as history)")
        elif automatic and automatic.group(1) in HOT:  # a temporary index built by reading the whole table
            found.append(detail)
    return found


def _postgres_scans(connection: Connection, statement: Executed, partial: set[str]) -> list[str]:
    """`Seq Scan`s of hot tables with sequential scans switched off, and index scans with no condition."""
    connection.exec_driver_sql("SET enable_seqscan = off")  # this connection only; it is thrown away after
    [[plan]] = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement.sql}", statement.parameters).all()
    found = []
    for node, table in _nodes(plan[0]["Plan"]):
        kind = node["Node Type"]
        if table not in HOT:
            continue
        if kind == "Seq Scan":
            found.append(f"Seq Scan on {table}")
        elif kind in ("Index Scan", "Index Only Scan", "Bitmap Index Scan") and node.get("Index Name") not in partial:
            bound = set(re.findall(r"\((\w+)\)?(?:::[\w ]+)?\)? (?:=|<|>|<=|>=) ", node.get("Index Cond", "")))
            if bound <= COARSE and not _backlog(statement):
                found.append(f"{kind} using {node.get('Index Name')} on {table}, condition "
                             f"{node.get('Index Cond', 'none')!r}: a whole index, or a slice as wide as history")
    return found


def _backlog(statement: Executed) -> bool:
    """Whether the statement asks for open rows only (its status values are all open ones)."""
    values = statement.parameters.values() if isinstance(statement.parameters, dict) else statement.parameters
    states = {v for v in values or () if isinstance(v, str) and v in OPEN_STATES | CLOSED_STATES}
    return bool(states) and states <= OPEN_STATES


def _nodes(node: dict[str, Any], table: str | None = None) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Each plan node with the table it reads (a bitmap index scan reads its parent heap scan's)."""
    table = node.get("Relation Name", table if node["Node Type"] == "Bitmap Index Scan" else None)
    yield node, table
    for child in node.get("Plans", ()):
        yield from _nodes(child, table)
