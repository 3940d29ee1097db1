"""A small org and a synced hub, as ops find them: Twilio SMS into Salesforce."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.logs import configure as configure_logs
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store import StateStore
from crmhub.store.schema import Base, LedgerRow

OURS = "+14155550100"
START = datetime.now(UTC) - timedelta(hours=2)
MESSAGES = (  # sender, text, minutes after START
    ("+14155550123", "Hi, my order hasn't arrived", 0),  # Jane, Tier__c Gold -> vip-customers
    ("+14155550124", "I was charged twice, I need a refund", 3),  # Bob -> billing
    ("+14155550125", "Do you ship to Canada?", 5),  # a stranger -> default
    ("+14155550127", "", 50),  # empty -> dead letter at ingest
)
TEXTS = [text for _, text, _ in MESSAGES if text]


@pytest.fixture
def org(salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer) -> dict[str, str]:
    sf: Any = salesforce_sandbox.emulator
    ids = {name: sf.add_queue(name.replace("_", " "), name) for name in ("Support_Queue", "Billing_Queue",
                                                                       "VIP_Queue")}
    ids["jane"] = sf.insert("Contact", FirstName="Jane", LastName="Doe", Phone="(415) 555-0123", Tier__c="Gold")
    ids["bob"] = sf.insert("Contact", FirstName="Bob", LastName="Lee", MobilePhone="+1 415.555.0124")
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    for sender, body, minutes in MESSAGES:
        tw.receive_message(sender, OURS, body, at=START + timedelta(minutes=minutes))
    return ids


@pytest.fixture
def settings(org: dict[str, str], salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
             tmp_path: Path) -> Path:
    return write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url})


@pytest.fixture
def hub(settings: Path) -> Iterator[Hub]:
    with build_hub(load_config(settings)) as built:
        yield built


def cli(settings: Path, *args: str) -> Result:
    """`crmhub ARGS --config settings` through typer's runner, logs on stderr as `main()` sets them."""
    configure_logs()
    return CliRunner().invoke(app, [*args, "--config", str(settings)])


def lines(result: Result) -> list[str]:
    return result.stdout.splitlines()  # logs go to stderr


def key_of(store: StateStore, sender: str) -> str:
    """crmhub's key (channel:external_id) of the message `sender` sent."""
    with store.transaction() as session:
        row = session.scalar(select(LedgerRow).where(LedgerRow.sender_value == sender))
        assert row is not None
        return f"{row.channel}:{row.external_id}"


def snapshot(store: StateStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to prove a command wrote nothing."""
    with store.engine.connect() as connection:
        return {table.name: sorted(map(tuple, connection.execute(table.select())), key=repr)
                for table in Base.metadata.sorted_tables}
