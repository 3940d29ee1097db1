"""`crmhub explain`: the interaction, the person, the rules tried and why, targets, outbox."""

from __future__ import annotations

from pathlib import Path

from crmhub.app import Hub
from tests.ops.conftest import TEXTS, cli, key_of, lines


def test_explain_names_the_winning_rule_and_why_each_earlier_rule_failed(
        hub: Hub, settings: Path, org: dict[str, str]) -> None:
    hub.sync_once()
    key = key_of(hub.store, "+14155550125")  # a stranger: every rule fails, the default wins
    result = cli(settings, "explain", key)
    assert result.exit_code == 0, result.output
    out = lines(result)
    assert out[0].startswith("Interaction ") and out[0].endswith(f"({key})")
    assert out[1:5] == ["  channel: sms", "  direction: inbound", out[3], "  customer: phone +14155550125"]
    assert out[3].startswith("  when: ")
    routing = out.index(next(line for line in out if line.startswith("Routing: ")))
    assert out[routing].startswith("Routing: rule 'default' (decided ")
    assert out[routing + 1:routing + 5] == [
        r"  tried billing: text does not match /(?i)\b(refunds?|chargebacks?|invoices?|billing)\b/",
        "  tried vip-customers: contact Tier__c is None, not 'Gold'",
        "  tried x-mentions: channel sms not in ['x_mention']",
        "  target salesforce: queue support",
    ]
    assert out[routing + 5] == "Outbox"
    assert out[routing + 6].startswith("  salesforce: done, 1 attempt(s), record 00T") and out[-1].endswith(
        ", no error")
    person = out.index(next(line for line in out if line.startswith("Person ")))
    assert out[person + 1] == "  identity: phone +14155550125"
    assert out[person + 2].startswith("  salesforce: Contact 003")  # created, as identities.yaml says


def test_explain_by_ledger_id_shows_the_rule_that_won_after_another_was_tried(
        hub: Hub, settings: Path, org: dict[str, str]) -> None:
    hub.sync_once()
    key = key_of(hub.store, "+14155550123")  # Jane, Tier__c Gold
    by_key = cli(settings, "explain", key)
    ledger_id = by_key.output.split()[1]
    by_id = cli(settings, "explain", ledger_id)
    assert by_id.exit_code == 0 and by_id.output == by_key.output
    out = lines(by_id)
    assert f"  salesforce: Contact {org['jane']}" in out
    routing = out.index(next(line for line in out if line.startswith("Routing: ")))
    assert out[routing].startswith("Routing: rule 'vip-customers' (decided ")
    assert out[routing + 1:routing + 3] == [
        r"  tried billing: text does not match /(?i)\b(refunds?|chargebacks?|invoices?|billing)\b/",
        "  target salesforce: queue vip, priority High, tags vip",
    ]


def test_explain_never_prints_a_message_body(hub: Hub, settings: Path) -> None:
    hub.sync_once()
    for sender in ("+14155550123", "+14155550124", "+14155550125"):
        output = cli(settings, "explain", key_of(hub.store, sender)).output
        assert not any(text in output for text in TEXTS)
        assert not any(word in output for word in ("charged twice", "Canada", "arrived"))


def test_an_unknown_interaction_is_a_clear_message_and_exit_1(hub: Hub, settings: Path) -> None:
    hub.sync_once()
    for ref, expected in (
            ("sms:SMnope", "error: no interaction 'sms:SMnope' in the ledger"),
            ("999", "error: no interaction '999' in the ledger"),
            ("fax:123", "error: unknown channel 'fax' in 'fax:123'; channels are sms, whatsapp, call"),
            ("hello", "error: 'hello' is neither a ledger id nor channel:external_id")):
        result = cli(settings, "explain", ref)
        assert result.exit_code == 1
        assert result.output.startswith(expected), result.output
        assert "Traceback" not in result.output


def test_an_item_not_routed_yet_says_so(hub: Hub, settings: Path) -> None:
    for poll in hub.polls().values():
        poll()  # stored, not yet routed
    out = lines(cli(settings, "explain", key_of(hub.store, "+14155550124")))
    assert "Person: none yet (the next sync matches the customer)" in out
    assert "Routing: not routed yet (the next sync routes it)" in out
    assert out[-1] == "Outbox: no CRM write queued yet"
