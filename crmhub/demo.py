"""`crmhub demo`: the whole path on the sandbox, with nothing to set up.

Starts the emulators on free ports, seeds a small Salesforce org and a
Twilio account with customer messages, writes a settings file pointing at
them, runs one sync cycle (then a second, to show nothing is written
twice), and prints what landed where, read back from the emulated CRM.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.runner import running_sandbox
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.status import print_cycle

DEMO_DIR = Path(".crmhub/demo")
OUR_NUMBER = "+14155550100"
OUR_WHATSAPP = "+14155550199"

CONTACTS: tuple[dict[str, Any], ...] = (
    {"sobject": "Contact", "FirstName": "Jane", "LastName": "Doe", "Phone": "(415) 555-0123", "Tier__c": "Gold",
     "Email": "jane.doe@example.com"},
    {"sobject": "Contact", "FirstName": "Bob", "LastName": "Lee", "MobilePhone": "+1 415.555.0124"},
    {"sobject": "Lead", "FirstName": "Ana", "LastName": "Ruiz", "Phone": "415 555 0126", "Company": "Ruiz SL"},
)
# (from, to, body, minutes after the first message)
MESSAGES: tuple[tuple[str, str, str, int], ...] = (
    ("+14155550123", OUR_NUMBER, "Hi, my order #1234 hasn't arrived yet", 0),
    ("+14155550124", OUR_NUMBER, "I was charged twice, I need a refund", 3),
    ("+14155550125", OUR_NUMBER, "Hello, do you ship to Canada?", 5),
    ("whatsapp:+14155550126", f"whatsapp:{OUR_WHATSAPP}", "Hola, ¿tienen tienda en Madrid?", 8),
    ("+14155550123", OUR_NUMBER, "Any update on my order?", 42),
    ("+14155550127", OUR_NUMBER, "", 50),  # no text, no media: dead-lettered with the reason
)


def seed(servers: Mapping[str, EmulatorServer], start: datetime) -> None:
    """A small org (three queues, two contacts, a lead) and six inbound messages."""
    salesforce = servers["salesforce"].emulator
    for developer_name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        salesforce.add_queue(developer_name.replace("_", " "), developer_name)  # type: ignore[attr-defined]
    for contact in CONTACTS:
        fields = dict(contact)
        salesforce.insert(fields.pop("sobject"), **fields)  # type: ignore[attr-defined]
    twilio = servers["twilio"].emulator
    twilio.add_number(OUR_NUMBER)  # type: ignore[attr-defined]
    twilio.add_number(OUR_WHATSAPP)  # type: ignore[attr-defined]  # WhatsApp senders are numbers too
    for sender, to, body, minutes in MESSAGES:
        twilio.receive_message(sender, to, body, at=start + timedelta(minutes=minutes))  # type: ignore[attr-defined]


def run_demo(*, keep_state: bool = False, directory: Path = DEMO_DIR, console: Console | None = None) -> None:
    console = console or Console()
    db = directory / "crmhub.db"
    if not keep_state:
        for stale in directory.glob("crmhub.db*"):
            stale.unlink()
    with running_sandbox(apis=("salesforce", "twilio")) as servers:
        seed(servers, datetime.now(UTC) - timedelta(hours=1))
        urls = {api: server.url for api, server in servers.items()}
        settings = write_sandbox_settings(directory, urls)
        console.rule("[bold]crmhub demo[/]: Twilio SMS/WhatsApp -> Salesforce, on the local sandbox")
        console.print(f"sandbox: {', '.join(f'{api} {url}' for api, url in urls.items())}")
        console.print(f"settings: {settings}   state: {db}\n")
        config = load_config(settings)
        with build_hub(config) as hub:
            console.print("[bold]First sync[/]")
            print_cycle(hub.sync_once(), console)
            console.print("\n[bold]Second sync of the same messages[/] (nothing may be written twice)")
            print_cycle(hub.sync_once(), console)
        console.print()
        console.print(landed_table(servers["salesforce"].emulator))
        calls = servers["salesforce"].emulator.total_calls + servers["twilio"].emulator.total_calls
        console.print(f"\nAPI calls used: salesforce {servers['salesforce'].emulator.total_calls}, "
                      f"twilio {servers['twilio'].emulator.total_calls} (total {calls})")
    console.print("\n[bold]Where to look next[/]")
    console.print(f"  crmhub status --config {settings}      cursors, ledger, outbox, dead letters")
    console.print(f"  crmhub validate --config {settings}    check an edited settings file or mapping")
    console.print("  crmhub sandbox                         run the emulators on 8700-8704 to explore")
    console.print("  docs/configuration.md, README.md       every setting; how to run it as a service")


def landed_table(salesforce: Any) -> Table:
    """Every Task in the emulated org, with its contact, case and the case's queue."""
    records = {r["Id"]: r for kind in ("Contact", "Lead", "Case", "Group")
               for r in salesforce.records(kind)}
    table = Table(title="What the emulated Salesforce now holds")
    for column in ("Task (history)", "on record", "Case", "Case owner (queue)"):
        table.add_column(column)
    for task in sorted(salesforce.records("Task"), key=lambda t: t["CreatedDate"]):
        who = records.get(task.get("WhoId") or "", {})
        case = records.get(task.get("WhatId") or "", {})
        owner = records.get(case.get("OwnerId") or "", {})
        who_name = " ".join(filter(None, (who.get("FirstName"), who.get("LastName")))) or "-"
        table.add_row(task.get("Subject") or "", f"{who_name} ({who.get('attributes', {}).get('type', _kind(who))})",
                      case.get("CaseNumber", "-"), owner.get("Name", "-"))
    return table


def _kind(record: Mapping[str, Any]) -> str:
    record_id = str(record.get("Id", ""))
    return {"003": "Contact", "00Q": "Lead"}.get(record_id[:3], "?")
