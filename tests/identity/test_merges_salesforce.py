"""Identity merges on Salesforce: a confirmed claim or a CRM record joins two persons, history moves to the primary record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import json

from typer.testing import CliRunner

from crmhub.app import build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.x.models import DEFAULT_ACCOUNT_ID
from crmhub.store import conflicts

OURS = "+14155550100"
JANE_PHONE = "+14155550123"


def _setup(sf: Any, tw: Any) -> str:
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    tw.add_number(OURS)
    return str(sf.insert("Contact", LastName="Doe", FirstName="Jane", Phone="(415) 555-0123"))


def test_a_confirmed_handle_joins_x_history_onto_the_older_contact_and_flags_the_twin(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, x_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    x: Any = x_sandbox.emulator
    jane = _setup(sf, tw)
    author = x.add_user("JaneOnX", "Jane D")
    x.send_dm(author, DEFAULT_ACCOUNT_ID, "hello, my parcel never arrived")
    urls = {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url, "x": x_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls, enabled=("salesforce", "twilio", "x"))
    with build_hub(load_config(settings)) as hub:
        hub.sync_once()  # the X user is unknown: crmhub creates a Contact for the handle
        [created] = [c["Id"] for c in sf.records("Contact") if c["Id"] != jane]
        [dm_task] = sf.records("Task")
        assert dm_task["WhoId"] == created
        tw.receive_message(JANE_PHONE, OURS, "any news? btw I am @JaneOnX on X",
                           at=datetime.now(UTC) - timedelta(minutes=1))
        hub.sync_once()  # the SMS matches Jane by phone and claims the handle: a suggestion, no join
        hub.sync_once()
        assert {t["WhoId"] for t in sf.records("Task")} == {jane, created}
        [sms_task] = [t for t in sf.records("Task") if t["WhoId"] == jane]
        [note] = [c for c in sf.records("CaseComment") if not c["IsPublished"]]
        assert note["ParentId"] == sms_task["WhatId"]  # on the case of the message that made the claim
        assert "X handle @janeonx" in note["CommentBody"] and JANE_PHONE in note["CommentBody"]
        assert "crmhub links confirm 1" in note["CommentBody"] and "news" not in note["CommentBody"]

    confirmed = CliRunner().invoke(app, ["links", "confirm", "1", "--config", str(settings)])
    assert confirmed.exit_code == 0, confirmed.output
    assert "Link 1 confirmed" in confirmed.output
    again = CliRunner().invoke(app, ["links", "confirm", "1", "--config", str(settings)])
    assert again.exit_code == 1 and "confirmed already" in again.output
    with build_hub(load_config(settings)) as hub:
        hub.sync_once()  # the relink is delivered
        with hub.store.transaction() as session:
            [conflict] = [(c.crm, c.record_ids, c.primary_id) for c in conflicts.listing(session)]
    tasks = sf.records("Task")
    assert len(tasks) == 2  # each interaction once in the CRM
    assert {t["WhoId"] for t in tasks} == {jane}  # both on the older record, the DM moved there
    cases = {c["Id"]: c for c in sf.records("Case")}
    assert {cases[t["WhatId"]]["ContactId"] for t in tasks} == {jane}  # and its case with it
    assert conflict == ("salesforce", [jane, created], jane)  # two records of one person: flagged, not merged
    assert {c["Id"] for c in sf.records("Contact")} == {jane, created}

    listed = CliRunner().invoke(app, ["conflicts", "list", "--json", "--config", str(settings)])
    assert listed.exit_code == 0, listed.output
    [shown] = json.loads(listed.output)
    assert (shown["crm"], shown["records"], shown["writing_to"]) == ("salesforce", [jane, created], jane)
    assert {"phone:+14155550123", "x_handle:janeonx"} <= set(shown["identities"])
    wrong = CliRunner().invoke(app, ["conflicts", "resolve", str(shown["id"]), "--keep", "003nope",
                                     "--config", str(settings)])
    assert wrong.exit_code == 1 and "is not one of conflict" in wrong.output
    # The admin decides the newer record is the one to keep: crmhub moves its history there
    kept = CliRunner().invoke(app, ["conflicts", "resolve", str(shown["id"]), "--keep", created,
                                    "--config", str(settings)])
    assert kept.exit_code == 0, kept.output
    with build_hub(load_config(settings)) as hub:
        hub.sync_once()
    assert {t["WhoId"] for t in sf.records("Task")} == {created} and len(sf.records("Task")) == 2
    assert "No open conflicts." in CliRunner().invoke(app, ["conflicts", "list", "--config", str(settings)]).output


def test_a_record_holding_two_identities_joins_their_persons(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, x_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    x: Any = x_sandbox.emulator
    jane = _setup(sf, tw)
    author = x.add_user("JaneOnX", "Jane D")
    urls = {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url, "x": x_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls, enabled=("salesforce", "twilio", "x"))
    config = load_config(settings)
    with build_hub(config) as hub:
        tw.receive_message(JANE_PHONE, OURS, "hi, question about my bill", at=datetime.now(UTC) - timedelta(minutes=5))
        hub.sync_once()
        # A mention from an X account no CRM knows: a Contact is made for it
        x.post_mention(author, "@crmhub_support still waiting")
        hub.sync_once()
        contacts = {c["Id"] for c in sf.records("Contact")}
        assert len(contacts) == 2
        # An agent writes the handle onto Jane's record: the mirror shows one person
        sf.update("Contact", jane, X_Handle__c="@janeonx")
        hub.sync_once()
        hub.sync_once()
    tasks = sf.records("Task")
    assert len(tasks) == 2 and {t["WhoId"] for t in tasks} == {jane}
