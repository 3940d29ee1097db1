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

from datetime import UTC, datetime, timedelta

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


def test_a_fresh_store_never_takes_an_earlier_stores_contact_for_a_new_person(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, x_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    """Person ids are the store's own: a new store numbers its persons afresh, so the contact crmhub creates for
    a new person must not carry a key an earlier store gave another person's contact (it would be upserted onto it).

    The earlier store read SMS and X; the fresh one reads SMS only (the admin switched X off with it). Its persons
    are fewer, and a stranger who writes now is numbered as the X user was.
    """
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    x: Any = x_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue", "Social_Queue"):
        sf.add_queue(name, name)
    tw.add_number(OURS)
    start = datetime.now(UTC) - timedelta(minutes=30)
    tw.receive_message("+14155552001", OURS, "a stranger writes", at=start)
    x.post_mention(x.add_user("xuser", "X User"), "hello from X", at=start + timedelta(minutes=1))
    urls = {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url, "x": x_sandbox.url}
    with build_hub(load_config(settings_for(tmp_path / "lost", urls, ("salesforce", "twilio", "x"))),
                   clock=Clock()) as first:
        _settle(first, salesforce_sandbox)
    contacts = {c["Id"]: (c["LastName"], c.get("Phone"), c.get("X_Handle__c")) for c in sf.records("Contact")}
    assert sorted(str(c[1]) for c in contacts.values()) == ["+14155552001", "None"]
    with _hub(tmp_path / "fresh", urls, "salesforce") as fresh:
        _settle(fresh, salesforce_sandbox)
        tw.receive_message("+14155552002", OURS, "a new stranger writes", at=datetime.now(UTC))
        _settle(fresh, salesforce_sandbox)
    after = {c["Id"]: (c["LastName"], c.get("Phone"), c.get("X_Handle__c")) for c in sf.records("Contact")}
    assert {i: after[i] for i in contacts} == contacts  # the earlier contacts as they were
    [made] = [i for i in after if i not in contacts]
    assert after[made][1] == "+14155552002"
    [task] = [t for t in sf.records("Task") if t["Description"] == "a new stranger writes"]
    assert task["WhoId"] == made


@pytest.mark.parametrize("crm", ["salesforce", "zendesk", "hubspot"])
def test_a_store_restored_from_a_backup_adopts_what_was_written_after_the_backup(
        crm: str, twilio_sandbox: EmulatorServer, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The store is lost and an older backup put back: `crmhub adopt` says so, and what the lost store wrote after
    the backup (follow-ups on cases the backup knows) is adopted, not written again. Without the command Zendesk
    got those comments twice: nothing in the org tells a restored store it is behind (a case it does not know
    would, and moves the horizon by itself)."""
    server: EmulatorServer = request.getfixturevalue(f"{crm}_sandbox")
    view = VIEWS[crm](server)
    traffic = sms_traffic(twilio_sandbox, [view], known=2, unknown=1, messages=6, seed=7)
    tw: Any = twilio_sandbox.emulator
    urls = {crm: server.url, "twilio": twilio_sandbox.url}
    directory = tmp_path / "store"
    with _hub(directory, urls, crm) as hub:
        _settle(hub, server)
    backup = (directory / "crmhub.db").read_bytes()
    # After the store began: no write of it can be an earlier store's, as far as it knows. Twilio's clock runs half a
    # minute ahead of ours here: the items the lost store wrote look newer than the moment `crmhub adopt` runs.
    later = datetime.now(UTC) + timedelta(seconds=30)
    for n, sender in enumerate((traffic.known[0], traffic.unknown[0])):  # on cases the backup knows
        body = f"written after the backup {n}"
        tw.receive_message(sender, OURS, body, at=later + timedelta(seconds=n))
        traffic.senders[body] = sender
    with _hub(directory, urls, crm) as hub:
        _settle(hub, server)
    assert_each_message_once(view, traffic.senders)
    before = _counts(view)
    (directory / "crmhub.db").write_bytes(backup)  # the store is lost; the backup goes back in its place
    adopted = CliRunner().invoke(app, ["adopt", "--config", str(directory / "settings.yaml")])
    assert adopted.exit_code == 0, adopted.output
    with _hub(directory, urls, crm) as hub:
        _settle(hub, server)
    assert _counts(view) == before
    assert_each_message_once(view, traffic.senders)
