"""`crmhub run` SIGKILLed while it asks the survey questions of closed cases (at observed progress), restarted:
each customer gets exactly one question.

The daemon first opens one case per customer and stops; an agent closes them
all; then the daemon runs again under a kill loop. Every start reads the
closes back (the start-up cycle's case refresh), so kills land while the
questions are queued, sent (each send slowed) or recorded.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store import open_store
from crmhub.store.schema import SurveyRow
from tests.daemons import Daemon, drain_and_stop, kill_loop, tune_settings, wait_for

OURS = "+14155550100"
CUSTOMERS = 16
QUESTION = "How did we do?"


def _questions(tw: Any) -> Counter[str]:
    """Survey questions Twilio sent, per customer."""
    return Counter(m["to"] for m in tw.snapshot()["messages"].values()
                   if m["direction"] == "outbound-api" and QUESTION in m["body"])


@pytest.mark.slow
def test_a_survey_goes_out_once_per_case_under_sigkill(salesforce_sandbox: EmulatorServer,
                                                       twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name.replace("_", " "), name)
    tw.add_number(OURS)
    phones = [f"+1415555{3000 + n}" for n in range(CUSTOMERS)]
    start = datetime.now(UTC) - timedelta(minutes=30)
    for n, phone in enumerate(phones):
        tw.receive_message(phone, OURS, f"customer {n}: where is my order?", at=start + timedelta(seconds=n))
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      every="1s", surveys=True)
    tune_settings(settings, {"run.shutdown_grace": "10s", "delivery.lease": "3s"})
    db_url = f"sqlite:///{(tmp_path / 'crmhub.db').resolve()}"
    daemon = Daemon(settings, tmp_path / "daemon.log")
    try:
        daemon.start()
        wait_for(lambda: len(sf.records("Case")) == CUSTOMERS and daemon.running(), 60, "the cases", [daemon])
        drain_and_stop([daemon], db_url, lambda: True)
        for case in sf.records("Case"):
            sf.update("Case", case["Id"], Status="Closed")  # an agent closes every case
        tw.faults.add(Fault(kind="slow", method="POST", path="Messages.json$", times=None, delay=0.3))
        loop = kill_loop([daemon], kills=5, rng=random.Random(16), progress=lambda: sum(_questions(tw).values()),
                         finished=lambda: len(_questions(tw)) >= CUSTOMERS, total=CUSTOMERS, moment=(0.5, 2.5))
        drain_and_stop([daemon], db_url, lambda: len(_questions(tw)) >= CUSTOMERS)
    finally:
        daemon.ensure_dead()

    assert _questions(tw) == Counter({phone: 1 for phone in phones}), "a customer asked twice, or never"
    store = open_store(db_url, migrate_schema=False)
    try:
        with store.transaction() as session:
            statuses = Counter(status for status in session.query(SurveyRow.status))
    finally:
        store.close()
    assert statuses == Counter({("asked",): CUSTOMERS})
    assert loop.kills >= 2, f"only {loop.kills} kills happened before every question went out"
    print(f"\nsurveys under SIGKILL: {loop.kills} kills, questions sent at each: {loop.progress_at_kill}")
