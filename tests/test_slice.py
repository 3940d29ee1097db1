"""The first end-to-end slice: Twilio SMS/WhatsApp -> Salesforce Tasks and Cases, through the real SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings

OURS = "+14155550100"
WHATSAPP = "+14155550199"
START = datetime.now(UTC) - timedelta(hours=2)


@pytest.fixture
def org(salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer) -> dict[str, str]:
    """Queues and contacts as an admin would have them, phones in the CRM's own messy formats."""
    sf: Any = salesforce_sandbox.emulator
    ids = {name: sf.add_queue(name.replace("_", " "), name) for name in ("Support_Queue", "Billing_Queue",
                                                                       "VIP_Queue")}
    ids["jane"] = sf.insert("Contact", FirstName="Jane", LastName="Doe", Phone="(415) 555-0123", Tier__c="Gold")
    ids["bob"] = sf.insert("Contact", FirstName="Bob", LastName="Lee", MobilePhone="+1 415.555.0124")
    ids["ana"] = sf.insert("Lead", FirstName="Ana", LastName="Ruiz", Phone="415 555 0126", Company="Ruiz SL")
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    tw.add_number(WHATSAPP)
    for sender, to, body, minutes in (
        ("+14155550123", OURS, "Hi, my order hasn't arrived", 0),
        ("+14155550124", OURS, "I was charged twice, I need a refund", 3),
        ("+14155550125", OURS, "Do you ship to Canada?", 5),
        ("whatsapp:+14155550126", f"whatsapp:{WHATSAPP}", "Hola, ¿tienen tienda en Madrid?", 8),
        ("+14155550123", OURS, "Any update?", 40),
        ("+14155550127", OURS, "", 50),
    ):
        tw.receive_message(sender, to, body, at=START + timedelta(minutes=minutes))
    return ids


@pytest.fixture
def hub(org: dict[str, str], salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
        tmp_path: Path) -> Iterator[Hub]:
    urls = {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls)
    with build_hub(load_config(settings)) as built:
        yield built


def tasks_by_body(sf: Any) -> dict[str, dict[str, Any]]:
    return {t["Description"]: t for t in sf.records("Task")}


def test_each_message_lands_as_a_task_on_the_matched_record_threaded_into_a_routed_case(
        hub: Hub, org: dict[str, str], salesforce_sandbox: EmulatorServer) -> None:
    hub.sync_once()
    sf: Any = salesforce_sandbox.emulator
    tasks = tasks_by_body(sf)
    assert set(tasks) == {"Hi, my order hasn't arrived", "I was charged twice, I need a refund",
                          "Do you ship to Canada?", "Hola, ¿tienen tienda en Madrid?", "Any update?"}
    cases = {c["Id"]: c for c in sf.records("Case")}

    first, follow_up = tasks["Hi, my order hasn't arrived"], tasks["Any update?"]
    assert first["WhoId"] == follow_up["WhoId"] == org["jane"]  # (415) 555-0123 matched +14155550123
    assert first["WhatId"] == follow_up["WhatId"]  # the follow-up threads into the open case
    assert cases[first["WhatId"]]["OwnerId"] == org["VIP_Queue"]  # Tier__c Gold -> vip rule
    assert cases[first["WhatId"]]["ContactId"] == org["jane"]

    refund = tasks["I was charged twice, I need a refund"]
    assert refund["WhoId"] == org["bob"]
    assert cases[refund["WhatId"]]["OwnerId"] == org["Billing_Queue"]

    whatsapp = tasks["Hola, ¿tienen tienda en Madrid?"]
    assert whatsapp["WhoId"] == org["ana"]  # a Lead matches too
    assert cases[whatsapp["WhatId"]]["OwnerId"] == org["Support_Queue"]

    stranger = tasks["Do you ship to Canada?"]
    [created] = [c for c in sf.records("Contact") if c["Id"] == stranger["WhoId"]]
    assert created["Phone"] == "+14155550125"  # no match: a Contact is created, as identities.yaml says

    assert len(cases) == 4
    assert all(t["Crmhub_Key__c"].startswith(("sms:SM", "whatsapp:SM")) for t in tasks.values())
    assert {t["TaskSubtype"] for t in tasks.values()} == {"Task"}


