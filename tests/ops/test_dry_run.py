"""`crmhub route --dry-run`: stored decisions replayed against the current rules; nothing written."""

from __future__ import annotations

from pathlib import Path

from crmhub.app import Hub
from tests.ops.conftest import cli, key_of, lines, snapshot

VIP_FIRST = '''
  - name: vip-customers
    when:
      contact: { Tier__c: Gold }
    route:
      salesforce: { queue: vip, priority: High }
      zendesk: { queue: support, priority: high, tags: [vip] }
    tags: [vip]
'''


def _rules_changed(settings: Path) -> None:
    """The admin moves vip-customers first and sends everything from +14155550125's channel to billing."""
    path = settings.parent / "mappings" / "routing.yaml"
    text = path.read_text()
    start = text.index("  - name: vip-customers")
    end = text.index("  - name: x-mentions")
    text = text[:start] + text[end:]  # drop vip-customers ...
    text = text.replace("rules:\n", "rules:" + VIP_FIRST, 1)  # ... and put it first
    text = text.replace('text_matches: "(?i)\\\\b(refunds?|chargebacks?|invoices?|billing)\\\\b"',
                        'text_matches: "(?i)\\\\b(refunds?|chargebacks?|invoices?|billing|ship)\\\\b"')
    assert "|ship)" in text
    path.write_text(text)


def test_unchanged_rules_change_nothing(hub: Hub, settings: Path) -> None:
    hub.sync_once()
    before = snapshot(hub.store)
    result = cli(settings, "route", "--dry-run")
    assert result.exit_code == 0, result.output
    assert lines(result)[-1].startswith("3 item(s) since ")
    assert lines(result)[-1].endswith(
        "replayed against the current rules: 0 would change, 3 unchanged. Nothing was written.")
    assert snapshot(hub.store) == before


def test_changed_rules_list_each_item_old_to_new_and_write_nothing(hub: Hub, settings: Path) -> None:
    hub.sync_once()
    _rules_changed(settings)
    before = snapshot(hub.store)
    result = cli(settings, "route", "--dry-run", "--since", "7d")
    assert result.exit_code == 0, result.output
    stranger = key_of(hub.store, "+14155550125")
    out = lines(result)
    changed = {line.split()[1].rstrip(":"): line for line in out[:-1]}
    assert changed[stranger].endswith(
        f"{stranger}: rule default -> billing; salesforce queue support -> queue billing, tags billing")
    assert set(changed) == {stranger}  # Jane stays vip (now without trying billing), Bob stays billing
    assert out[-1].endswith("3 unchanged. Nothing was written.".replace("3", "2")) and ": 1 would change" in out[-1]
    assert snapshot(hub.store) == before


def test_since_limits_the_replay_and_bad_input_is_a_clear_error(hub: Hub, settings: Path) -> None:
    hub.sync_once()
    _rules_changed(settings)
    assert "0 item(s) since" in cli(settings, "route", "--dry-run", "--since", "1m").output
    bad = cli(settings, "route", "--dry-run", "--since", "soon")
    assert bad.exit_code == 1 and bad.output.startswith("error: --since: bad duration")
    plain = cli(settings, "route")
    assert plain.exit_code == 1 and "only `crmhub route --dry-run` exists" in plain.output
