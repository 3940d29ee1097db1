"""X mentions and DMs reach the Salesforce contact whose X_Handle__c names the author."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.x.models import DEFAULT_ACCOUNT_ID


def test_mention_and_dm_land_on_the_contact_matched_by_handle(
        salesforce_sandbox: EmulatorServer, x_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    x: Any = x_sandbox.emulator
    queues = {name: sf.add_queue(name, name) for name in ("Support_Queue", "Billing_Queue", "VIP_Queue")}
    jane = sf.insert("Contact", LastName="Doe", X_Handle__c="@JaneDoe")
    author = x.add_user("janedoe", "Jane Doe")
    mention = x.post_mention(author, "where is my order?")
    x.send_dm(author, DEFAULT_ACCOUNT_ID, "my order number is 1234")
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "x": x_sandbox.url},
                                      enabled=("salesforce", "x"))
    with build_hub(load_config(settings)) as hub:
        first = hub.sync_once()
        second = hub.sync_once()
    assert [(p.stream, p.stored) for p in first.polls] == [("mentions", 1), ("dm_events", 1), ("own_posts", 0)]
    assert [p.stored for p in second.polls] == [0, 0, 0]
    tasks = {t["Crmhub_Key__c"]: t for t in sf.records("Task")}
    assert set(tasks) == {f"x_mention:{mention}", *(k for k in tasks if k.startswith("x_dm:"))} and len(tasks) == 2
    assert all(t["WhoId"] == jane for t in tasks.values())
    cases = {c["Id"]: c for c in sf.records("Case")}
    assert cases[tasks[f"x_mention:{mention}"]["WhatId"]]["OwnerId"] == queues["Support_Queue"]  # x-mentions -> social
    assert len(cases) == 2  # a public thread and a DM conversation are different conversations


def test_a_reply_an_agent_posts_in_x_itself_joins_the_case_once(
        salesforce_sandbox: EmulatorServer, x_sandbox: EmulatorServer, tmp_path: Path) -> None:
    """Not every agent answers through the CRM: a reply posted from the support account in X's own app is
    read from our post timeline onto the customer's case; our other posts are not history."""
    sf: Any = salesforce_sandbox.emulator
    x: Any = x_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    jane = sf.insert("Contact", LastName="Doe", X_Handle__c="@JaneDoe")
    author = x.add_user("janedoe", "Jane Doe")
    question = x.post_mention(author, "where is my order?")
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "x": x_sandbox.url},
                                      enabled=("salesforce", "x"))
    with build_hub(load_config(settings)) as hub:
        hub.sync_once()
        answer = x.post(DEFAULT_ACCOUNT_ID, "it ships today, sorry for the wait", in_reply_to=question)
        x.post(DEFAULT_ACCOUNT_ID, "We are open until 8pm today")  # an announcement: no customer's history
        cycle = hub.sync_once()
        hub.sync_once()
    [own] = [p for p in cycle.polls if p.stream == "own_posts"]
    assert (own.stored, own.dead_lettered) == (1, 0)
    tasks = {t["Crmhub_Key__c"]: t for t in sf.records("Task")}
    assert set(tasks) == {f"x_mention:{question}", f"x_mention:{answer}"}  # once, and no announcement
    reply = tasks[f"x_mention:{answer}"]
    assert reply["WhoId"] == jane and reply["WhatId"] == tasks[f"x_mention:{question}"]["WhatId"]
    assert reply["Subject"].startswith("X mention outbound")
