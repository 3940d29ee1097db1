"""The demo's closing tables, read straight from the emulators (not from crmhub's own state)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from crmhub.sandbox import EmulatorServer

RECORD_KINDS = {"003": "Contact", "00Q": "Lead"}


def landed_table(salesforce: Any) -> Table:
    """Every Task in the emulated org, with its contact, case and the case's queue."""
    records = {r["Id"]: r for kind in ("Contact", "Lead", "Case", "Group") for r in salesforce.records(kind)}
    table = Table(title="Salesforce: history (Tasks), on which record, which Case, which queue")
    for column in ("Task", "on record", "Case", "queue"):
        table.add_column(column)
    for task in sorted(salesforce.records("Task"), key=lambda t: t["CreatedDate"]):
        who = records.get(task.get("WhoId") or "", {})
        case = records.get(task.get("WhatId") or "", {})
        owner = records.get(case.get("OwnerId") or "", {})
        table.add_row(task.get("Subject") or "", f"{_name(who)} ({RECORD_KINDS.get(str(who.get('Id', ''))[:3], '?')})",
                      case.get("CaseNumber", "-"), owner.get("Name", "-"))
    return table


def sent_table(twilio: Any, x: Any, our_account: str, meta: Any, mail: Any = None) -> Table:
    """What crmhub sent to customers: agents' replies, by SMS/WhatsApp, on X, on Messenger / Instagram and by
    email."""
    table = Table(title="Sent to customers (agents' replies)")
    for column in ("channel", "from", "to", "status"):
        table.add_column(column)
    for message in sorted(twilio.snapshot()["messages"].values(), key=lambda m: m["_seq"]):
        if message["direction"] == "outbound-api":
            channel = "WhatsApp" if message["to"].startswith("whatsapp:") else "SMS"
            table.add_row(channel, message["from"], message["to"], message["status"])
    for event in x.dm_events():
        if event["sender_id"] == our_account:
            table.add_row("X DM", our_account, str(event.get("dm_conversation_id", "-")), "sent")
    for message in meta.messages():
        if message["is_echo"]:
            table.add_row(message["platform"].capitalize(), message["from"], message["to"], "sent")
    for email in mail.outbound() if mail is not None else []:
        table.add_row("Email", email["mail_from"], ", ".join(email["rcpt_tos"]), "sent")
    return table


def calls_line(servers: Mapping[str, EmulatorServer]) -> str:
    """API calls each emulator counted, as its vendor would bill them."""
    calls = {api: server.emulator.total_calls for api, server in servers.items()}
    return (f"API calls used: {', '.join(f'{api} {n}' for api, n in calls.items())} "
            f"(total {sum(calls.values())})")


def _name(record: Mapping[str, Any]) -> str:
    name = " ".join(filter(None, (record.get("FirstName"), record.get("LastName"))))
    return name or str(record.get("X_Handle__c") or record.get("Phone") or "-")