def test_a_second_sync_of_the_same_messages_creates_nothing(
        hub: Hub, salesforce_sandbox: EmulatorServer) -> None:
    sf: Any = salesforce_sandbox.emulator
    hub.sync_once()
    before = {kind: len(sf.records(kind)) for kind in ("Task", "Case", "Contact")}
    hub.store.close()
    # a second sync, also after a restart that forgot every cursor: the ledger and the upserts hold
    with hub.store.transaction() as session:
        from crmhub.store.schema import CursorRow
        session.query(CursorRow).delete()
    second = hub.sync_once()
    assert second.polls[0].stored == 0 and second.processed == 0
    assert {kind: len(sf.records(kind)) for kind in ("Task", "Case", "Contact")} == before == {
        "Task": 5, "Case": 4, "Contact": 3}


def test_an_empty_message_is_dead_lettered_and_the_rest_goes_through(
        hub: Hub, tmp_path: Path) -> None:
    cycle = hub.sync_once()
    assert (cycle.polls[0].stored, cycle.polls[0].dead_lettered) == (5, 1)
    result = CliRunner().invoke(app, ["status", "--config", str(tmp_path / "settings.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    assert '"dead_letters": 1' in result.output
    assert '"sms": 4' in result.output and '"whatsapp": 1' in result.output


def test_an_undeclared_queue_in_the_org_is_a_dead_letter_naming_it(
        hub: Hub, salesforce_sandbox: EmulatorServer, org: dict[str, str]) -> None:
    sf: Any = salesforce_sandbox.emulator
    sf.delete("Group", org["Billing_Queue"])
    cycle = hub.sync_once()
    assert cycle.deliveries[0].dead == 1
    with hub.store.transaction() as session:
        from crmhub.store.ledger import open_dead_letters
        reasons = [d.reason for d in open_dead_letters(session) if d.source == "deliver:salesforce"]
    assert len(reasons) == 1 and "queue 'Billing_Queue' (routing name 'billing') does not exist" in reasons[0]


def test_a_queue_created_after_the_failure_is_found_without_a_restart(
        hub: Hub, salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, org: dict[str, str]) -> None:
    sf: Any = salesforce_sandbox.emulator
    sf.delete("Group", org["Billing_Queue"])
    assert hub.sync_once().deliveries[0].dead == 1
    billing = sf.add_queue("Billing Queue", "Billing_Queue")
    tw: Any = twilio_sandbox.emulator
    tw.receive_message("+14155550124", OURS, "Still waiting for my refund", at=START + timedelta(minutes=60))
    assert hub.sync_once().deliveries[0].delivered == 1  # same hub: the queue list was read again
    [task] = [t for t in sf.records("Task") if t["Description"] == "Still waiting for my refund"]
    assert {c["Id"]: c for c in sf.records("Case")}[task["WhatId"]]["OwnerId"] == billing


def test_nothing_is_routed_before_the_contact_mirror_has_loaded_once(
        hub: Hub, salesforce_sandbox: EmulatorServer, org: dict[str, str]) -> None:
    sf: Any = salesforce_sandbox.emulator
    sf.faults.add(Fault("server_error", path="/query", times=None, status=400))  # a failure not worth retrying
    first = hub.sync_once()
    assert any("waiting for a first full contact mirror of salesforce" in f for f in first.failures)
    assert sf.records("Task") == [] and len(sf.records("Contact")) == 2  # no duplicate of Jane or Bob
    sf.faults.clear()
    hub.sync_once()
    assert {t["Description"]: t["WhoId"] for t in sf.records("Task")}["Any update?"] == org["jane"]


def test_a_contact_create_whose_answer_was_lost_is_not_created_twice(
        hub: Hub, org: dict[str, str], salesforce_sandbox: EmulatorServer) -> None:
    sf: Any = salesforce_sandbox.emulator
    # The unknown sender's Contact: Salesforce creates it, and the answer is lost on the way back.
    sf.faults.add(Fault("reset", path="/composite$", after=True, times=1))  # the first write: contact, Case, Task
    cycle = hub.sync_once()
    assert not cycle.failures, cycle.failures
    created = [c for c in sf.records("Contact") if c["Id"] not in org.values()]
    assert [c["Phone"] for c in created] == ["+14155550125"]  # one Contact, not one per attempt
    [task] = [t for t in sf.records("Task") if t["Description"] == "Do you ship to Canada?"]
    assert task["WhoId"] == created[0]["Id"]
