"""A claim in a message is a link suggestion: a note on the case in every CRM, once; a person confirms or rejects it.

The hub runs against the emulators; the assertions are on what each CRM holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.schema import LinkSuggestionRow

OURS = "+14155550100"
STRANGER = "+14155550124"
CLAIM = "hello, I'm victim@example.com, where is my order 777?"


@dataclass
class Crms:
    hub: Hub
    settings: Path
    sf: Any
    zd: Any
    hs: Any
    tw: Any

    def notes(self) -> dict[str, list[str]]:
        """The internal notes crmhub wrote, per CRM (their text)."""
        return {
            "salesforce": [c["CommentBody"] for c in self.sf.records("CaseComment") if not c["IsPublished"]],
            "zendesk": [c["body"] for t in self.zd.tickets() for c in self.zd.comments(t["id"]) if not c["public"]],
            "hubspot": [n["properties"]["hs_note_body"] for n in self.hs.objects("notes")
                        if (n["properties"].get("crmhub_key") or "").startswith("crmhub-link:")],
        }

    def suggestions(self) -> list[tuple[int, str, str]]:
        with self.hub.store.transaction() as session:
            return [(r.id, r.claimed_value, r.status) for r in session.scalars(select(LinkSuggestionRow))]

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(app, [*args, "--config", str(self.settings)])


@pytest.fixture
def crms(salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
         twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Crms]:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    hs: Any = hubspot_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    sf.insert("Contact", LastName="Victim", Email="victim@example.com")
    zd.add_user(name="Vic Tim", email="victim@example.com")
    hs.add("contacts", firstname="Vic", email="victim@example.com")
    zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute's changes
    tw.add_number(OURS)
    urls = {"salesforce": salesforce_sandbox.url, "zendesk": zendesk_sandbox.url, "hubspot": hubspot_sandbox.url,
            "twilio": twilio_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls, enabled=("salesforce", "zendesk", "hubspot", "twilio"))
    with build_hub(load_config(settings)) as hub:
        for connector in hub.crms.values():
            if connector.name == "zendesk":
                connector.job_poll_first = 0.01  # type: ignore[union-attr]  # the emulator's jobs finish at once
        yield Crms(hub, settings, sf, zd, hs, tw)


def test_a_claimed_email_is_a_note_on_the_case_in_every_crm_once_and_joins_nobody(crms: Crms) -> None:
    crms.tw.receive_message(STRANGER, OURS, CLAIM, at=datetime.now(UTC) - timedelta(minutes=2))
    # Each CRM loses the answer to the note's write once: the retry finds the note, never writes a second.
    crms.sf.faults.add(Fault("reset", method="POST", path="/sobjects/CaseComment", after=True))
    crms.zd.faults.add(Fault("reset", method="PUT", path=r"/tickets/\d+\.json", after=True))
    crms.hs.faults.add(Fault("reset", method="POST", path="/objects/notes/batch/create", after=True))
    first = crms.hub.sync_once()
    second = crms.hub.sync_once()
    assert not second.failures, second.failures
    assert [f["hits"] for e in (crms.sf, crms.zd, crms.hs) for f in e.faults.list()] == [1, 1, 1]

    [(suggestion, claimed, status)] = crms.suggestions()
    assert (claimed, status) == ("victim@example.com", "pending")
    notes = crms.notes()
    for crm, texts in notes.items():
        assert len(texts) == 1, (crm, texts)
        [text] = texts
        assert STRANGER in text and "victim@example.com" in text, (crm, text)
        assert f"crmhub links confirm {suggestion}" in text
        assert "order 777" not in text and "where is my order" not in text  # never the message itself
    assert sum(d.noted for d in (*first.deliveries, *second.deliveries)) == 3

    # Nothing joined: the stranger's message is on a record of their own, never on the victim's.
    [victim] = [c["Id"] for c in crms.sf.records("Contact") if c.get("Email") == "victim@example.com"]
    [task] = crms.sf.records("Task")
    assert task["WhoId"] != victim
    [hs_victim] = [c["id"] for c in crms.hs.objects("contacts") if c["properties"].get("email") == "victim@example.com"]
    [message] = crms.hs.objects("communications")
    assert hs_victim not in set(crms.hs.associated("communications", message["id"], "contacts"))

    # The same claim again adds no suggestion and no note.
    crms.tw.receive_message(STRANGER, OURS, "again: I'm victim@example.com", at=datetime.now(UTC) - timedelta(minutes=1))
    crms.hub.sync_once()
    assert len(crms.suggestions()) == 1
    assert {crm: len(texts) for crm, texts in crms.notes().items()} == {"salesforce": 1, "zendesk": 1, "hubspot": 1}


def test_a_rejected_claim_is_never_suggested_again_and_the_cli_explains_its_errors(crms: Crms) -> None:
    crms.tw.receive_message(STRANGER, OURS, CLAIM, at=datetime.now(UTC) - timedelta(minutes=2))
    crms.hub.sync_once()
    [(suggestion, _, _)] = crms.suggestions()

    listed = crms.cli("links", "list", "--json", "--status", "pending")
    assert listed.exit_code == 0, listed.output
    [shown] = json.loads(listed.output)
    assert (shown["id"], shown["sender"], shown["claimed"], shown["status"]) == (
        suggestion, f"phone {STRANGER}", "email victim@example.com", "pending")
    assert shown["stated_in"].startswith("sms:SM") and shown["noted_in"] == ["hubspot", "salesforce", "zendesk"]
    assert "where is my order" not in listed.output and "order 777" not in listed.output  # never the text (a SID may hold 777)

    unknown = crms.cli("links", "confirm", "999")
    assert unknown.exit_code == 1 and "no link suggestion 999" in unknown.output
    bad = crms.cli("links", "list", "--status", "maybe")
    assert bad.exit_code == 1 and "unknown status 'maybe'" in bad.output

    rejected = crms.cli("links", "reject", str(suggestion))
    assert rejected.exit_code == 0 and "rejected" in rejected.output
    again = crms.cli("links", "reject", str(suggestion))
    assert again.exit_code == 1 and "rejected already" in again.output
    table = crms.cli("links", "list")
    assert table.exit_code == 0 and "Link suggestions (1)" in table.output
    [decided] = json.loads(crms.cli("links", "list", "--json").output)
    assert decided["status"] == "rejected" and decided["decided"].startswith("admin via CLI, ")

    crms.tw.receive_message(STRANGER, OURS, "I said, I am victim@example.com", at=datetime.now(UTC) - timedelta(minutes=1))
    crms.hub.sync_once()
    assert crms.suggestions() == [(suggestion, "victim@example.com", "rejected")]
    assert "No pending link suggestions." in crms.cli("links", "list", "--status", "pending").output
