"""A new state store in front of an org crmhub already wrote to adopts what is there (issue 14 item 6).

A hub writes SMS traffic (known customers and strangers whose contacts it
creates) into a CRM; then its state store is thrown away and a hub with a
fresh store starts on the same emulators and reads the same channel history
again. It must write nothing twice (each emulator's records of the replayed
items stay as they were), dead-letter nothing, land new items once, and
`crmhub status` must say what it adopted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from datetime import UTC, datetime

from typer.testing import CliRunner

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.store.ledger import open_dead_letters
from tests.crm_views import VIEWS, CrmView, assert_each_message_once, sms_traffic

# What each CRM calls the records a replayed SMS finds: its case and its activity.
ADOPTED = {"salesforce": ("cases", "tasks"), "zendesk": ("cases", "comments"), "hubspot": ("cases", "communications")}
from tests.test_replies import Clock, settings_for

OURS = "+14155550100"


def _hub(directory: Path, urls: dict[str, str], crm: str) -> Hub:
    hub = build_hub(load_config(settings_for(directory, urls, (crm, "twilio"))), clock=Clock())
    for connector in hub.crms.values():
        if hasattr(connector, "job_poll_first"):
            connector.job_poll_first = 0.05  # type: ignore[union-attr]  # Zendesk jobs finish on the first read
    return hub


def _settle(hub: Hub, server: EmulatorServer) -> None:
    for _ in range(3):
        server.emulator.clock.advance(61)  # Zendesk's exports: the last minute left out, 10 reads a minute
        cycle = hub.sync_once()
        assert not cycle.failures, cycle.failures
    with hub.store.transaction() as session:
        dead = open_dead_letters(session)
    assert dead == [], [d.reason for d in dead]


def _counts(view: CrmView) -> tuple[int, int, int]:
    return len(view.cases()), len(view.written()), sum(view.phones().values())


@pytest.mark.parametrize("crm", ["salesforce", "zendesk", "hubspot"])
def test_a_fresh_store_adopts_what_an_earlier_store_wrote(crm: str, twilio_sandbox: EmulatorServer,
                                                          request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server: EmulatorServer = request.getfixturevalue(f"{crm}_sandbox")
    view = VIEWS[crm](server)
    traffic = sms_traffic(twilio_sandbox, [view], known=3, unknown=2, messages=12, seed=14)
    urls = {crm: server.url, "twilio": twilio_sandbox.url}
    with _hub(tmp_path / "lost", urls, crm) as first:
        _settle(first, server)
    assert_each_message_once(view, traffic.senders)
    before = _counts(view)
    with _hub(tmp_path / "fresh", urls, crm) as fresh:
        _settle(fresh, server)
        assert _counts(view) == before  # cases, messages and contacts: nothing written twice
        assert_each_message_once(view, traffic.senders)
        # New items land once: a known customer's follow-up and a stranger nobody wrote to before.
        tw: Any = twilio_sandbox.emulator
        now = datetime.now(UTC)
        tw.receive_message(traffic.known[0], OURS, "a new message after the store was lost", at=now)
        tw.receive_message("+14155559999", OURS, "a new customer after the store was lost", at=now)
        traffic.senders.update({"a new message after the store was lost": traffic.known[0],
                                "a new customer after the store was lost": "+14155559999"})
        _settle(fresh, server)
        assert_each_message_once(view, traffic.senders)
        cases, messages, contacts = _counts(view)
        assert (cases, messages, contacts) == (before[0] + 1, before[1] + 2, before[2] + 1)
    cases_word, activities_word = ADOPTED[crm]
    shown = CliRunner().invoke(app, ["status", "--config", str(tmp_path / "fresh" / "settings.yaml")])
    assert shown.exit_code == 0, shown.output
    conversations = len(set(traffic.senders.values())) - 1
    assert f"adopted from {crm}: {conversations} {cases_word}, 12 {activities_word}" in shown.output, shown.output
