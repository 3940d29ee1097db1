"""`crmhub deadletters list|show|replay|discard`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crmhub.app import Hub
from crmhub.model import Channel, Direction, Identity, IdentityKind, Interaction
from crmhub.sandbox import EmulatorServer
from crmhub.store.ledger import ingest_page
from crmhub.store.schema import DeadLetterRow, OutboxRow
from tests.ops.conftest import OURS, cli, key_of, lines, snapshot

REFUND = "I was charged twice, I need a refund"


def _dead(hub: Hub, source: str) -> DeadLetterRow:
    with hub.store.transaction() as session:
        [row] = session.scalars(select(DeadLetterRow).where(DeadLetterRow.source == source))
        return row


def test_a_refused_delivery_is_replayed_after_the_admin_fixes_the_org(
        hub: Hub, settings: Path, org: dict[str, str], salesforce_sandbox: EmulatorServer) -> None:
    sf: Any = salesforce_sandbox.emulator
    sf.delete("Group", org["Billing_Queue"])  # the org lacks a queue routing.yaml declares
    assert hub.sync_once().deliveries[0].dead == 1
    assert REFUND not in {t["Description"] for t in sf.records("Task")}
    dead, bob = _dead(hub, "deliver:salesforce"), key_of(hub.store, "+14155550124")

    listed = cli(settings, "deadletters", "list", "--source", "deliver")
    assert listed.exit_code == 0, listed.output
    assert "Open dead letters (1)" in listed.output and "deliver:salesforce" in listed.output
    assert f"│ {dead.id}  │ deliver:salesforce │ {bob} │" in listed.output
    shown = lines(cli(settings, "deadletters", "show", str(dead.id)))
    assert shown[:3] == [f"Dead letter {dead.id}", "  source: deliver:salesforce", f"  item: {bob}"]
    assert "queue 'Billing_Queue' (routing name 'billing') does not exist" in shown[3]
    assert "  state: open" in shown and "  payload keys: outbox_id" in shown
    assert any(line.startswith("  outbox ") and f"salesforce {bob}, dead, 1 attempt(s)" in line for line in shown)

    billing = sf.add_queue("Billing Queue", "Billing_Queue")  # the admin fixes the org
    replayed = cli(settings, "deadletters", "replay", str(dead.id))
    assert replayed.exit_code == 0, replayed.output
    assert lines(replayed) == [f"{bob} -> salesforce is pending again (outbox {dead.payload['outbox_id']}); "
                               "the next delivery (`crmhub sync`, or the running daemon) writes it"]
    with hub.store.transaction() as session:
        box = session.get(OutboxRow, dead.payload["outbox_id"])
        assert box is not None and (box.status, box.attempts) == ("pending", 0)

    synced = cli(settings, "sync")  # the next sync delivers it
    assert synced.exit_code == 0, synced.output
    assert "delivered to salesforce: 1 written" in synced.output
    [task] = [t for t in sf.records("Task") if t["Description"] == REFUND]
    assert task["WhoId"] == org["bob"]
    [case] = [c for c in sf.records("Case") if c["Id"] == task["WhatId"]]
    assert case["OwnerId"] == billing
    assert cli(settings, "deadletters", "list", "--source", "deliver").output.strip() == "No open dead letters."
    assert "salesforce: done, 1 attempt(s), record 00T" in cli(settings, "explain", bob).output
    again = cli(settings, "deadletters", "replay", str(dead.id))
    assert again.exit_code == 1 and again.output.startswith(f"error: dead letter {dead.id} is already resolved "
                                                           "(replayed at ")


def test_a_source_item_shows_no_text_and_is_replayed_only_once_it_is_in_the_ledger(
        hub: Hub, settings: Path) -> None:
    hub.sync_once()
    dead = _dead(hub, "twilio")  # the empty message
    shown = cli(settings, "deadletters", "show", str(dead.id))
    assert shown.exit_code == 0, shown.output
    out = lines(shown)
    assert f"  item: {dead.ref}" in out and "empty message" in out[3]
    assert "    body: [redacted]" in out and "  payload keys: account_sid, body, " in out[6]
    assert "    from: +14155550127" in out and f"    sid: {dead.ref}" in out  # the non-body fields stay

    before = snapshot(hub.store)
    refused = cli(settings, "deadletters", "replay", str(dead.id))
    assert refused.exit_code == 1
    assert refused.output.startswith(f"error: dead letter {dead.id} (twilio {dead.ref}) not replayed: crmhub cannot "
                                     "translate the stored item again without the twilio connector")
    assert f"`crmhub deadletters discard {dead.id} --reason ...`" in refused.output
    assert snapshot(hub.store) == before

    customer = Identity(IdentityKind.PHONE, "+14155550127")
    with hub.store.transaction() as session:  # e.g. the sender's retry came in by webhook
        ingest_page(session, [Interaction(Channel.SMS, Direction.INBOUND, dead.ref, f"sms:{OURS}:+14155550127",
                                          customer, Identity(IdentityKind.PHONE, OURS), "(picture)",
                                          datetime.now(UTC))], now=datetime.now(UTC))
    replayed = cli(settings, "deadletters", "replay", str(dead.id))
    assert replayed.exit_code == 0, replayed.output
    assert replayed.stdout.startswith(f"sms:{dead.ref} is in the ledger now (ledger id ")
    assert "  state: resolved replayed at " in cli(settings, "deadletters", "show", str(dead.id)).output


def test_discard_resolves_with_the_reason_and_unknown_ids_exit_1(hub: Hub, settings: Path) -> None:
    hub.sync_once()
    dead = _dead(hub, "twilio")
    result = cli(settings, "deadletters", "discard", str(dead.id), "--reason", "spam, nothing to keep")
    assert result.exit_code == 0, result.output
    assert lines(result) == [f"dead letter {dead.id} (twilio {dead.ref}) discarded"]
    shown = cli(settings, "deadletters", "show", str(dead.id)).output
    assert "  state: resolved discarded at " in shown and "[discarded: spam, nothing to keep]" in shown
    assert cli(settings, "deadletters", "list").output.strip() == "No open dead letters."
    for command in ("show", "replay", "discard"):
        missing = cli(settings, "deadletters", command, "999")
        assert missing.exit_code == 1
        assert missing.output.startswith("error: no dead letter 999; `crmhub deadletters list` shows the open ones")
