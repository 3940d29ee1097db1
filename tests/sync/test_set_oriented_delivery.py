"""Delivery is set-oriented: the SQL statements of a batch do not grow with the batch (issue 13).

Counted with SQLAlchemy's `before_cursor_execute` on the delivering thread,
while the real Salesforce connector writes the batch to the emulator: a
batch of 200 rows costs the same handful of statements as one of 20.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sync.deliver import deliver
from crmhub.sync.process import process_pending

OURS = "+14155550100"
START = datetime.now(UTC) - timedelta(hours=3)


def _statements_to_deliver(messages: int, salesforce: EmulatorServer, twilio: EmulatorServer, directory: Path
                           ) -> tuple[int, int]:
    """Route `messages` SMS (a known contact, a new customer, a follow-up: in equal parts), then deliver them
    in one batch; returns (SQL statements delivery issued, Tasks in the org)."""
    sf: Any = salesforce.emulator
    sf.set_api_limit(1_000_000)
    sf.add_queue("Support Queue", "Support_Queue")
    tw: Any = twilio.emulator
    tw.add_number(OURS)
    for i in range(messages):
        customer = 5000 + i // 3  # each customer sends three messages: one conversation, one case
        if i % 3 == 0 and customer % 2 == 0:  # half of them are contacts already, half get created
            sf.insert("Contact", LastName=f"Customer {customer}", Phone=f"(415) 555-{customer:04d}")
        tw.receive_message(f"+1415555{customer:04d}", OURS, f"message {i}", at=START + timedelta(seconds=10 * i))
    settings = write_sandbox_settings(directory, {"salesforce": salesforce.url, "twilio": twilio.url})
    with build_hub(load_config(settings)) as hub:
        for poll in hub.polls().values():
            poll()
        hub.refresh_mirror("salesforce")
        process_pending(hub.store, hub.router, ["salesforce"], now=hub.clock(), identity=hub.identity,
                        reopen_window=hub.config.settings.threads.reopen_window)
        policy = dataclasses.replace(hub.policies["salesforce"], batch_size=messages)
        me, statements = threading.get_ident(), [0]

        def count(*_: Any) -> None:
            if threading.get_ident() == me:
                statements[0] += 1

        event.listen(hub.store.engine, "before_cursor_execute", count)
        report = deliver(hub.store, hub.crms["salesforce"], policy, now=hub.clock(), clock=hub.clock)
        event.remove(hub.store.engine, "before_cursor_execute", count)
    assert (report.delivered, report.dead, report.retrying) == (messages, 0, 0)
    return statements[0], len(sf.records("Task"))


def test_a_batch_of_200_costs_the_statements_of_a_batch_of_20(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    small, small_tasks = _statements_to_deliver(20, salesforce_sandbox, twilio_sandbox, tmp_path / "small")
    salesforce_sandbox.emulator.reset()
    twilio_sandbox.emulator.reset()
    large, large_tasks = _statements_to_deliver(200, salesforce_sandbox, twilio_sandbox, tmp_path / "large")
    assert (small_tasks, large_tasks) == (20, 200)
    assert large == small  # nothing per row
    assert large <= 24  # claim, prepare (contacts, their keys, threads, the adoption horizon), record: a handful
