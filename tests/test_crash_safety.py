"""`crmhub run` SIGKILLed at random moments while it delivers, restarted, again and again.

Nothing may be doubled in the CRM: every message is exactly one Task, every
Task sits on the single Case of its conversation, and no conversation has two
Cases. Duplicate Contacts for unknown senders are a known limitation
(docs/roadmap.md), so they are measured and reported, not asserted.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store import open_store
from crmhub.store.outbox import outbox_counts

OURS = "+14155550100"
KNOWN = [f"+1415555{1000 + n}" for n in range(40)]  # Contacts in the org
UNKNOWN = [f"+1415555{2000 + n}" for n in range(5)]  # nobody in the org: crmhub creates their Contact
MESSAGES = 120
KILLS = 10
SEED = 7


def _seed(sf: Any, tw: Any) -> dict[str, str]:
    """Queues, 40 contacts, 120 inbound SMS; returns body -> sender (bodies are unique)."""
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name.replace("_", " "), name)
    for n, phone in enumerate(KNOWN):
        sf.insert("Contact", FirstName="Known", LastName=f"Person{n}", Phone=phone)
    tw.add_number(OURS)
    rng = random.Random(SEED)
    senders = KNOWN + UNKNOWN
    start = datetime.now(UTC) - timedelta(minutes=30)
    bodies: dict[str, str] = {}
    for n in range(MESSAGES):
        sender = UNKNOWN[n % len(UNKNOWN)] if n % 8 == 0 else rng.choice(senders)
        body = f"message {n:03d}: where is my order?"
        tw.receive_message(sender, OURS, body, at=start + timedelta(seconds=10 * n))
        bodies[body] = sender
    return bodies


def _settings(tmp_path: Path, sf_url: str, tw_url: str) -> Path:
    settings = write_sandbox_settings(tmp_path, {"salesforce": sf_url, "twilio": tw_url}, every="1s")
    yaml = YAML()
    data = yaml.load(settings.read_text())
    data["delivery"]["batch_size"] = 5
    data["delivery"]["lease"] = "3s"  # a killed daemon's claimed rows come due again after this
    with settings.open("w") as out:
        yaml.dump(data, out)
    return settings


def _pending(db_url: str) -> int:
    store = open_store(db_url, migrate_schema=False)
    try:
        with store.transaction() as session:
            return sum(n for (_, status), n in outbox_counts(session).items() if status == "pending")
    finally:
        store.close()


def _start(settings: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "crmhub", "run", "--config", str(settings)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(condition: Any, deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)  # polling with a deadline
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigkill_in_a_loop_doubles_nothing_in_salesforce(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    bodies = _seed(sf, tw)
    contacts_before = len(sf.records("Contact"))
    # Each sObject Collections call takes 0.1 s, so a kill often lands mid-call, between the
    # contact create, the case upsert and the task upsert of one batch.
    sf.faults.add(Fault(kind="slow", path="/composite/sobjects", times=None, delay=0.1))
    settings = _settings(tmp_path, salesforce_sandbox.url, twilio_sandbox.url)
    db_url = f"sqlite:///{(tmp_path / 'crmhub.db').resolve()}"
    rng = random.Random(SEED)
    kills, tasks_at_kill = 0, []
    started = time.monotonic()
    for _ in range(KILLS):
        if len(sf.records("Task")) >= MESSAGES:
            break
        calls = sf.total_calls
        process = _start(settings)
        try:
            _wait(lambda: sf.total_calls > calls or process.poll() is not None, 30, "the daemon's first call")
            assert process.poll() is None, process.communicate()[1]
            time.sleep(rng.uniform(0.2, 1.5))  # a random moment while it logs in, mirrors or delivers
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            kills += 1
            tasks_at_kill.append(len(sf.records("Task")))
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()
    process = _start(settings)
    try:
        _wait(lambda: len(sf.records("Task")) >= MESSAGES and _pending(db_url) == 0, 60, "the outbox to drain")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate()
    elapsed = time.monotonic() - started

    tasks = sf.records("Task")
    cases = {c["Id"]: c for c in sf.records("Case")}
    by_key = Counter(t["Crmhub_Key__c"] for t in tasks)
    by_body = Counter(t["Description"] for t in tasks)
    assert len(tasks) == MESSAGES
    assert set(by_body) == set(bodies) and max(by_body.values()) == 1  # every message once, by its text
    assert len(by_key) == MESSAGES and max(by_key.values()) == 1  # and by crmhub's key

    # Conversations (one per sender here): each has one Case, and all its Tasks are on it.
    case_of_conversation: dict[str, set[str]] = defaultdict(set)
    for case in cases.values():
        conversation, _, _seq = case["Crmhub_Conversation__c"].rpartition("#")
        case_of_conversation[conversation].add(case["Id"])
    assert all(len(ids) == 1 for ids in case_of_conversation.values()), case_of_conversation
    whats_of_sender: dict[str, set[str]] = defaultdict(set)
    for task in tasks:
        assert task["WhatId"] in cases, task
        whats_of_sender[bodies[task["Description"]]].add(task["WhatId"])
    assert all(len(whats) == 1 for whats in whats_of_sender.values())
    assert len(cases) == len(whats_of_sender) == len(set(bodies.values()))  # no orphan, no second Case

    # Known limitation (docs/roadmap.md): reported, not asserted.
    phones = Counter(c.get("Phone") for c in sf.records("Contact"))
    duplicates = {phone: n for phone, n in phones.items() if phone in UNKNOWN and n > 1}
    print(f"\ncrash safety: {kills} SIGKILLs (Tasks in Salesforce at each kill: {tasks_at_kill}), "
          f"{elapsed:.1f}s; "
          f"Contacts created {len(sf.records('Contact')) - contacts_before} for {len(UNKNOWN)} unknown senders, "
          f"duplicates: {duplicates or 'none'}; Salesforce calls {sf.total_calls}")
    assert kills >= 3, f"only {kills} kills happened before everything was delivered"
    assert "stopped" in stderr
